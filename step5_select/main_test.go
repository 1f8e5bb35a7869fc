package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

const pkg = "concurrent-servers-go/step5_select"

// Three clients at once, all served by one goroutine asleep in select:
// together they take about one session's time. 1.5 leaves room for a busy
// machine; step 3's default mode takes about 3.
func TestSelectServesAllAtOnce(t *testing.T) {
	srv := steptest.Start(t, pkg)
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 1.5 {
		t.Fatalf("3 sessions took %v = %.2f sessions; a concurrent server needs about 1", rep.Elapsed, r)
	}
}

// Many more clients than cores still overlap.
func TestManyClients(t *testing.T) {
	srv := steptest.Start(t, pkg)
	rep := steptest.Sessions(t, srv.Addr, 200)
	if r := steptest.Ratio(rep); r > 3 {
		t.Fatalf("200 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// select watches fds below FD_SETSIZE (1024) only. With more clients than
// that, the server refuses each one whose fd is too high, says so in one
// clear line each, and goes on serving everybody else; when fds come back,
// new clients are served again.
func TestFDSetSizeLimit(t *testing.T) {
	const n = 1040
	srv := steptest.Start(t, pkg)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	// Each client either got its '*' or was closed without one.
	var served []net.Conn
	refused := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 1)
		switch _, err := c.Read(b); {
		case err == nil && b[0] == '*':
			served = append(served, c)
		case err == io.EOF:
			refused++
		default:
			t.Fatalf("want '*' or EOF, got %q, %v", b, err)
		}
	}
	t.Logf("%d clients served, %d refused", len(served), refused)
	if refused == 0 || len(served) < 1000 {
		t.Fatalf("%d served, %d refused; want about 1020 and 20", len(served), refused)
	}
	// One log line per refused client (the log reaches us through a pipe:
	// give the last lines a moment).
	refusals := regexp.MustCompile(`refusing client: its fd is beyond what select can watch`)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(refusals.FindAllString(srv.Log(), -1)) >= refused {
			break
		}
	}
	if got := len(refusals.FindAllString(srv.Log(), -1)); got != refused {
		t.Fatalf("%d refusals logged for %d refused clients:\n%s", got, refused, srv.Log())
	}
	if !strings.Contains(srv.Log(), "fd=1024 FD_SETSIZE=1024") {
		t.Fatalf("the refusal does not name the fd and the limit:\n%s", srv.Log())
	}
	// The clients already in, up to the highest fd, are still served.
	for _, c := range []net.Conn{served[0], served[len(served)-1]} {
		c.Write([]byte("^abc$"))
		expect(t, c, "bcd")
	}
	// Give 50 fds back: new clients fit under the limit again.
	for _, c := range served[:50] {
		c.Close()
	}
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 1.5 {
		t.Fatalf("3 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// A client that shuts its write side (half-close) still receives every
// byte it is owed before the server closes: here a 1 MiB message, far more
// than maxPending, so the server must stop reading, drain, read again, and
// flush the rest after it has seen the end of the stream.
func TestHalfClose(t *testing.T) {
	srv := steptest.Start(t, pkg)
	halfClose(t, srv.Addr, 1<<20)
}

// A client that sends a long message and never reads: the server stops
// reading it once maxPending is owed, so the server's memory stays flat, the
// client's writes stall, and everyone else is still served.
func TestSlowReader(t *testing.T) {
	srv := steptest.Start(t, pkg)
	slowReader(t, srv)
}

// SIGTERM stops the server within a second even with a client connected
// and idle: the self-pipe wakes select.
func TestStopWhileClientIdle(t *testing.T) {
	srv := steptest.Start(t, pkg)
	dialAck(t, srv.Addr)
	time.Sleep(100 * time.Millisecond) // let the server sleep in select
	stopWithin(t, srv, time.Second)
}

// Out of file descriptors, the server stops watching the listener for a
// while instead of being told "readable" again at once: it logs once, stays
// cool, keeps serving the clients it has, and accepts the waiting ones once
// fds come back.
func TestEMFILE(t *testing.T) {
	emfile(t)
}

// halfClose sends '^' and size bytes, shuts its write side, and only then
// starts to read (or after 3 s, if the message is too big for the buffers
// in between). Every answer byte must arrive before the server closes.
func halfClose(t *testing.T, addr string, size int) {
	t.Helper()
	c := dialAck(t, addr)
	msg := append([]byte{'^'}, bytes.Repeat([]byte{'a'}, size)...)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
		sent <- nil
	case <-time.After(3 * time.Second):
		t.Logf("%d bytes did not fit in the buffers; reading while writing", size)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("after %d bytes: %v", len(got), err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat([]byte{'b'}, size); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want %d 'b's", len(got), size)
	}
}

func slowReader(t *testing.T, srv *steptest.Server) {
	t.Helper()
	const size = 64 << 20
	before := rssKiB(t, srv.PID())
	c := dialAck(t, srv.Addr)
	// Write for at most 2 s; the server stops reading long before 64 MiB.
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	msg := append([]byte{'^'}, bytes.Repeat([]byte{'a'}, size)...)
	n, err := c.Write(msg)
	if err == nil {
		t.Fatalf("the server took all %d bytes from a client that never reads", n)
	}
	after := rssKiB(t, srv.PID())
	t.Logf("the client got %d KiB into the kernel before its writes stalled; server RSS %d -> %d KiB", n>>10, before, after)
	if grew := after - before; grew > 16<<10 {
		t.Fatalf("server RSS grew by %d KiB for one client that does not read; want it bounded", grew)
	}
	// Everyone else is still served, at full speed.
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 1.5 {
		t.Fatalf("with a stalled client, 3 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// emfile runs the server with a hard limit of 64 open files, opens more
// connections than that, and checks the back-off.
func emfile(t *testing.T, args ...string) {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit(1) to start the server with few file descriptors")
	}
	bin := steptest.Build(t, pkg)
	srv := steptest.StartCmd(t, exec.Command(prlimit, append([]string{"--nofile=64:64", bin, "--port", "0"}, args...)...))
	var conns []net.Conn
	for range 80 {
		c, err := net.Dial("tcp", srv.Addr) // the kernel queues them all
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	if !srv.WaitLog(regexp.MustCompile(`too many open files`), 10*time.Second) {
		t.Fatalf("no EMFILE logged:\n%s", srv.Log())
	}
	// While the queue stays full, the server must not spin on accept.
	cpu0 := cpuTime(t, srv.PID())
	time.Sleep(time.Second)
	if used := cpuTime(t, srv.PID()) - cpu0; used > 300*time.Millisecond {
		t.Fatalf("server used %v of CPU in 1 s while out of fds: it spins", used)
	}
	if n := strings.Count(srv.Log(), "too many open files"); n > 1 {
		t.Errorf("EMFILE logged %d times in one burst, want once:\n%s", n, srv.Log())
	}
	// The first client was accepted before the limit, and is served.
	expect(t, conns[0], "*")
	conns[0].Write([]byte("^abc$"))
	expect(t, conns[0], "bcd")
	// Free 30 fds: the last client, queued all along, gets its turn.
	for _, c := range conns[:30] {
		c.Close()
	}
	expect(t, conns[len(conns)-1], "*")
}

// rssKiB is a process's resident memory, from /proc (Linux).
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skip("no /proc: cannot read the server's memory here")
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// cpuTime is a process's user+system CPU time, from /proc (Linux).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Skip("no /proc: cannot read the server's CPU time here")
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are fields 14 and 15 of the whole line, in clock ticks (1/100 s).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// stopWithin sends SIGTERM and fails unless the server logs "stopped"
// within d and then exits with status 0. It times the log line rather than
// the exit because a -race binary sleeps a second at exit (GORACE
// atexit_sleep_ms) before the process ends.
func stopWithin(t *testing.T, srv *steptest.Server, d time.Duration) {
	t.Helper()
	start := time.Now()
	srv.Cmd.Process.Signal(syscall.SIGTERM)
	if !srv.WaitLog(regexp.MustCompile(`msg=stopped`), d) {
		t.Fatalf("not stopped within %v of SIGTERM:\n%s", d, srv.Log())
	}
	t.Logf("stopped in %v", time.Since(start))
	for deadline := time.Now().Add(5 * time.Second); !srv.Exited() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
}

// dialAck connects and waits for the server's '*'.
func dialAck(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	expect(t, c, "*")
	return c
}

// expect reads exactly len(want) bytes from c within 5 s and compares them.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("want %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.SetReadDeadline(time.Time{})
}
