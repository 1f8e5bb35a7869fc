package main

import (
	"io"
	"net"
	"os"
	"regexp"
	"strings"
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
// together they take about one session's time. 2 (halfway to the 3 a sequential server takes) leaves room for a busy
// machine; step 3's default mode takes about 3.
func TestSelectServesAllAtOnce(t *testing.T) {
	srv := steptest.Start(t, pkg)
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 2 {
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
		steptest.Expect(t, c, "bcd")
	}
	// Give 50 fds back: new clients fit under the limit again.
	for _, c := range served[:50] {
		c.Close()
	}
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 2 {
		t.Fatalf("3 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}

// A client that shuts its write side (half-close) still receives every
// byte it is owed before the server closes: here a 1 MiB message, far more
// than maxPending, so the server must stop reading, drain, read again, and
// flush the rest after it has seen the end of the stream.
func TestHalfClose(t *testing.T) {
	srv := steptest.Start(t, pkg)
	steptest.HalfClose(t, srv.Addr, 1<<20)
}

// A client that sends a long message and never reads: the server stops
// reading it once maxPending is owed, so the server's memory stays flat, the
// client's writes stall, and everyone else is still served.
func TestSlowReader(t *testing.T) {
	srv := steptest.Start(t, pkg)
	steptest.SlowReader(t, srv)
}

// SIGTERM stops the server within a second even with a client connected
// and idle: the self-pipe wakes select.
func TestStopWhileClientIdle(t *testing.T) {
	srv := steptest.Start(t, pkg)
	steptest.DialAck(t, srv.Addr)
	time.Sleep(100 * time.Millisecond) // let the server sleep in select
	steptest.StopWithin(t, srv, time.Second)
}

// Out of file descriptors, the server stops watching the listener for a
// while instead of being told "readable" again at once: it logs once, stays
// cool, keeps serving the clients it has, and accepts the waiting ones once
// fds come back.
func TestEMFILE(t *testing.T) {
	steptest.EMFILE(t, pkg)
}
