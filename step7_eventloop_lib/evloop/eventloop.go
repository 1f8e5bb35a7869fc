package evloop

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// loop is one event loop: one goroutine, one epoll, one listener, and the
// connections that listener accepted. Only its own goroutine touches its
// fields, except the task queue (mu, tasks, notified) and the counters.
type loop struct {
	eng   *Engine
	id    int
	p     *poller
	lfd   int
	buf   []byte  // the shared read buffer: every connection reads into it
	conns []*Conn // indexed by fd, so a lookup is one slice index
	open  int     // connections in conns
	evs   []event
	now   time.Time // read once per round, after epoll_wait returns

	// Accept backoff: while accept fails (EMFILE, or any error that is not
	// about one client) the listener is out of the poller's interest set
	// until acceptAt, so a persistent error cannot spin the loop.
	backoff  sock.Backoff
	acceptAt time.Time

	nextTick  time.Time // loop 0 only: when OnTick is due
	nextSweep time.Time // when the idle sweep is due

	draining bool      // Stop was called: no reading, no accepting
	deadline time.Time // end of the graceful stop

	mu       sync.Mutex
	tasks    []task
	spare    []task
	notified atomic.Bool // a wake-up is already on its way
	done     atomic.Bool // the loop has exited: tasks would never run

	nConns, nAccepted, nIn, nOut, nWake atomic.Int64
}

// maxEvents is how many ready fds one epoll_wait reports at most; more
// stay ready and come back on the next round.
const maxEvents = 1024

// task is work another goroutine wants done on this loop; c may be nil.
type task struct {
	c  *Conn
	fn func(c *Conn)
}

func (l *loop) run() error {
	defer l.exit()
	h := l.eng.h
	l.now = time.Now()
	if l.id == 0 {
		l.nextTick = l.now
	}
	if idle := l.eng.opts.idle; idle > 0 {
		l.nextSweep = l.now.Add(idle / 2)
	}
	l.evs = make([]event, 0, maxEvents)
	busy := false
	for {
		// Poll before sleeping. Right after a round with events, more are
		// likely ready, so ask with a zero timeout: epoll_wait then returns
		// at once, a short syscall the runtime handles cheaply. Only when
		// that finds nothing do we yield to other goroutines once and then
		// block. A blocking epoll_wait is dearer in Go than in C: while
		// we sleep the runtime gives our P to another thread, and getting
		// one back on wake-up costs a thread switch. gnet does the same.
		// The timers matter only when we may block, so only then do we
		// read the clock for them (75 ns, near 1% of a message's cost).
		msec := 0
		if !busy {
			msec = l.timeout()
		}
		var err error
		if l.evs, err = l.p.wait(l.evs, msec); err != nil {
			return err
		}
		if busy && len(l.evs) == 0 {
			runtime.Gosched()
		}
		busy = len(l.evs) > 0
		l.now = time.Now()
		// New connections are accepted after the whole batch: an fd
		// closed while serving it could otherwise come straight back
		// from accept, and a later event of the batch that was about
		// the old connection (kqueue reports each filter on its own, so
		// one fd can have two) would be applied to the new one.
		acceptable := false
		for _, ev := range l.evs {
			switch {
			case ev.fd == wakeFD:
				l.nWake.Add(1)
				l.runTasks()
			case ev.fd == l.lfd:
				acceptable = true
			default:
				if c := l.conns[ev.fd]; c != nil {
					l.serve(c, ev)
				}
			}
		}
		if acceptable {
			l.accept()
		}
		if !l.nextTick.IsZero() && !l.now.Before(l.nextTick) {
			d, act := h.OnTick()
			l.nextTick = l.now.Add(max(d, time.Millisecond))
			if act == Shutdown {
				l.eng.Stop()
			}
		}
		if !l.nextSweep.IsZero() && !l.now.Before(l.nextSweep) {
			l.sweep()
		}
		if !l.acceptAt.IsZero() && !l.now.Before(l.acceptAt) && !l.draining {
			l.acceptAt = time.Time{}
			if err := l.p.add(l.lfd, true, false); err != nil {
				return err
			}
		}
		if l.draining && (l.open == 0 || !l.now.Before(l.deadline)) {
			return nil
		}
	}
}

// timeout is how long epoll_wait may sleep: until the next timer is due,
// or for ever when nothing is scheduled.
func (l *loop) timeout() int {
	var next time.Time
	for _, t := range []time.Time{l.nextTick, l.nextSweep, l.acceptAt, l.deadline} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if next.IsZero() {
		return -1
	}
	d := time.Until(next)
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond) // round up: never wake early and spin
}

// accept takes every queued connection, up to a bound per round so that a
// flood of new connections cannot starve the ones already open.
func (l *loop) accept() {
	for range 128 {
		fd, sa, err := l.eng.opts.accept(l.lfd)
		if err != nil {
			// The policy every raw step shares. Only the first two cases
			// may accept again at once; the others would find the same
			// error on the next call, and the listener, level-triggered,
			// would be reported readable on every wait: 100% CPU.
			switch {
			case err == unix.EAGAIN:
				// Nothing waiting (another loop's wake-up, or a peer
				// that reset): back to the poller.
			case sock.AcceptAborted(err):
				continue // that client gave up in the queue; take the next
			case sock.OutOfResources(err):
				// EMFILE and friends: the connection stays queued, so
				// the listener stays readable. Wait for fds to come back.
				l.backOffAccept("accept: out of resources, backing off", err)
			default:
				// Anything else (ENOTSOCK, EINVAL, an errno we have
				// never seen) is no better for being retried at once.
				l.backOffAccept("accept failed, backing off", err)
			}
			return
		}
		l.backoff.Reset()
		// Answers are small and must leave at once; Nagle's algorithm
		// would hold one back for up to a round trip.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if err := l.p.add(fd, true, false); err != nil {
			l.eng.opts.log.Warn("register connection", "loop", l.id, "err", err)
			unix.Close(fd)
			continue
		}
		c := &Conn{l: l, fd: fd, peer: sock.AddrPort(sa), reading: true, regR: true, active: l.now}
		for fd >= len(l.conns) {
			l.conns = append(l.conns, make([]*Conn, len(l.conns)+64)...)
		}
		l.conns[fd] = c
		l.open++
		l.nConns.Add(1)
		l.nAccepted.Add(1)
		out, act := l.eng.h.OnOpen(c)
		if len(out) > 0 {
			c.Write(out)
		}
		l.after(c, act)
	}
}

// backOffAccept takes the listener out of the poller's interest set until
// the backoff ends (run puts it back), logging once per burst: a loop that
// cannot accept keeps serving the connections it has, and spends no CPU on
// the listener meanwhile.
func (l *loop) backOffAccept(msg string, err error) {
	d, first := l.backoff.Next()
	if first {
		l.eng.opts.log.Warn(msg, "loop", l.id, "err", err)
	}
	if err := l.p.del(l.lfd); err != nil {
		l.eng.opts.log.Warn("accept backoff", "loop", l.id, "err", err)
	}
	l.acceptAt = l.now.Add(d)
}

// serve handles one readiness event of one connection.
func (l *loop) serve(c *Conn, ev event) {
	if ev.write && len(c.out) > 0 {
		c.flush()
	}
	if c.err != nil || c.closed {
		l.after(c, None)
		return
	}
	if ev.read && c.reading {
		l.read(c)
		return
	}
	if ev.hup {
		// Error or hang-up with nothing to read or write (we stopped
		// reading for backpressure, say): the peer is gone for good.
		e := int(ev.err)
		if e == 0 {
			e, _ = unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		}
		if e == 0 {
			e = int(unix.ECONNRESET)
		}
		l.closeConn(c, unix.Errno(e))
	}
}

// read does one read(2) into the shared buffer and gives the bytes to
// OnTraffic. One read per event keeps the loop fair: a connection with more
// to send is reported again on the next round (level-triggered).
func (l *loop) read(c *Conn) {
	n, err := read(c.fd, l.buf)
	switch {
	case err == unix.EAGAIN:
		return // a spurious wake-up; nothing to read after all
	case err != nil:
		l.closeConn(c, err) // ECONNRESET and friends: this connection only
		return
	case n == 0:
		// The peer shut its write side (FIN). It may still be reading:
		// every byte we owe it goes out before we close (half-close).
		c.peerDone = true
		c.reading = false
		if c.owesNothing() {
			l.closeConn(c, nil)
		} else {
			c.closing = true
			c.updateInterest()
		}
		return
	}
	l.nIn.Add(int64(n))
	c.active = l.now
	if len(c.rest) == 0 {
		c.in = l.buf[:n] // the common case: no copy at all
	} else {
		c.rest = append(c.rest, l.buf[:n]...)
		c.in = c.rest
	}
	l.traffic(c)
}

// traffic runs OnTraffic over c.in and then keeps what it left unconsumed.
func (l *loop) traffic(c *Conn) {
	act := l.eng.h.OnTraffic(c)
	l.keepRest(c)
	l.after(c, act)
}

// keepRest keeps the input a callback left unconsumed, in c's own buffer.
func (l *loop) keepRest(c *Conn) {
	switch {
	case len(c.in) == 0:
		c.rest = nil // idle again: hold no input memory
	case len(c.rest) > 0 && &c.in[len(c.in)-1] == &c.rest[len(c.rest)-1]:
		// Leftover already in c.rest: slide it to the front.
		c.rest = c.rest[:copy(c.rest, c.in)]
	default:
		// Leftover in the shared buffer, which the next connection
		// will overwrite: copy it out.
		c.rest = append([]byte(nil), c.in...)
	}
	c.in = nil
	if len(c.rest) > l.eng.opts.inboundCap && c.err == nil {
		c.err = ErrInboundFull
	}
}

// after applies what a callback (or a write inside it) asked for.
func (l *loop) after(c *Conn, act Action) {
	switch {
	case c.closed:
	case c.err != nil:
		l.closeConn(c, c.err)
	case act == Close || (c.closing && c.owesNothing()):
		if c.owesNothing() {
			l.closeConn(c, nil)
		} else {
			c.closing = true // flush first; close when nothing is owed
			c.reading = false
			c.updateInterest()
		}
	}
	if act == Shutdown {
		l.eng.Stop()
	}
}

func (l *loop) closeConn(c *Conn, err error) {
	if c.closed {
		return
	}
	c.closed = true
	// close(2) also removes the fd from epoll: we never dup it, so this
	// is its last reference.
	unix.Close(c.fd)
	l.conns[c.fd] = nil
	l.open--
	l.nConns.Add(-1)
	c.in, c.rest, c.out = nil, nil, nil
	if l.eng.h.OnClose(c, err) == Shutdown {
		l.eng.Stop()
	}
}

// sweep closes connections idle for longer than the idle timeout. A scan of
// every connection each timeout/2 is simple and costs a few microseconds per
// thousand connections; a timing wheel would touch only the expiring ones.
func (l *loop) sweep() {
	idle := l.eng.opts.idle
	l.nextSweep = l.now.Add(idle / 2)
	for _, c := range l.conns {
		if c != nil && l.now.Sub(c.active) >= idle && c.jobs.Load() == 0 {
			l.closeConn(c, ErrIdle)
		}
	}
}

// beginDrain is Stop on this loop: stop accepting and reading, close every
// connection that owes nothing, and give the rest until the deadline.
func (l *loop) beginDrain() {
	if l.draining {
		return
	}
	l.draining = true
	l.deadline = l.now.Add(l.eng.opts.stopTimeout)
	if l.acceptAt.IsZero() {
		l.p.del(l.lfd)
	}
	unix.Close(l.lfd)
	l.lfd = -1
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		if c.owesNothing() {
			l.closeConn(c, nil)
		} else {
			c.reading, c.closing = false, true
			c.updateInterest()
		}
	}
}

// exit closes what is left (output that missed the deadline) and the loop's
// own fds, and refuses further tasks.
func (l *loop) exit() {
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c, ErrStopTimeout)
		}
	}
	// done is set under the queue's lock: after this, no enqueue touches
	// the eventfd, which is closed below and whose number the kernel may
	// give to a new socket at once.
	l.mu.Lock()
	l.done.Store(true)
	l.mu.Unlock()
	l.runTasks() // tasks queued before done was set still get their answer
	if l.lfd >= 0 {
		unix.Close(l.lfd)
	}
	l.p.close()
}

// enqueue hands a task to the loop from any goroutine. The atomic flag
// merges wake-ups: a hundred AsyncWrites before the loop wakes cost one
// eventfd write, not a hundred. The write happens under the lock so that it
// can never race with exit closing the eventfd.
func (l *loop) enqueue(t task) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done.Load() {
		return ErrEngineStopped
	}
	l.tasks = append(l.tasks, t)
	if l.notified.CompareAndSwap(false, true) {
		return l.p.wake()
	}
	return nil
}

// runTasks runs the queued tasks. The flag is cleared before the queue is
// taken, so a task queued while these run wakes the loop again.
func (l *loop) runTasks() {
	l.p.drainWake()
	l.notified.Store(false)
	l.mu.Lock()
	tasks := l.tasks
	l.tasks, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	for i, t := range tasks {
		t.fn(t.c)
		tasks[i] = task{} // let closures and conns be collected
	}
	l.spare = tasks[:0]
}
