package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"concurrent-servers-go/internal/procstat"
	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

// The shared end-to-end test: three classic sessions at once, every one
// correct, together about one session's time.
func TestConcurrentSessions(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib")
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 2 {
		t.Fatalf("3 sessions took %v = %.2f sessions; an event loop needs about 1", rep.Elapsed, r)
	}
}

// The production reference passes the same test.
func TestGnetServerSessions(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib/gnetserver")
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 2 {
		t.Fatalf("3 sessions took %v = %.2f sessions on gnet", rep.Elapsed, r)
	}
}

// Two hundred clients on a single loop, served all at once: about one
// session's time. 4 leaves room for -race on a busy 2-core machine, where
// connecting 200 clients alone takes a good part of a session.
func TestManyClientsOneLoop(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib", "--loops", "1")
	rep := steptest.Sessions(t, srv.Addr, 200)
	if r := steptest.Ratio(rep); r > 4 {
		t.Fatalf("200 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// A client that half-closes right after a long message still gets every
// answer byte before the server closes: owed bytes are flushed first.
func TestHalfCloseGetsEveryByte(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib")
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := append([]byte("^"), bytes.Repeat([]byte("abc"), 1<<20)...)
	var m protocol.Machine
	want := append([]byte{protocol.Ack}, m.Feed(nil, msg)...)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(c); got <- b }()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes, want %d: the server closed before it had sent everything", len(b), len(want))
	}
}

// Garbage, a reset and a flooder that never reads cost nobody else: a
// classic session run meanwhile is still correct.
func TestBadPeersCostNothingElse(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib", "--loops", "1")
	flood, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	flood.(*net.TCPConn).SetReadBuffer(16 << 10)
	go func() {
		flood.SetWriteDeadline(time.Now().Add(2 * time.Second))
		flood.Write(append([]byte("^"), bytes.Repeat([]byte{0xff, '^', 0}, 4<<20)...))
	}()
	if rst, err := net.Dial("tcp", srv.Addr); err == nil {
		rst.Write([]byte("^abc"))
		rst.(*net.TCPConn).SetLinger(0) // close with RST: the server reads ECONNRESET
		rst.Close()
	}
	steptest.Sessions(t, srv.Addr, 3)
}

// Out of file descriptors (RLIMIT_NOFILE 32, set by the shell's ulimit,
// which every system has, unlike prlimit(1)): the clients past the limit
// wait in the accept queue. The library logs EMFILE once per burst, takes
// the listener out of its poller for the back-off instead of spinning on
// it, and serves the waiting clients once fds come back.
func TestEMFILE(t *testing.T) {
	bin := steptest.Build(t, "concurrent-servers-go/step7_eventloop_lib")
	// exec: the server replaces the shell, so the PID is the server's.
	srv := steptest.StartCmd(t, exec.Command("/bin/sh", "-c", `ulimit -n 32 && exec "$0" --port 0`, bin))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 40 {
		c, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if !srv.WaitLog(regexp.MustCompile(`out of resources.*too many open files`), 5*time.Second) {
		t.Fatalf("no EMFILE log:\n%s", srv.Log())
	}
	if runtime.GOOS == "linux" {
		before, err := procstat.CPU(srv.PID())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		after, _ := procstat.CPU(srv.PID())
		if used := after - before; used > 300*time.Millisecond {
			t.Fatalf("server used %v of CPU in 1 s while out of fds: spinning", used)
		}
	} else {
		// The log count below still catches a loop that retries at once.
		t.Log("CPU use while out of fds not checked: needs Linux (/proc/PID/stat)")
		time.Sleep(time.Second)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	steptest.Sessions(t, srv.Addr, 3)
	// One line per burst per loop; a line per attempt would be dozens.
	if n := strings.Count(srv.Log(), "out of resources"); n > 4 {
		t.Fatalf("EMFILE logged %d times, want once per burst:\n%s", n, srv.Log())
	}
}
