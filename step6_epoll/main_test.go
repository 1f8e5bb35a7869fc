package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

const pkg = "concurrent-servers-go/step6_epoll"

// modes are the ways to run this step; every behaviour below must hold in
// each of them.
var modes = []struct {
	name string
	args []string
}{
	{"level", nil},
	{"edge", []string{"--edge"}},
	{"loops2", []string{"--loops", "2"}},
	{"edge-loops2", []string{"--edge", "--loops", "2"}},
}

// Three clients at once: every session correct, and together about one
// session's time, in every mode. 2 (halfway to the 3 a sequential server takes) leaves room for a busy machine; on a
// 2-core machine shared with other test binaries one run can still miss
// it, so a second run decides. A server that served the three in turn
// would score about 3 both times.
func TestServesAllAtOnce(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			srv := steptest.Start(t, pkg, md.args...)
			rep := steptest.Sessions(t, srv.Addr, 3)
			if r := steptest.Ratio(rep); r > 2 {
				t.Logf("3 sessions took %v = %.2f sessions; trying once more", rep.Elapsed, r)
				rep = steptest.Sessions(t, srv.Addr, 3)
			}
			if r := steptest.Ratio(rep); r > 2 {
				t.Fatalf("3 sessions took %v = %.2f sessions; an event loop needs about 1", rep.Elapsed, r)
			}
		})
	}
}

var loopStopped = regexp.MustCompile(`msg="loop stopped" loop=(\d+) served=(\d+)`)

// With two loops, SO_REUSEPORT spreads clients over both listeners: after
// 40 clients each loop has served some. (All 40 hashing to one listener
// has odds of 2 in 2^40.)
func TestLoopsShareTheClients(t *testing.T) {
	if !sock.ReusePortSpreads {
		// macOS: SO_REUSEPORT lets both listeners bind, and the kernel
		// gives every connection to one of them (see internal/sock).
		t.Skip("SO_REUSEPORT does not spread connections on " + runtime.GOOS)
	}
	srv := steptest.Start(t, pkg, "--loops", "2")
	steptest.Sessions(t, srv.Addr, 40)
	if err := srv.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for _, m := range loopStopped.FindAllStringSubmatch(srv.Log(), -1) {
		served[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(served) != 2 || served["0"] == 0 || served["1"] == 0 || served["0"]+served["1"] != 40 {
		t.Fatalf("loops served %v, want both some and 40 in all:\n%s", served, srv.Log())
	}
}

// dial connects and reads the '*'. bufs > 0 pins the socket's send and
// receive buffers before connect (which also turns off the kernel's
// autotuning of them), so that our side's kernel cannot soak up megabytes
// on our behalf: the server's behaviour shows, not the buffers'.
func dial(t *testing.T, addr string, bufs int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if bufs > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = errors.Join(
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, bufs),
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, bufs))
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	ack := make([]byte, 1)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != '*' {
		t.Fatalf("ack: %q, %v", ack, err)
	}
	return c.(*net.TCPConn)
}

// payload is n message bytes, 'a' to 'z' over and over: no '$', so the
// whole payload is one message and every byte is answered with its
// successor.
func payload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

// checkAnswer reads until EOF and checks it is the answer to payload(n).
func checkAnswer(t *testing.T, c net.Conn, n int) {
	t.Helper()
	got, err := io.ReadAll(bufio.NewReaderSize(c, 64<<10))
	if err != nil {
		t.Fatalf("reading the answers after %d bytes: %v", len(got), err)
	}
	if len(got) != n {
		t.Fatalf("got %d answer bytes, want %d", len(got), n)
	}
	for i, b := range got {
		if b != 'b'+byte(i%26) {
			t.Fatalf("answer byte %d is %q, want %q", i, b, 'b'+byte(i%26))
		}
	}
}

// memKiB reads a Vm* line (VmRSS, VmHWM) of /proc/PID/status.
func memKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	steptest.NeedsLinux(t, "/proc/PID/status")
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("%s: %q", field, line)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A client sends "^" and 8 MiB inside one message and reads nothing. Its
// answers pile up; past the cap the server stops reading from it, so the
// upload stalls in the kernel's buffers, the server's memory stays flat,
// and another client is served as if nothing happened. When the slow
// client finally reads, it gets every one of its 8 MiB of answers.
func TestSlowReader(t *testing.T) {
	const size = 8 << 20
	for _, md := range modes[:2] {
		t.Run(md.name, func(t *testing.T) {
			srv := steptest.Start(t, pkg, md.args...)
			base := memKiB(t, srv.PID(), "VmRSS")

			slow := dial(t, srv.Addr, 16<<10)
			var sent atomic.Int64
			done := make(chan error, 1)
			go func() {
				if _, err := slow.Write([]byte("^")); err != nil {
					done <- err
					return
				}
				p := payload(size)
				for len(p) > 0 {
					n, err := slow.Write(p[:min(len(p), 4<<10)])
					sent.Add(int64(n))
					if err != nil {
						done <- err
						return
					}
					p = p[n:]
				}
				done <- slow.CloseWrite()
			}()

			// Wait until the upload stops moving: the server has stopped
			// reading and the kernel's buffers in between are full. On this
			// machine that happens after 4-5 MB (the server side's
			// autotuned socket buffers); without backpressure, never.
			last := int64(-1)
			for deadline := time.Now().Add(10 * time.Second); sent.Load() != last || last < 1<<20; {
				if time.Now().After(deadline) {
					t.Fatalf("upload still moving after 10s (%d bytes)", sent.Load())
				}
				last = sent.Load()
				time.Sleep(500 * time.Millisecond)
			}
			if last >= size {
				t.Fatalf("the server took all %d bytes from a client that reads nothing: no backpressure", last)
			}

			// Generous: only a busy machine slows this session, since the
			// slow reader's connection is out of the loop's way.
			rep := steptest.Sessions(t, srv.Addr, 1)
			if r := steptest.Ratio(rep); r > 3 {
				t.Fatalf("a session beside the slow reader took %v = %.2f sessions", rep.Elapsed, r)
			}
			grew := memKiB(t, srv.PID(), "VmHWM") - base
			t.Logf("upload stalled after %d of %d bytes; server peak RSS %d KiB over its start", last, size, grew)
			if grew > 64<<10 {
				t.Fatalf("server RSS grew by %d KiB for one slow reader, bound 64 MiB", grew)
			}

			checkAnswer(t, slow, size)
			if err := <-done; err != nil {
				t.Fatalf("upload: %v", err)
			}
		})
	}
}

// A client half-closes (shutdown(SHUT_WR)) right after sending a long
// message, before reading a byte. The server sees EPOLLRDHUP and EOF while
// it still owes answers; it must send every one of them, then close.
func TestHalfClose(t *testing.T) {
	const size = 1 << 20
	for _, md := range modes[:2] {
		t.Run(md.name, func(t *testing.T) {
			srv := steptest.Start(t, pkg, md.args...)
			c := dial(t, srv.Addr, 16<<10)
			go func() {
				c.Write(append([]byte("^"), payload(size)...))
				c.CloseWrite()
			}()
			time.Sleep(100 * time.Millisecond) // let the answers back up
			checkAnswer(t, c, size)
		})
	}
}

// A client resets its connection (SO_LINGER 0) in the middle of a message:
// that costs its own connection only. The server logs it and serves the
// next client.
func TestResetMidMessage(t *testing.T) {
	for _, md := range modes[:2] {
		t.Run(md.name, func(t *testing.T) {
			srv := steptest.Start(t, pkg, md.args...)
			c := dial(t, srv.Addr, 0)
			if _, err := c.Write([]byte("^abc")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 3)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "bcd" {
				t.Fatalf("got %q, %v", got, err)
			}
			// Unanswered bytes in flight, then RST instead of FIN.
			c.Write(bytes.Repeat([]byte("x"), 100<<10))
			c.SetLinger(0)
			c.Close()
			if !srv.WaitLog(regexp.MustCompile(`msg=closing.*err=`), 5*time.Second) {
				t.Fatalf("no log of the reset:\n%s", srv.Log())
			}
			steptest.Sessions(t, srv.Addr, 1)
		})
	}
}

// Edge-triggered, a client that sends as fast as it can would keep a
// drain-until-EAGAIN loop busy forever: its bytes arrive faster than we
// read them, so EAGAIN never comes. The per-wake-up cap (maxReads) makes the
// loop move on and come back, and other clients' sessions complete in
// about their usual time while the flood goes on. The flood stays outside
// any message, so the server owes no answers and backpressure never
// pauses it. Without the cap (maxReads = 1 << 30) this test failed in two
// of three runs on the 2-core test machine, at 28 and 44 sessions' time.
func TestEdgeCapIsFair(t *testing.T) {
	srv := steptest.Start(t, pkg, "--edge")
	flood := dial(t, srv.Addr, 0)
	// A big send buffer keeps bytes queued on the client's side, so each
	// read the server makes pulls the next segment in at once.
	if err := flood.SetWriteBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var sent atomic.Int64
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		// Bounded: 10 s or 4 GiB, whichever comes first.
		for end := time.Now().Add(10 * time.Second); !stop.Load() && time.Now().Before(end) && sent.Load() < 4<<30; {
			n, err := flood.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()

	time.Sleep(200 * time.Millisecond) // the flood is under way
	rep := steptest.Sessions(t, srv.Addr, 2)
	during := sent.Load()
	stop.Store(true)
	<-writer
	t.Logf("flooder sent %d MiB, sessions took %v", during>>20, rep.Elapsed)
	if during < 4<<20 {
		t.Fatalf("the flood sent only %d bytes: it did not keep the server busy", during)
	}
	if r := steptest.Ratio(rep); r > 3 {
		t.Fatalf("sessions beside a flooding client took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// cpuTicks is the user+system CPU time of a process, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	steptest.NeedsLinux(t, "/proc/PID/stat")
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// Out of file descriptors: with RLIMIT_NOFILE at 32, clients past the
// limit wait in the accept queue. The server logs EMFILE once, takes the
// listener out of epoll instead of spinning on it (CPU stays near idle),
// and serves the waiting clients as soon as fds free up.
func TestEMFILE(t *testing.T) {
	steptest.NeedsLinux(t, "prlimit(1) and /proc/PID/stat")
	for _, md := range modes[:2] {
		t.Run(md.name, func(t *testing.T) {
			args := append([]string{"--nofile=32", steptest.Build(t, pkg), "--port", "0"}, md.args...)
			srv := steptest.StartCmd(t, exec.Command("prlimit", args...))
			var held []net.Conn
			for range 40 {
				c, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}
			if !srv.WaitLog(regexp.MustCompile(`accept failed, pausing.*too many open files`), 5*time.Second) {
				t.Fatalf("no EMFILE log:\n%s", srv.Log())
			}
			before := cpuTicks(t, srv.PID())
			time.Sleep(time.Second)
			if used := cpuTicks(t, srv.PID()) - before; used > 30 {
				t.Fatalf("server used %d ticks of CPU in 1s while out of fds: spinning", used)
			}
			for _, c := range held {
				c.Close()
			}
			rep := steptest.Sessions(t, srv.Addr, 3)
			// A second burst can start while the queued clients are taken
			// in; one log per attempt (about ten in that second) cannot.
			if n := strings.Count(srv.Log(), "accept failed"); n > 2 {
				t.Fatalf("EMFILE logged %d times, want once per burst:\n%s", n, srv.Log())
			}
			t.Logf("after EMFILE: 3 sessions in %v", rep.Elapsed)
		})
	}
}

// SIGTERM reaches loops asleep in epoll_wait through the eventfd: with
// clients connected and idle, every loop closes its fds and the process
// exits 0 within a second.
func TestStopsPromptly(t *testing.T) {
	srv := steptest.Start(t, pkg, "--loops", "2", "--edge")
	for range 50 {
		dial(t, srv.Addr, 0)
	}
	start := time.Now()
	if err := srv.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(loopStopped.FindAllString(srv.Log(), -1)); n != 2 {
		t.Fatalf("%d loops said they stopped, want 2:\n%s", n, srv.Log())
	}
	t.Logf("stopped in %v", time.Since(start))
}
