package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/steptest"
)

var (
	soak      = flag.Bool("soak", false, "run TestSoak (100k short and 10k held connections against step6 and step7)")
	soakShort = flag.Int("soak-short", 100_000, "short connections in the soak run")
	soakHeld  = flag.Int("soak-held", 10_000, "connections held at once in the soak run")
)

// soakPhase bounds each phase of the soak run: whatever is not done by then
// counts as failed.
const soakPhase = 5 * time.Minute

// TestSoak is opt-in, too long for CI:
//
//	taskset -c 1 go test ./internal/conformance -run Soak -soak -v -timeout 30m
//
// (taskset keeps the load generator on CPU 1; the servers are pinned to
// CPU 0.)
// Against step6 (one loop) and step7 (its default loops), each on a fresh
// server: first 100k short connections, 64 at a time, each a whole
// conversation (ack, a message, half-close, every answer, EOF); then 10k
// connections opened and held at once, each mid-message with one answer
// received, then all finishing their conversations together. Zero failures
// are required. It logs a Markdown table ready to paste: connections per
// second, failures, the server's RSS with every connection held, and its
// peak RSS (VmHWM) over the whole run. The client spreads its connections
// over source addresses 127.0.0.2-127.0.0.33, so 100k connections leaving
// TIME_WAIT behind do not exhaust one address's ephemeral ports. Run it
// without -race: it measures the servers as learners run them.
func TestSoak(t *testing.T) {
	if !*soak {
		t.Skip("opt-in: taskset -c 1 go test ./internal/conformance -run Soak -soak -v -timeout 30m")
	}
	var lines []string
	for _, name := range []string{"step6", "step7"} {
		r := rowNamed(name)
		t.Run(name, func(t *testing.T) {
			srv := startPinned(t, r)
			s := soakShortConns(t, srv.Addr, *soakShort)
			h := soakHeldConns(t, srv, *soakHeld)
			hwm := status(t, srv.PID(), "VmHWM")
			lines = append(lines, fmt.Sprintf("| %s | %d | %d | %.0f | %d | %d | %v | %.1f MiB | %.1f MiB |",
				strings.Join(append([]string{r.dir}, r.args...), " "), s.n, s.failed, float64(s.n)/s.elapsed.Seconds(),
				h.n, h.failed, h.elapsed.Round(time.Millisecond), float64(h.rss)/1024, float64(hwm)/1024))
			for _, e := range append(s.errs, h.errs...) {
				t.Errorf("%s", e)
			}
		})
	}
	t.Logf("\n%s, %s, race detector %v, %s, load generator on %d CPU(s):\n\n| server | short conns | failed | conns/s | held conns | failed | held phase | RSS, all held | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n%s",
		time.Now().UTC().Format("2006-01-02"), runtime.Version(), steptest.RaceEnabled, pinned, runtime.NumCPU(), joinLines(lines))
}

// startPinned starts r's server pinned to CPU 0 with taskset, when
// taskset exists, so that it and the load generator (run the test under
// `taskset -c 1`) do not share a core. A server that sizes itself by
// runtime.NumCPU (step7's loops) then sees one CPU.
func startPinned(t *testing.T, r row) *steptest.Server {
	r.present(t)
	bin := r.binary(t)
	args := append([]string{"--port", "0"}, r.args...)
	if ts, err := exec.LookPath("taskset"); err == nil {
		pinned = "server on CPU 0 (taskset)"
		// taskset execs the server, so the process id stays the server's.
		return steptest.StartCmd(t, exec.Command(ts, append([]string{"-c", "0", bin}, args...)...))
	}
	pinned = "server not pinned (no taskset)"
	return steptest.StartCmd(t, exec.Command(bin, args...))
}

// pinned says where startPinned put the servers, for the table's heading.
var pinned string

func joinLines(l []string) string {
	var s string
	for _, x := range l {
		s += x + "\n"
	}
	return s
}

type soakResult struct {
	n, failed int
	elapsed   time.Duration
	rss       int // KiB, with every connection held
	errs      []string
}

// errTally counts failures by message, keeping the report short.
type errTally struct {
	mu sync.Mutex
	n  int
	by map[string]int
}

func (e *errTally) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.by == nil {
		e.by = map[string]int{}
	}
	e.by[err.Error()]++
}

func (e *errTally) lines(what string) []string {
	var l []string
	for msg, n := range e.by {
		l = append(l, fmt.Sprintf("%s: %d x %s", what, n, msg))
	}
	sort.Strings(l)
	return l[:min(len(l), 10)]
}

// sourceIPs are the client's source addresses for phase p (0 or 1), a
// different 16 per phase.
func sourceDialers(p int) []*net.Dialer {
	var ds []*net.Dialer
	for i := range 16 {
		ds = append(ds, &net.Dialer{Timeout: ioTimeout,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+16*p+i))}})
	}
	return ds
}

func soakShortConns(t *testing.T, addr string, n int) soakResult {
	ds := sourceDialers(0)
	ctx, cancel := context.WithTimeout(context.Background(), soakPhase)
	defer cancel()
	var next atomic.Int64
	var bad errTally
	msg := []byte("^soak$ ignored ^ab")
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if ctx.Err() != nil {
					bad.add(errors.New("not run: phase time is up"))
					continue
				}
				if err := converse(ds[i%len(ds)], addr, msg); err != nil {
					bad.add(err)
				}
			}
		})
	}
	wg.Wait()
	r := soakResult{n: n, failed: bad.n, elapsed: time.Since(start), errs: bad.lines("short")}
	t.Logf("%d short connections in %v: %.0f/s, %d failed", n, r.elapsed.Round(time.Millisecond), float64(n)/r.elapsed.Seconds(), bad.n)
	return r
}

// soakHeldConns opens n connections, each sending "^a" and receiving "b"
// (so the server holds each one mid-message), keeps them all open, then
// has all of them finish with "b$", a half-close, "c" and EOF.
func soakHeldConns(t *testing.T, srv *steptest.Server, n int) soakResult {
	ds := sourceDialers(1)
	conns := make([]*net.TCPConn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	deadline := time.Now().Add(soakPhase)
	var bad errTally
	start := time.Now()
	open := func(i int) error {
		nc, err := ds[i%len(ds)].Dial("tcp", srv.Addr)
		if err != nil {
			return err
		}
		c := nc.(*net.TCPConn)
		conns[i] = c
		c.SetDeadline(deadline)
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b[:1]); err != nil || b[0] != protocol.Ack {
			return fmt.Errorf("waiting for '*': %q, %v", b[:1], err)
		}
		if _, err := c.Write([]byte("^a")); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b[:1]); err != nil || b[0] != 'b' {
			return fmt.Errorf("waiting for 'b': %q, %v", b[:1], err)
		}
		return nil
	}
	finish := func(c *net.TCPConn) error {
		if _, err := c.Write([]byte("b$")); err != nil {
			return err
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "c" {
			return fmt.Errorf("finishing: got %q, %v; want \"c\" then EOF", got, err)
		}
		return nil
	}
	// At most 256 connects in flight, so the burst does not overflow the
	// accept queue (a dropped SYN costs a one-second retransmit).
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	ok := make([]bool, n)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := open(i); err != nil {
				bad.add(err)
				return
			}
			ok[i] = true
		})
	}
	wg.Wait()
	opened := time.Since(start)
	rss := status(t, srv.PID(), "VmRSS")
	fds := fdCount(t, srv.PID())
	for i, c := range conns {
		if ok[i] {
			wg.Go(func() {
				if err := finish(c); err != nil {
					bad.add(err)
				}
			})
		}
	}
	wg.Wait()
	r := soakResult{n: n, failed: bad.n, elapsed: time.Since(start), rss: rss, errs: bad.lines("held")}
	t.Logf("%d held connections opened in %v (server: %d fds, RSS %d KiB), all finished after %v, %d failed",
		n, opened.Round(time.Millisecond), fds, rss, r.elapsed.Round(time.Millisecond), bad.n)
	return r
}
