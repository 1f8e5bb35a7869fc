package conformance

import (
	"errors"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/steptest"
)

// outOfFDs matches a log line about running out of file descriptors, in
// whatever words a step chose: its level and the errno's text or name.
var outOfFDs = regexp.MustCompile(`(?im)^.*(level=(WARN|ERROR)|\[(WARN|ERROR)\]).*(out of resources|too many open files|EMFILE|out of file descriptors).*$`)

// testEMFILE lowers the running server's open-file limit with prlimit(2)
// to just above the fds it has open, so that a handful of clients exhaust
// it (a sequential server holds one client at a time, so for it the limit
// leaves no room at all). Then more clients arrive than fit. The server
// must log the condition once per burst (once per accept loop), not once
// per attempt; must not spin (accept failing at once, over and over, is a
// 100% CPU loop, since the pending connection keeps the listener
// readable); and must serve again when fds come back.
//
// Lowering the limit of the live process, rather than starting it under a
// low one, keeps the runtime's start-up fds out of the count and lets a
// sequential server's limit be raised again: only the soft limit is
// lowered, and a process may always raise its soft limit up to the hard.
func testEMFILE(t *testing.T, r row, srv *steptest.Server) {
	steptest.NeedsLinux(t, "prlimit(2) on a running server")
	pid := srv.PID()
	hold := 4
	if !r.concurrent {
		hold = 0
	}
	low := fdLimitFor(t, pid, hold)
	restoreLimit, err := lowerNofile(pid, low)
	if err != nil {
		t.Fatalf("prlimit: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			err := restoreLimit()
			if err != nil && !errors.Is(err, unix.ESRCH) { // ESRCH: it died, reported already
				t.Fatalf("prlimit: %v", err)
			}
		}
	}
	defer restore()

	if r.emfileDies != "" {
		srv.MayExit()
	}
	var conns []*net.TCPConn
	if !r.concurrent {
		// A server blocked in accept(2) already holds the fd number for the
		// next connection (the kernel takes it before waiting), so a
		// blocking sequential server still accepts one client under the
		// lower limit. This first client takes it and leaves; a server on
		// non-blocking sockets gives it no '*' and it waits with the rest.
		p := dial(t, srv.Addr, false)
		if ackWithin(t, p, time.Second) {
			p.Write([]byte("^p"))
			expectRead(t, p, []byte("q"))
			p.Close()
		} else {
			conns = append(conns, p)
		}
	}
	for range hold + 16 {
		c, err := dialer(false).Dial("tcp", srv.Addr)
		if err != nil && r.emfileDies != "" {
			for i := 0; i < 250 && !srv.Exited(); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			if srv.Exited() {
				t.Logf("stopped when out of fds, as the table says: %s", r.emfileDies)
				return
			}
		}
		if err != nil {
			// Refused or reset: the listener is gone, most likely with
			// the whole server; say so with its log.
			for i := 0; i < 50 && !srv.Exited(); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			t.Fatalf("dial while out of fds: %v (server exited: %v):\n%s", err, srv.Exited(), srv.Log())
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c.(*net.TCPConn))
	}
	if r.emfileSheds != "" {
		// Nothing to log: the clients beyond the room must be closed by
		// the server, promptly, rather than left waiting.
		shed := shedClients(conns, 5*time.Second)
		if shed == 0 {
			t.Fatalf("with RLIMIT_NOFILE %d and %d clients, none was closed by the server within 5s, though the table says: %s\n%s",
				low, len(conns), r.emfileSheds, srv.Log())
		}
		t.Logf("%d of %d clients shed (closed by the server at once): %s", shed, len(conns), r.emfileSheds)
	} else if !srv.WaitLog(outOfFDs, 10*time.Second) {
		t.Fatalf("with RLIMIT_NOFILE %d and %d clients, no out-of-fds log line within 10s:\n%s", low, len(conns), srv.Log())
	}
	if r.emfileDies != "" {
		for i := 0; i < 250 && !srv.Exited(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if !srv.Exited() {
			t.Fatalf("the table says %s stops when out of fds (%s), but it is still running", r.name, r.emfileDies)
		}
		t.Logf("stopped when out of fds, as the table says: %s", r.emfileDies)
		return
	}
	alive(t, srv)
	cpu0, t0 := cpuTime(t, pid), time.Now()
	time.Sleep(2 * time.Second)
	alive(t, srv)
	cpu, wall := cpuTime(t, pid)-cpu0, time.Since(t0)
	lines := outOfFDs.FindAllString(srv.Log(), -1)
	first := "(none)"
	if len(lines) > 0 {
		first = lines[0]
	}
	t.Logf("saturated for %v: %v CPU (%.0f%%), %d log line(s), first: %s",
		wall.Round(time.Millisecond), cpu, 100*cpu.Seconds()/wall.Seconds(), len(lines), first)
	if cpu > wall*30/100 {
		t.Errorf("server used %v of CPU in %v while out of fds: it spins", cpu, wall.Round(time.Millisecond))
	}
	if len(lines) > r.acceptors {
		t.Errorf("%d out-of-fds log lines in one burst, want at most %d (one per accept loop):\n%s", len(lines), r.acceptors, srv.Log())
	}

	// Give fds back: clients leave (a sequential server also gets its
	// limit back, since it holds none of these clients). The server must
	// notice on its own, within its back-off's longest pause.
	if !r.concurrent {
		restore()
	}
	for _, c := range conns {
		c.SetLinger(0)
		c.Close()
	}
	exchange(t, srv.Addr, []byte("^served again$"))
	restore()
}

// shedClients reads every client until the server closes it (EOF or a
// reset) or d passes, all at once, and says how many the server closed. A
// client it serves gets its '*' and then nothing, and counts as kept.
func shedClients(conns []*net.TCPConn, d time.Duration) int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	shed := 0
	deadline := time.Now().Add(d)
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(deadline)
			defer c.SetReadDeadline(time.Time{})
			var b [16]byte
			for {
				_, err := c.Read(b[:])
				var ne net.Error
				switch {
				case err == nil:
					continue // the '*' of a client it kept
				case errors.As(err, &ne) && ne.Timeout():
					return // kept, and still open
				}
				mu.Lock()
				shed++
				mu.Unlock()
				return
			}
		})
	}
	wg.Wait()
	return shed
}
