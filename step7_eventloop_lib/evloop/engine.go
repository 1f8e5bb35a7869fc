package evloop

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// Action is what a callback asks the engine to do next.
type Action int

const (
	// None: carry on.
	None Action = iota
	// Close closes this connection once its pending output is flushed.
	Close
	// Shutdown stops the whole engine, gracefully (see Engine.Stop).
	Shutdown
)

// Handler is the server: the engine calls it, on the connection's loop, for
// everything that happens. A callback must not block: while it runs, every
// other connection of its loop waits. Move slow work to Conn.QueueWork.
type Handler interface {
	// OnBoot runs once, after the listeners are bound and before any
	// connection is accepted.
	OnBoot(eng *Engine) Action
	// OnOpen runs for a new connection; out is sent before anything else.
	OnOpen(c *Conn) (out []byte, action Action)
	// OnTraffic runs when c has bytes to read (Conn.Peek, Next, Discard),
	// or when another goroutine called c.Wake.
	OnTraffic(c *Conn) Action
	// OnClose runs once per connection when it is gone. err is nil for an
	// orderly close (the peer closed, or we did) and says why otherwise.
	OnClose(c *Conn, err error) Action
	// OnTick runs on the first loop right after boot and then again after
	// the delay it returns.
	OnTick() (delay time.Duration, action Action)
}

// BuiltinHandler has no-op versions of every callback. Embed it in a
// handler and write only the callbacks that matter.
type BuiltinHandler struct{}

// OnBoot does nothing.
func (BuiltinHandler) OnBoot(*Engine) Action { return None }

// OnOpen sends nothing.
func (BuiltinHandler) OnOpen(*Conn) ([]byte, Action) { return nil, None }

// OnTraffic throws the input away, so the buffer does not fill up.
func (BuiltinHandler) OnTraffic(c *Conn) Action { c.Discard(-1); return None }

// OnClose does nothing.
func (BuiltinHandler) OnClose(*Conn, error) Action { return None }

// OnTick asks not to be called again for an hour.
func (BuiltinHandler) OnTick() (time.Duration, Action) { return time.Hour, None }

// Errors the library reports.
var (
	ErrUnsupported   = errors.New("evloop: needs epoll (Linux) or kqueue (macOS, FreeBSD)")
	ErrClosed        = errors.New("evloop: connection closed")
	ErrEngineStopped = errors.New("evloop: engine stopped")
	ErrPoolFull      = errors.New("evloop: worker pool queue full")
	ErrInboundFull   = errors.New("evloop: unconsumed input above the inbound cap")
	ErrIdle          = errors.New("evloop: idle timeout")
	ErrStopTimeout   = errors.New("evloop: output not flushed before the stop deadline")
)

// Engine is a running set of event loops.
type Engine struct {
	h     Handler
	opts  options
	addr  netip.AddrPort
	loops []*loop
	pool  *workerPool

	stopOnce sync.Once
	stopped  chan struct{} // closed by Stop
}

// Run binds host:port (port 0 picks a free port, shared by every loop),
// starts the loops and serves until ctx ends, Stop is called or a callback
// returns Shutdown. Then it stops gracefully and returns. An error means the
// engine could not start, or a loop's epoll failed.
func Run(ctx context.Context, h Handler, host string, port int, opts ...Option) error {
	e := &Engine{h: h, opts: defaultOptions(), stopped: make(chan struct{})}
	for _, o := range opts {
		o(&e.opts)
	}
	if err := e.opts.check(); err != nil {
		return err
	}
	if err := e.open(host, port); err != nil {
		e.closeAll()
		return err
	}
	e.pool = newWorkerPool(e.opts.workers, e.opts.workQueue)
	defer e.pool.stop()
	if h.OnBoot(e) == Shutdown {
		e.closeAll()
		return nil
	}
	// A context ending is one more way to call Stop; AfterFunc costs no
	// goroutine while it waits.
	defer context.AfterFunc(ctx, e.Stop)()
	errs := make(chan error, len(e.loops))
	for _, l := range e.loops {
		go func() { errs <- l.run() }()
	}
	var first error
	for range e.loops {
		if err := <-errs; err != nil && first == nil {
			first = err
			e.Stop() // one broken loop stops the others too
		}
	}
	return first
}

func (o *options) check() error {
	switch {
	case o.loops < 1:
		return fmt.Errorf("evloop: %d loops, want at least 1", o.loops)
	case o.readBuf < 1 || o.writeCap < 1 || o.inboundCap < 1:
		return errors.New("evloop: buffer sizes must be positive")
	case o.workers < 1 || o.workQueue < 0:
		return fmt.Errorf("evloop: %d workers, queue %d: want at least 1 worker", o.workers, o.workQueue)
	case o.idle < 0 || o.stopTimeout < 0:
		return errors.New("evloop: timeouts must not be negative")
	}
	return nil
}

// open makes one loop per requested loop, each with its own poller and its
// own listener. Why SO_REUSEPORT rather than one acceptor handing fds over:
// the kernel spreads connections by a hash of their addresses for free, no
// loop ever waits for another, and no fd crosses goroutines. The price is
// that the spread is blind to load: a loop stuck in a slow callback keeps
// getting its share of new connections, which wait in its accept queue.
func (e *Engine) open(host string, port int) error {
	for i := range e.opts.loops {
		p, err := newPoller()
		if err != nil {
			return err
		}
		l := &loop{eng: e, id: i, p: p, lfd: -1, buf: make([]byte, e.opts.readBuf)}
		e.loops = append(e.loops, l)
		// The first bind picks the port when port is 0; the others must
		// share that port, not pick ports of their own.
		lfd, ap, err := e.listen(host, port, i)
		if err != nil {
			return err
		}
		l.lfd = lfd
		if i == 0 {
			e.addr, port = ap, int(ap.Port())
		}
		// accept must never block the loop: with several listeners, or
		// a peer that resets while queued, readable does not promise a
		// connection.
		if err := unix.SetNonblock(lfd, true); err != nil {
			return os.NewSyscallError("fcntl O_NONBLOCK", err)
		}
		if err := p.add(lfd, true, false); err != nil {
			return err
		}
	}
	return nil
}

// listen gives loop i its listener. Where SO_REUSEPORT spreads connections
// (Linux; FreeBSD with SO_REUSEPORT_LB) that is a socket of its own in the
// group. Where it does not (macOS: the kernel would give every connection
// to one socket of the group), loops after the first share the first
// loop's listener through a duplicate fd: every loop's poller reports it
// readable, the loops race to accept and the losers get EAGAIN. That wakes
// every idle loop for each new connection (epoll has EPOLLEXCLUSIVE
// against this; kqueue has no such flag), but the connections do spread,
// and to whichever loop is free first.
func (e *Engine) listen(host string, port, i int) (int, netip.AddrPort, error) {
	if i == 0 || e.opts.spread {
		return sock.ListenFDReusePort(host, port, i > 0)
	}
	// F_DUPFD_CLOEXEC: dup and close-on-exec in one call, like every fd
	// here. Each loop closes its own duplicate; the socket stays open
	// until the last one does.
	lfd, err := unix.FcntlInt(uintptr(e.loops[0].lfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, netip.AddrPort{}, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	return lfd, e.addr, nil
}

// closeAll releases the listeners and pollers of an engine that never ran.
func (e *Engine) closeAll() {
	for _, l := range e.loops {
		if l.lfd >= 0 {
			unix.Close(l.lfd)
		}
		l.p.close()
	}
}

// Addr is the address the engine listens on, with the real port.
func (e *Engine) Addr() netip.AddrPort { return e.addr }

// Loops is the number of event loops.
func (e *Engine) Loops() int { return len(e.loops) }

// Stop starts a graceful stop and returns at once; Run returns when it is
// done. Safe from any goroutine, any number of times.
func (e *Engine) Stop() {
	e.stopOnce.Do(func() {
		close(e.stopped)
		for _, l := range e.loops {
			l.enqueue(task{fn: func(*Conn) { l.beginDrain() }})
		}
	})
}

// LoopStats are one loop's counters since the engine started.
type LoopStats struct {
	Conns    int64 // connections open now
	Accepted int64 // connections accepted in all
	BytesIn  int64 // bytes read from connections
	BytesOut int64 // bytes written to connections
	Wakeups  int64 // eventfd wake-ups: how often other goroutines woke the loop
}

// Stats returns every loop's counters. Safe from any goroutine; each number
// is exact, but they are read one by one, not as one snapshot.
func (e *Engine) Stats() []LoopStats {
	s := make([]LoopStats, len(e.loops))
	for i, l := range e.loops {
		s[i] = LoopStats{
			Conns: l.nConns.Load(), Accepted: l.nAccepted.Load(),
			BytesIn: l.nIn.Load(), BytesOut: l.nOut.Load(), Wakeups: l.nWake.Load(),
		}
	}
	return s
}
