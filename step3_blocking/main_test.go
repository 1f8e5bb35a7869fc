package main

import (
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

const pkg = "concurrent-servers-go/step3_blocking"

// Three clients at once against the default mode: every session is correct,
// and they take about three sessions' time, because each waits for the one
// before it to finish. The ratio is generous (2.5 of 3) so a busy machine
// cannot make the test flaky.
func TestBlockingServesOneAtATime(t *testing.T) {
	srv := steptest.Start(t, pkg)
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r < 2.5 {
		t.Fatalf("3 sessions took %v = %.2f sessions; a sequential server needs about 3", rep.Elapsed, r)
	}
}

// The lesson, seen from two clients: while the server sits in read() on the
// first one, the second is connected (the kernel queued it) but gets no '*'
// and no answer, even though it has already sent a message. Once the first
// leaves, the second gets its '*' and the answer the kernel kept for it. The
// trace shows where the server was: blocked in read on the first client's fd.
func TestSecondClientWaits(t *testing.T) {
	srv := steptest.Start(t, pkg, "--trace")
	first := steptest.DialAck(t, srv.Addr)
	second, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Write([]byte("^abc$")); err != nil {
		t.Fatal(err)
	}
	// The first client is served while the second waits.
	if _, err := first.Write([]byte("^hello$")); err != nil {
		t.Fatal(err)
	}
	steptest.Expect(t, first, "ifmmp")
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := second.Read(make([]byte, 1)); n > 0 || !isTimeout(err) {
		t.Fatalf("second client got %d bytes (%v) while the first was served; want nothing", n, err)
	}
	if !srv.WaitLog(regexp.MustCompile(`read returned 7 bytes"\n.*msg="write\(fd \d+, 5 bytes\)...`), 5*time.Second) {
		t.Fatalf("trace lacks the first client's read and write:\n%s", srv.Log())
	}
	first.Close()
	// Now the server accepts the second client and reads what it sent
	// long ago.
	steptest.Expect(t, second, "*bcd")
	for _, call := range []string{`msg="accept(fd `, `msg="accept returned fd `, `msg="read(fd `, `msg="read returned 0 bytes"`} {
		// The log reaches us through a pipe: give the last lines a moment.
		if !srv.WaitLog(regexp.MustCompile(regexp.QuoteMeta(call)), 5*time.Second) {
			t.Errorf("trace lacks %q:\n%s", call, srv.Log())
		}
	}
}

// With --threads, clients no longer wait for each other. An upper bound on
// time is what a loaded machine can break (a sequential server cannot
// break a lower one), so the best of three tries counts: a server that
// serves one at a time needs about 3 sessions every time.
func TestThreadsServeAllAtOnce(t *testing.T) {
	srv := steptest.Start(t, pkg, "--threads")
	best := 0.0
	for try := range 3 {
		rep := steptest.Sessions(t, srv.Addr, 3)
		r := steptest.Ratio(rep)
		if r <= 1.5 {
			return
		}
		if try == 0 || r < best {
			best = r
		}
		t.Logf("try %d: 3 sessions took %v = %.2f sessions", try+1, rep.Elapsed, r)
	}
	t.Fatalf("3 sessions took at best %.2f sessions' time in 3 tries; a thread per client needs about 1", best)
}

var threadsLine = regexp.MustCompile(`msg="os threads" clients=(\d+) threads=(\d+)`)

// threadsAt returns the last thread count the server logged with exactly
// the given number of clients, waiting up to 10 s for such a line.
func threadsAt(t *testing.T, srv *steptest.Server, clients int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found := -1
		for _, m := range threadsLine.FindAllStringSubmatch(srv.Log(), -1) {
			if c, _ := strconv.Atoi(m[1]); c == clients {
				found, _ = strconv.Atoi(m[2])
			}
		}
		if found >= 0 {
			return found
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no thread count logged with clients=%d:\n%s", clients, srv.Log())
	return 0
}

// Each idle client in --threads mode holds an OS thread asleep in read(),
// and the thread goes away with the client. (Linux only: elsewhere the
// server can only log how many threads were ever created.)
func TestThreadsCostOneOSThreadEach(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc: the server cannot count its live threads here")
	}
	const n = 8
	srv := steptest.Start(t, pkg, "--threads")
	idle := threadsAt(t, srv, 0)
	var conns []net.Conn
	for range n {
		conns = append(conns, steptest.DialAck(t, srv.Addr))
	}
	busy := threadsAt(t, srv, n)
	// Each client's thread is its own, so there are more threads than
	// clients (the runtime keeps a few of its own). The rise over the idle
	// count can be a little short of n: a locked goroutine may take over
	// an idle thread the runtime had parked, so only half is required.
	if busy < n+1 || busy-idle < n/2 {
		t.Fatalf("%d idle clients: %d threads, %d with none; want a thread per client", n, busy, idle)
	}
	for _, c := range conns {
		c.Close()
	}
	// A locked goroutine that ends takes its thread with it, so the count
	// falls back to about where it was before the clients came (a couple
	// over, for threads the runtime started meanwhile and keeps parked).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if after := threadsAt(t, srv, 0); after <= idle+n/4 && after < busy {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("threads did not go back down after the clients left:\n%s", srv.Log())
}

// --threads caps the clients served at once (--max-clients), because each
// holds an OS thread and the Go runtime aborts the whole process past 10000
// threads. Scaled down to a cap of 3 and ten clients: the three under the
// cap are served correctly, the seven past it are refused at once (closed
// without a '*'), the burst is logged once, and the server lives on: once
// the three leave, new clients are served, and the next burst is logged
// once more.
func TestMaxClientsRefusesPastTheCap(t *testing.T) {
	const maxClients, n = 3, 10
	srv := steptest.Start(t, pkg, "--threads", "--max-clients", strconv.Itoa(maxClients))
	refusals := regexp.MustCompile(`msg="refusing clients: --max-clients reached" max=3`)
	for burst := 1; burst <= 2; burst++ {
		var held []net.Conn
		for range maxClients {
			held = append(held, steptest.DialAck(t, srv.Addr))
		}
		waitClients(t, srv, maxClients)
		for range n - maxClients {
			expectRefused(t, srv.Addr)
		}
		for _, c := range held {
			if _, err := c.Write([]byte("^abc$")); err != nil {
				t.Fatal(err)
			}
			steptest.Expect(t, c, "bcd")
		}
		if got := len(refusals.FindAllString(srv.Log(), -1)); got != burst {
			t.Fatalf("after burst %d of %d refusals: %d refusal lines in the log, want %d (one per burst):\n%s",
				burst, n-maxClients, got, burst, srv.Log())
		}
		for _, c := range held {
			c.Close()
		}
		// The slots free up as the three threads end; the server logs
		// the client count as it changes.
		waitClients(t, srv, 0)
	}
	// After the bursts, new clients get whole sessions, every byte checked.
	steptest.Sessions(t, srv.Addr, maxClients)
}

// expectRefused connects and expects the server to close the connection
// at once, without sending its '*'.
func expectRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil {
		t.Fatalf("a client past the cap got %q (%v); want the connection closed at once, with nothing sent", b, err)
	}
}

// waitClients waits up to 10 s for the last client count the server logged
// to be want. The server logs the count when it changes, so the caller must
// wait for a count that differs from the one before it.
func waitClients(t *testing.T, srv *steptest.Server, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m := threadsLine.FindAllStringSubmatch(srv.Log(), -1)
		if len(m) > 0 && m[len(m)-1][1] == strconv.Itoa(want) {
			return
		}
	}
	t.Fatalf("the server never logged clients=%d:\n%s", want, srv.Log())
}

// SIGTERM must stop the server within a second even while a thread is
// asleep in read() on an idle client and another client waits in the
// queue: close() would not wake that read, shutdown() does.
func TestStopWhileClientIdle(t *testing.T) {
	for name, mode := range map[string][]string{"default": nil, "threads": {"--threads"}} {
		t.Run(name, func(t *testing.T) {
			srv := steptest.Start(t, pkg, mode...)
			idle := steptest.DialAck(t, srv.Addr)
			defer idle.Close()
			queued, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer queued.Close()
			time.Sleep(100 * time.Millisecond) // let the server sit in read()
			steptest.StopWithin(t, srv, time.Second)
			// The idle client sees the server close its side.
			idle.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(idle); err != nil {
				t.Fatalf("idle client: want EOF after the server stopped, got %v", err)
			}
		})
	}
}

// A client that shuts its write side (half-close) still receives every
// byte it is owed before the server closes: here a 1 MiB message, far more
// than one read or one socket buffer holds.
func TestHalfClose(t *testing.T) {
	srv := steptest.Start(t, pkg)
	steptest.HalfClose(t, srv.Addr, 1<<20)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
