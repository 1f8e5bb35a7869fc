package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"concurrent-servers-go/internal/procstat"
)

// BenchOptions configures Bench.
type BenchOptions struct {
	Addr     string
	Conns    int // connections, each with its own goroutine
	Size     int // bytes per message
	Pipeline int // messages in flight per connection (closed loop)
	// Rate, if above 0, makes the run open-loop: each connection sends
	// Rate messages per second on a fixed schedule, whatever the answers
	// do, and latency runs from when a message was due, not when it was
	// sent. Pipeline is then unused.
	Rate     float64
	Warmup   time.Duration // run but do not measure
	Duration time.Duration // measure for this long after the warm-up
	// ConnectTimeout bounds connect() plus the wait for '*'.
	ConnectTimeout time.Duration
	LocalIPs       []net.IP // source addresses, used in turn
	ServerPID      int      // if set, the server's CPU use is measured too
	// Progress, if set, is called about ten times a second with the time
	// since the warm-up began and the messages answered so far.
	Progress func(elapsed time.Duration, msgs uint64)
}

// BenchResult is what a bench run measured. Counts cover the measured
// window only, except the Total fields.
type BenchResult struct {
	Conns  int           // connections that got their '*'
	Window time.Duration // the measured window, as it really lasted
	Msgs   uint64        // messages answered and verified in the window
	// Latency is send-to-last-answer-byte time in a closed loop, and
	// due-to-last-answer-byte time in an open loop (Rate).
	Latency  Hist
	Errors   Errors
	CPUUser  time.Duration // this process, during the window
	CPUSys   time.Duration
	CPUWall  time.Duration // the wall time CPUUser, CPUSys and Server were taken over
	Server   time.Duration // the server's CPU time during the window (ServerPID)
	ServerOK bool

	// Every byte sent after the '^' and every answer byte verified, over
	// the whole run, warm-up and drain included: when the run ends cleanly
	// the two are equal, and the server wrote exactly Answered+Conns bytes.
	Sent, Answered uint64
}

// MsgsPerSec is the throughput in messages per second.
func (r *BenchResult) MsgsPerSec() float64 { return float64(r.Msgs) / r.Window.Seconds() }

// drainGrace bounds how long a connection waits, after the window, for the
// answers to messages still in flight.
const drainGrace = 3 * time.Second

// Bench runs the echo benchmark in four phases: connect every connection,
// start them all, sample the CPU figures at the window's edges while they
// run, and collect what each one counted. It fails as a whole only when no
// connection could be set up; otherwise problems are counted in Errors.
func Bench(ctx context.Context, o BenchOptions) (*BenchResult, error) {
	if o.Conns < 1 || o.Size < 1 || o.Pipeline < 1 || o.Duration <= 0 || o.Warmup < 0 || o.Rate < 0 {
		return nil, fmt.Errorf("bench: need conns, size, pipeline and duration above 0")
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	res := &BenchResult{}
	conns := connectAll(ctx, o, &res.Errors)
	res.Conns = len(conns)
	if len(conns) == 0 {
		if res.Errors.AllRefused() {
			return res, fmt.Errorf("connection refused: is a server listening on %s?", o.Addr)
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("no connection to %s: %v", o.Addr, res.Errors.Lines())
	}
	t := timeline{start: time.Now(), measure: o.Warmup, end: o.Warmup + o.Duration}
	var wg sync.WaitGroup
	startAll(ctx, &wg, o, &t, conns)
	sample(ctx, o, &t, conns, res)
	wg.Wait()
	collect(ctx, o, &t, conns, res)
	return res, nil
}

// connectAll opens o.Conns connections, each past its '*' and its first
// '^', and counts in errs the ones that failed.
func connectAll(ctx context.Context, o BenchOptions, errs *Errors) []*benchConn {
	conns := make([]*benchConn, 0, o.Conns)
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Connect with a bounded number of dials in flight: a burst of
	// thousands would overflow the server's accept queue.
	slots := make(chan struct{}, 64)
	for i := range o.Conns {
		var local net.IP
		if len(o.LocalIPs) > 0 {
			local = o.LocalIPs[i%len(o.LocalIPs)]
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			conn, err := dialAck(ctx, local, o.Addr, o.ConnectTimeout)
			if err == nil {
				// The first '^' puts the server's machine in IN_MSG for good:
				// from now on every byte is answered with its successor.
				conn.SetWriteDeadline(time.Now().Add(o.ConnectTimeout))
				_, err = conn.Write([]byte{'^'})
				conn.SetWriteDeadline(time.Time{})
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if conn != nil {
					conn.Close()
				}
				errs.add(err)
				return
			}
			conns = append(conns, newBenchConn(conn, o.Size, o.Pipeline))
		})
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	return conns
}

// startAll starts every connection's loop on its own goroutine, counted in
// wg: closed (run) or open (runOpen) as o.Rate says.
func startAll(ctx context.Context, wg *sync.WaitGroup, o BenchOptions, t *timeline, conns []*benchConn) {
	for i, c := range conns {
		// One deadline for the whole run bounds every read and write,
		// without the cost of setting one per message.
		c.deadline = t.start.Add(t.end + drainGrace)
		c.conn.SetDeadline(c.deadline)
		stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
		wg.Go(func() {
			defer stop()
			if o.Rate > 0 {
				// Spread the connections' schedules over one interval, so
				// they do not all fire at the same instant.
				c.runOpen(t, o.Rate, time.Duration(float64(i)/float64(len(conns))*1e9/o.Rate))
			} else {
				c.run(t)
			}
		})
	}
}

// sample wakes ten times a second until the window ends (or ctx does):
// it takes this process's and the server's CPU times at the window's two
// edges, and reports progress.
func sample(ctx context.Context, o BenchOptions, t *timeline, conns []*benchConn, res *BenchResult) {
	var u0, s0, srv0, el0 time.Duration
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	measuring := false
	for ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		el := time.Since(t.start)
		if !measuring && el >= t.measure {
			measuring, el0 = true, el
			u0, s0, _ = procstat.Rusage()
			if o.ServerPID > 0 {
				srv0, _ = procstat.CPU(o.ServerPID)
			}
		}
		done := el >= t.end
		if done {
			u1, s1, _ := procstat.Rusage()
			res.CPUUser, res.CPUSys, res.CPUWall = u1-u0, s1-s0, el-el0
			if o.ServerPID > 0 {
				if srv1, err := procstat.CPU(o.ServerPID); err == nil && srv0 > 0 {
					res.Server, res.ServerOK = srv1-srv0, true
				}
			}
		}
		if o.Progress != nil {
			var n uint64
			for _, c := range conns {
				n += c.progress.Load()
			}
			o.Progress(el, n)
		}
		if done {
			return
		}
	}
}

// collect adds up what the connections counted, once they have all
// stopped, and closes them.
func collect(ctx context.Context, o BenchOptions, t *timeline, conns []*benchConn, res *BenchResult) {
	res.Window = o.Duration
	if ctx.Err() != nil {
		res.Window = max(time.Since(t.start)-o.Warmup, time.Millisecond)
	}
	for _, c := range conns {
		res.Msgs += c.msgs
		res.Latency.Merge(&c.hist)
		res.Sent += c.sent
		res.Answered += c.answered
		// After Ctrl-C every connection's read fails: that is not the
		// server's fault.
		if c.err != nil && ctx.Err() == nil {
			res.Errors.add(c.err)
		}
		c.conn.Close()
	}
}

// timeline is the run's schedule, as offsets from start on the monotonic
// clock: warm up until measure, count until end, then drain.
type timeline struct {
	start        time.Time
	measure, end time.Duration
}

// benchConn is one connection's state. Its buffers are allocated once; the
// loop in run allocates nothing per message.
type benchConn struct {
	conn           net.Conn
	size, pipeline int
	ring, answer   []byte          // the message pattern and its answers
	sentAt         []time.Duration // send time of each message in flight, by index % pipeline
	rbuf, wbuf     []byte
	deadline       time.Time // of the whole run, drain included

	sent, answered uint64 // bytes
	msgs           uint64 // messages completed inside the window
	hist           Hist
	progress       atomic.Uint64 // messages completed, for the progress bar
	err            error
}

func newBenchConn(conn net.Conn, size, pipeline int) *benchConn {
	ring, answer := patRing(size)
	return &benchConn{
		conn: conn, size: size, pipeline: pipeline, ring: ring, answer: answer,
		sentAt: make([]time.Duration, pipeline),
		rbuf:   make([]byte, min(max(size*pipeline, 4096), 256*1024)),
		wbuf:   make([]byte, 0, size*pipeline),
	}
}

// run keeps pipeline messages in flight: it sends that many, then each time
// answers complete k messages it sends k more in one write. A single
// goroutine does both; it never blocks writing for long because at most
// pipeline*size bytes are ever unanswered, which the bench command keeps
// well inside the kernel's socket buffers.
func (c *benchConn) run(t *timeline) {
	var next uint64 // index of the next message to send
	var done uint64 // messages fully answered
	send := func(k int, now time.Duration) error {
		c.wbuf = c.wbuf[:0]
		for range k {
			c.sentAt[next%uint64(c.pipeline)] = now
			off := int(next % patLen)
			c.wbuf = append(c.wbuf, c.ring[off:off+c.size]...)
			next++
		}
		n, err := c.conn.Write(c.wbuf)
		c.sent += uint64(n)
		return err
	}
	if err := send(c.pipeline, time.Since(t.start)); err != nil {
		c.err = fmt.Errorf("write: %w", err)
		return
	}
	for done < next {
		n, err := c.conn.Read(c.rbuf)
		now := time.Since(t.start)
		if n > 0 {
			completed, verr := c.answers(c.rbuf[:n], done)
			if verr != nil {
				c.err = verr
				return
			}
			for range completed {
				if now >= t.measure && now < t.end {
					c.hist.Record(now - c.sentAt[done%uint64(c.pipeline)])
					c.msgs++
				}
				done++
			}
			c.progress.Store(done)
			if completed > 0 && now < t.end {
				if err := send(int(completed), time.Since(t.start)); err != nil {
					c.err = fmt.Errorf("write: %w", err)
					return
				}
			}
		}
		if err != nil {
			if now >= t.end {
				c.err = fmt.Errorf("%d of %d messages unanswered at the end: %w", next-done, next, err)
			} else {
				c.err = fmt.Errorf("read after %d answer bytes: %w", c.answered, err)
			}
			return
		}
	}
}

// answers verifies a chunk read from the server, counts its bytes, and
// returns how many messages beyond the done already counted it completes.
// Both loops read this way; they differ only in when a message's latency
// starts (when it was sent, or when it was due).
func (c *benchConn) answers(got []byte, done uint64) (uint64, error) {
	if err := c.verify(got); err != nil {
		return 0, err
	}
	c.answered += uint64(len(got))
	return c.answered/uint64(c.size) - done, nil
}

// verify checks a chunk of answers against what the protocol owes for the
// bytes sent: each byte's successor, message by message.
func (c *benchConn) verify(got []byte) error {
	pos := c.answered
	for len(got) > 0 {
		m, i := pos/uint64(c.size), int(pos%uint64(c.size))
		off := int(m % patLen)
		want := c.answer[off+i : off+c.size]
		k := min(len(want), len(got))
		if !bytes.Equal(got[:k], want[:k]) {
			return fmt.Errorf("%w: message %d byte %d: got %q, want %q", ErrWrongBytes, m, i, got[:k], want[:k])
		}
		got, pos = got[k:], pos+uint64(k)
	}
	return nil
}

// openBatch bounds the bytes one write of an open-loop sender carries when
// it is behind schedule and catches up.
const openBatch = 64 * 1024

// runOpen is the open-loop run: message i is due at phase + i/rate from
// the start, and a sender goroutine writes each one when it falls due,
// whether or not earlier ones were answered. The reader, on this
// goroutine, times each answer from its message's due time. A server that
// stalls for 500 ms therefore shows 500 ms of latency on every message due
// during the stall, the way a real user arriving then would see it; a
// closed loop just sends less while the server stalls and records one slow
// message per connection (coordinated omission).
func (c *benchConn) runOpen(t *timeline, rate float64, phase time.Duration) {
	due := func(i uint64) time.Duration { return phase + time.Duration(float64(i)*1e9/rate) }
	var sent, final, done atomic.Uint64 // messages written, messages the sender will ever write (+1), answered
	quit := make(chan struct{})
	var werr error
	var wdone sync.WaitGroup
	wdone.Go(func() {
		var next uint64
		defer func() {
			final.Store(next + 1)
			// If the reader already has every answer it is blocked in a
			// read that nothing will satisfy: wake it. Either it sees
			// final after its last answer, or we see its done here. After
			// a failed write, wake it in any case.
			if werr != nil || done.Load() == next {
				c.conn.SetReadDeadline(time.Now())
			}
		}()
		sleep := time.NewTimer(0)
		defer sleep.Stop()
		for {
			now := time.Since(t.start)
			if due(next) >= t.end {
				return
			}
			if d := due(next) - now; d > 0 {
				sleep.Reset(d)
				select {
				case <-sleep.C:
				case <-quit:
					return
				}
				continue
			}
			// Everything due by now goes out in one write.
			c.wbuf = c.wbuf[:0]
			for due(next) <= now && due(next) < t.end && len(c.wbuf)+c.size <= openBatch {
				off := int(next % patLen)
				c.wbuf = append(c.wbuf, c.ring[off:off+c.size]...)
				next++
			}
			n, err := c.conn.Write(c.wbuf)
			c.sent += uint64(n) // read by Bench only after wdone.Wait
			sent.Store(next)
			if err != nil {
				werr = fmt.Errorf("write: %w", err)
				return
			}
		}
	})
	defer wdone.Wait()
	defer close(quit)
	defer func() {
		if c.err != nil {
			c.conn.SetWriteDeadline(time.Unix(1, 0)) // unblock the sender
		}
	}()
	for {
		if f := final.Load(); f > 0 && done.Load() == f-1 {
			return
		}
		n, err := c.conn.Read(c.rbuf)
		now := time.Since(t.start)
		if n > 0 {
			d := done.Load()
			completed, verr := c.answers(c.rbuf[:n], d)
			if verr != nil {
				c.err = verr
				return
			}
			for range completed {
				if at := due(d); at >= t.measure && at < t.end {
					c.hist.Record(now - at)
					c.msgs++
				}
				d++
			}
			done.Store(d)
			c.progress.Store(d)
		}
		if err != nil {
			f := final.Load()
			switch {
			case f > 0 && done.Load() == f-1 && errors.Is(err, os.ErrDeadlineExceeded):
				return // the sender's wake-up: every answer is in
			case f > 0 && werr != nil:
				c.err = werr
			case time.Now().After(c.deadline):
				c.err = fmt.Errorf("%d of %d messages unanswered at the end: %w", sent.Load()-done.Load(), sent.Load(), err)
			default:
				c.err = fmt.Errorf("read after %d answer bytes: %w", c.answered, err)
			}
			return
		}
	}
}
