package steptest

// Probes shared by the steps' own tests: the bad-peer and resource checks
// that every raw-fd step makes in the same way (half-close, a reader that
// never reads, EMFILE, stopping), and small /proc readers for them. /proc
// and prlimit(1) are Linux-only: a probe that needs them skips elsewhere,
// saying so (NeedsLinux), and never passes without having checked.

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HalfClose sends '^' and size bytes, shuts its write side, and only then
// starts to read (or after 3 s, if the message is too big for the buffers
// in between). Every answer byte must arrive before the server closes.
func HalfClose(t testing.TB, addr string, size int) {
	t.Helper()
	c := DialAck(t, addr)
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

func SlowReader(t testing.TB, srv *Server) {
	t.Helper()
	const size = 64 << 20
	// The memory bound needs /proc; elsewhere the rest of the probe (the
	// server stops reading, everyone else is served) still runs.
	linux := runtime.GOOS == "linux"
	var before int
	if linux {
		before = RSSKiB(t, srv.PID())
	}
	c := DialAck(t, srv.Addr)
	// Write for at most 2 s; the server stops reading long before 64 MiB.
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	msg := append([]byte{'^'}, bytes.Repeat([]byte{'a'}, size)...)
	n, err := c.Write(msg)
	if err == nil {
		t.Fatalf("the server took all %d bytes from a client that never reads", n)
	}
	t.Logf("the client got %d KiB into the kernel before its writes stalled", n>>10)
	if linux {
		after := RSSKiB(t, srv.PID())
		t.Logf("server RSS %d -> %d KiB", before, after)
		if grew := after - before; grew > 16<<10 {
			t.Fatalf("server RSS grew by %d KiB for one client that does not read; want it bounded", grew)
		}
	} else {
		t.Logf("server memory not checked: needs Linux (/proc/PID/status)")
	}
	// Everyone else is still served. A server that waited on the stalled
	// client would never finish these sessions at all, so the bound can be
	// generous: a -race build on a loaded 2-core machine was seen at 2.6.
	rep := Sessions(t, srv.Addr, 3)
	if r := Ratio(rep); r > 4 {
		t.Fatalf("with a stalled client, 3 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// EMFILE runs the step pkg with a hard limit of 64 open files, opens more
// connections than that, and checks the back-off.
func EMFILE(t testing.TB, pkg string, args ...string) {
	t.Helper()
	NeedsLinux(t, "prlimit(1) and /proc/PID/stat")
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit(1) to start the server with few file descriptors")
	}
	bin := Build(t, pkg)
	srv := StartCmd(t, exec.Command(prlimit, append([]string{"--nofile=64:64", bin, "--port", "0"}, args...)...))
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
	cpu0 := CPUTime(t, srv.PID())
	time.Sleep(time.Second)
	if used := CPUTime(t, srv.PID()) - cpu0; used > 300*time.Millisecond {
		t.Fatalf("server used %v of CPU in 1 s while out of fds: it spins", used)
	}
	if n := strings.Count(srv.Log(), "too many open files"); n > 1 {
		t.Errorf("EMFILE logged %d times in one burst, want once:\n%s", n, srv.Log())
	}
	// The first client was accepted before the limit, and is served.
	Expect(t, conns[0], "*")
	conns[0].Write([]byte("^abc$"))
	Expect(t, conns[0], "bcd")
	// Free 30 fds: the last client, queued all along, gets its turn.
	for _, c := range conns[:30] {
		c.Close()
	}
	Expect(t, conns[len(conns)-1], "*")
}

// NeedsLinux skips the test where runtime.GOOS is not linux, naming what
// it needs (/proc, prlimit, taskset): the skip shows in go test -v, where a
// silent pass would not.
func NeedsLinux(t testing.TB, what string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux: " + what)
	}
}

// RSSKiB is a process's resident memory, from /proc (Linux; the test skips
// elsewhere).
func RSSKiB(t testing.TB, pid int) int {
	t.Helper()
	NeedsLinux(t, "/proc/PID/status")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
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

// CPUTime is a process's user+system CPU time, from /proc (Linux; the test
// skips elsewhere).
func CPUTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	NeedsLinux(t, "/proc/PID/stat")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are fields 14 and 15 of the whole line, in clock ticks (1/100 s).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// StopWithin sends SIGTERM and fails unless the server logs "stopped"
// within d and then exits with status 0. It times the log line rather than
// the exit because a -race binary sleeps a second at exit (GORACE
// atexit_sleep_ms) before the process ends.
func StopWithin(t testing.TB, srv *Server, d time.Duration) {
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

// DialAck connects and waits for the server's '*'.
func DialAck(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	Expect(t, c, "*")
	return c
}

// Expect reads exactly len(want) bytes from c within 5 s and compares them.
func Expect(t testing.TB, c net.Conn, want string) {
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
