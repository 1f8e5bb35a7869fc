package main

import (
	"os"
	"os/exec"
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

const pkg = "concurrent-servers-go/step4_nonblocking_poll"

// fast is an interval short enough that polling adds no visible latency at
// the test's time scale (a session of 0.22 s); the default 200 ms would add
// up to 0.2 s to each of a session's round trips.
const fast = "--interval=2ms"

// Three clients at once, all served by one goroutine that polls: together
// they take about one session's time. 2 (halfway to the 3 a sequential server takes) leaves room for a busy machine;
// step 3's default mode takes about 3.
func TestPollServesAllAtOnce(t *testing.T) {
	srv := steptest.Start(t, pkg, fast)
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 2 {
		t.Fatalf("3 sessions took %v = %.2f sessions; a concurrent server needs about 1", rep.Elapsed, r)
	}
}

// Many more clients than one goroutine could serve by blocking still
// overlap, and the default interval still serves them all correctly.
func TestManyClients(t *testing.T) {
	for _, args := range [][]string{{fast}, nil} {
		srv := steptest.Start(t, pkg, args...)
		rep := steptest.Sessions(t, srv.Addr, 100)
		if r := steptest.Ratio(rep); r > 5 {
			t.Fatalf("%v: 100 sessions took %v = %.2f sessions", args, rep.Elapsed, r)
		}
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
	srv := steptest.Start(t, pkg, fast)
	steptest.SlowReader(t, srv)
}

// SIGTERM stops the server within a second even with a client connected
// and idle, and with the default 200 ms interval.
func TestStopWhileClientIdle(t *testing.T) {
	srv := steptest.Start(t, pkg)
	steptest.DialAck(t, srv.Addr)
	time.Sleep(300 * time.Millisecond) // let the server go idle
	steptest.StopWithin(t, srv, time.Second)
}

// Out of file descriptors, the server backs off instead of asking accept()
// again at every sweep: it logs once, stays cool, keeps serving the clients
// it has, and accepts the waiting ones once fds come back.
func TestEMFILE(t *testing.T) {
	steptest.EMFILE(t, pkg, fast)
}

func TestBadInterval(t *testing.T) {
	out, err := exec.Command(steptest.Build(t, pkg), "--port", "0", "--interval", "-1s").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("want exit status 2, got %v: %s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "--interval") {
		t.Fatalf("want one line about --interval, got:\n%s", out)
	}
}
