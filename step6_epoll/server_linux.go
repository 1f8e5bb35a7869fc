package main

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/sock"
)

const (
	// maxEvents is how many ready fds one epoll_wait may hand back. More
	// stay queued in the kernel for the next call, so this bounds the work
	// of one round, not the number of clients.
	maxEvents = 256
	// bufSize is how much one read takes from one client; the answer to
	// it is never longer.
	bufSize = 4096
	// maxPending bounds the answer bytes a connection may have waiting for
	// its client to read them. Past it we stop reading from that client
	// (backpressure), so a client that sends without reading costs us at
	// most maxPending+bufSize, not its whole upload.
	maxPending = 64 << 10
	// maxReads caps the reads one wake-up gives one connection in
	// edge-triggered mode (64 KiB), and maxAccepts the connections one
	// wake-up takes from the listener: a client that sends as fast as we
	// read must not keep the loop from everyone else.
	maxReads   = 16
	maxAccepts = 64
)

var ack = []byte{protocol.Ack}

// conn is one client's state: everything the loop must remember between
// two wake-ups, because no goroutine's stack remembers it for us.
type conn struct {
	fd     int
	peer   netip.AddrPort
	m      protocol.Machine
	out    []byte // answers the socket would not take yet, in order
	events uint32 // the interest set registered with epoll right now
	eof    bool   // the client shut its side; close once out is sent
	more   bool   // edge-triggered: stopped at maxReads, queued in loop.again
	err    error  // the first error; the connection is closed for it
}

// loop is one event loop: an epoll instance, the listener it accepts from,
// and the connections it accepted. Nothing in it is shared with another
// loop, so it needs no lock.
type loop struct {
	id     int
	epfd   int
	lfd    int
	wakefd int // the eventfd that stops every loop
	edge   bool
	log    *slog.Logger

	// conns is indexed by fd. The kernel hands out the lowest free fd
	// number, so the table stays dense and a lookup is one index, where
	// select() made us scan a bitmap.
	conns  []*conn
	events []unix.EpollEvent
	buf    []byte // what read() fills, for every connection in turn
	answer []byte // what the protocol owes for buf, before it is sent

	// Edge-triggered only: work a wake-up left undone on purpose.
	// epoll will not report these fds again (no new edge), so we must.
	again, spare []*conn
	acceptAgain  bool

	paused   bool // out of fds: the listener is out of the interest set
	resumeAt time.Time
	backoff  sock.Backoff

	open, peak, served int
}

// serve opens the listeners, starts one loop per listener, and waits until
// ctx ends and every loop has closed its connections.
func serve(ctx context.Context, env *app.Env, cfg config) error {
	lfds, addr, err := listen(env.Host, env.Port, cfg.loops)
	if err != nil {
		return err
	}
	// The stop signal has to reach loops that sit in epoll_wait, which no
	// channel can interrupt. An eventfd is a counter the kernel treats as
	// a file: registered (level-triggered) in every loop's epoll and never
	// read, one write makes it readable in all of them for good.
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		closeAll(lfds)
		return os.NewSyscallError("eventfd", err)
	}
	defer unix.Close(wakefd)
	wake := func() {
		sock.Write(wakefd, binary.NativeEndian.AppendUint64(nil, 1))
	}

	loops := make([]*loop, 0, len(lfds))
	for i, lfd := range lfds {
		l, err := newLoop(i, lfd, wakefd, cfg.edge, env.Log)
		if err != nil {
			for _, l := range loops {
				l.closeAll()
			}
			closeAll(lfds[i:])
			return err
		}
		loops = append(loops, l)
	}
	env.Listening(addr.String())
	mode := "level-triggered"
	if cfg.edge {
		mode = "edge-triggered"
	}
	env.Log.Info("epoll", "mode", mode, "loops", cfg.loops)

	stop := context.AfterFunc(ctx, wake)
	defer stop()
	errs := make([]error, len(loops))
	var wg sync.WaitGroup
	for i, l := range loops {
		// Each loop blocks its own OS thread in epoll_wait; the Go
		// scheduler hands the loop's P to other goroutines meanwhile.
		wg.Go(func() {
			if errs[i] = l.run(); errs[i] != nil {
				wake() // one loop failing stops the server
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// listen opens one non-blocking listener per loop. With several loops they
// all bind the same port with SO_REUSEPORT, and the kernel spreads new
// connections over their accept queues by a hash of the client's address
// and port. With --port 0 the first bind picks a free port and the others
// bind that one.
func listen(host string, port, loops int) ([]int, netip.AddrPort, error) {
	var lfds []int
	var addr netip.AddrPort
	for i := range loops {
		var lfd int
		var ap netip.AddrPort
		var err error
		if loops == 1 {
			// One loop: no SO_REUSEPORT, so a second server started by
			// mistake gets EADDRINUSE instead of half our clients.
			lfd, ap, err = sock.ListenFD(host, port)
		} else {
			lfd, ap, err = sock.ListenFDReusePort(host, port, i > 0)
		}
		if err == nil {
			// Non-blocking: we accept until EAGAIN says the queue is
			// empty, and a blocking accept there would freeze the loop.
			// (ListenFD already made it close-on-exec.)
			if err = unix.SetNonblock(lfd, true); err != nil {
				unix.Close(lfd)
				err = os.NewSyscallError("fcntl O_NONBLOCK", err)
			}
		}
		if err != nil {
			closeAll(lfds)
			return nil, netip.AddrPort{}, err
		}
		if i == 0 {
			addr, port = ap, int(ap.Port())
		}
		lfds = append(lfds, lfd)
	}
	return lfds, addr, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// newLoop creates the loop's epoll instance and puts the listener and the
// stop eventfd in its interest set. From here on the kernel keeps that set:
// we describe it once per change, not once per wait as with select().
func newLoop(id, lfd, wakefd int, edge bool, log *slog.Logger) (*loop, error) {
	// EPOLL_CLOEXEC: a child process must not inherit the epoll fd.
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	l := &loop{
		id: id, epfd: epfd, lfd: lfd, wakefd: wakefd, edge: edge,
		log:    log.With("loop", id),
		events: make([]unix.EpollEvent, maxEvents),
		buf:    make([]byte, bufSize),
		answer: make([]byte, 0, bufSize),
	}
	err = l.ctl(unix.EPOLL_CTL_ADD, lfd, l.listenEvents())
	if err == nil {
		// The eventfd is level-triggered even in --edge mode: every loop
		// must see it, and keep seeing it, once it has been written.
		err = l.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN)
	}
	if err != nil {
		unix.Close(epfd) // the caller still owns lfd
		return nil, err
	}
	return l, nil
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (l *loop) listenEvents() uint32 {
	if l.edge {
		return unix.EPOLLIN | unix.EPOLLET
	}
	return unix.EPOLLIN
}

// interest is the event set a connection needs, derived from its state
// alone. Readable while it may send us more and its answers are under the
// cap; writable only while answers wait: a socket with room in its send
// buffer is writable nearly all the time, so asking for EPOLLOUT with
// nothing to send would wake the loop again and again for nothing.
func (l *loop) interest(c *conn) uint32 {
	var ev uint32
	if !c.eof && len(c.out) < maxPending {
		// EPOLLRDHUP: also wake us when the client shuts its side. After
		// EOF we ask for neither: both stay true for good, and level-
		// triggered epoll would report them on every single wait.
		ev |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if len(c.out) > 0 {
		ev |= unix.EPOLLOUT
	}
	if l.edge {
		ev |= unix.EPOLLET
	}
	return ev
}

// run is the event loop: wait for ready fds, serve each, repeat.
func (l *loop) run() error {
	defer func() {
		l.closeAll()
		l.log.Info("loop stopped", "served", l.served, "peak", l.peak)
	}()
	for {
		n, err := unix.EpollWait(l.epfd, l.events, l.timeout())
		if err == unix.EINTR {
			// A signal (the Go runtime preempting this thread, say)
			// interrupted the wait before anything was ready. Wait again.
			continue
		}
		if err != nil {
			return os.NewSyscallError("epoll_wait", err)
		}
		// What the previous round left for us (edge-triggered only), set
		// aside before this round queues more.
		again, acceptAgain := l.again, l.acceptAgain
		l.again, l.acceptAgain = l.spare[:0], false

		for _, ev := range l.events[:n] {
			switch fd := int(ev.Fd); fd {
			case l.wakefd:
				return nil // ctx ended: closeAll runs on the way out
			case l.lfd:
				l.acceptReady()
			default:
				// Only fds we registered come back, and closing an fd
				// removes it from the interest set, so c is nil only
				// for a bug; skip rather than crash on it.
				if c := l.conns[fd]; c != nil {
					l.handle(c, ev.Events)
					l.settle(c)
				}
			}
		}

		for _, c := range again {
			// Still ours? It may have been closed this round and its fd
			// number given to a new client.
			if fd := c.fd; fd < len(l.conns) && l.conns[fd] == c && c.more {
				c.more = false
				l.handleReadable(c)
				l.settle(c)
			}
		}
		clear(again)
		l.spare = again[:0]
		if acceptAgain && !l.paused {
			l.acceptReady()
		}

		if l.paused && !time.Now().Before(l.resumeAt) {
			if err := l.resumeAccept(); err != nil {
				return err
			}
		}
	}
}

// timeout is how long epoll_wait may block, in milliseconds.
func (l *loop) timeout() int {
	switch {
	case len(l.again) > 0 || l.acceptAgain:
		// Edge-triggered work is waiting that no event will announce:
		// only collect what else is ready, without sleeping.
		return 0
	case l.paused:
		// Wake up in time to take the listener back.
		return max(1, int(time.Until(l.resumeAt).Milliseconds()+1))
	default:
		return -1 // nothing to do until the kernel says so
	}
}

// handle serves one event. EPOLLERR and EPOLLHUP are reported whether we
// asked for them or not.
func (l *loop) handle(c *conn, events uint32) {
	switch {
	case events&unix.EPOLLERR != 0:
		// A reset or another socket error: read it out of SO_ERROR.
		// What we owe can no longer be delivered.
		c.err = errors.New("socket error (EPOLLERR)")
		if e, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			c.err = os.NewSyscallError("epoll (EPOLLERR)", unix.Errno(e))
		}
		return
	case events&unix.EPOLLHUP != 0:
		// Both directions are shut. We never shut our own side, so the
		// connection is dead (reset): nobody is left to read answers.
		c.err = errors.New("hung up (EPOLLHUP)")
		return
	}
	if events&unix.EPOLLOUT != 0 {
		l.flush(c)
	}
	// EPOLLRDHUP (the client shut its write side) is handled as readable,
	// never as "close now": bytes it sent before its FIN may still wait
	// in our receive buffer, and it is owed the answers to them. Reading
	// drains them and then returns 0, which is where we note the EOF.
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 && c.err == nil {
		l.handleReadable(c)
	}
}

// handleReadable reads what the client sent and answers it.
//
// Level-triggered, one read is enough: if more is waiting, the next
// epoll_wait reports the fd again. Edge-triggered, epoll reports a change
// (new bytes arrived) once, so we must read until EAGAIN: stop early with
// bytes left in the buffer and no new edge will ever come for them. But
// "until EAGAIN" is unbounded when the client sends as fast as we read, so
// after maxReads we stop anyway and put the connection on l.again, which
// the loop serves after everyone else's events.
func (l *loop) handleReadable(c *conn) {
	reads := 1
	if l.edge {
		reads = maxReads
	}
	for range reads {
		if len(c.out) >= maxPending {
			// Backpressure: the client is not reading its answers. settle
			// takes EPOLLIN out of the interest set until they drain, so
			// its bytes stay in the kernel's buffers, not in our memory,
			// and TCP's window stops it sending. (In edge-triggered mode,
			// putting EPOLLIN back with EPOLL_CTL_MOD re-checks the socket
			// and reports it if bytes are already waiting.)
			return
		}
		n, err := sock.Read(c.fd, l.buf)
		switch {
		case err == unix.EAGAIN:
			return // drained: the next edge will tell us about new bytes
		case err != nil:
			c.err = os.NewSyscallError("read", err) // ECONNRESET and co
			return
		case n == 0:
			c.eof = true // EOF: settle closes once the answers are out
			return
		}
		l.send(c, c.m.Feed(l.answer[:0], l.buf[:n]))
		if c.err != nil {
			return
		}
	}
	if l.edge && !c.more {
		c.more = true
		l.again = append(l.again, c)
	}
}

// send writes p straight to the socket when nothing is queued before it,
// which is nearly always: most answers never touch c.out. What the socket
// does not take is queued, behind what is already there, so order holds.
func (l *loop) send(c *conn, p []byte) {
	if len(p) == 0 {
		return
	}
	if len(c.out) == 0 {
		n, err := sock.Write(c.fd, p)
		switch {
		case err == unix.EAGAIN:
			// The send buffer is full: queue it all.
		case err != nil:
			c.err = os.NewSyscallError("write", err) // EPIPE, ECONNRESET
			return
		default:
			p = p[n:]
		}
	}
	c.out = append(c.out, p...)
}

// flush writes queued answers until they are gone or the socket is full.
// Writing until EAGAIN is what edge-triggered mode requires, and it is
// bounded here by maxPending.
func (l *loop) flush(c *conn) {
	for len(c.out) > 0 {
		n, err := sock.Write(c.fd, c.out)
		if err == unix.EAGAIN {
			return // EPOLLOUT stays in the interest set
		}
		if err != nil {
			c.err = os.NewSyscallError("write", err)
			return
		}
		c.out = c.out[n:]
	}
	// Drained: give the buffer back, so ten thousand idle clients cost
	// ten thousand small structs and no buffers.
	c.out = nil
}

// settle runs after every event: close the connection if it is finished,
// else make the kernel's interest set match its new state (one epoll_ctl,
// and only when something changed).
func (l *loop) settle(c *conn) {
	switch {
	case c.err != nil:
		// A reset costs this connection only.
		l.drop(c, c.err)
	case c.eof && len(c.out) == 0:
		// The client shut its side and has every answer it is owed.
		l.log.Debug("peer done", "peer", c.peer)
		l.drop(c, nil)
	default:
		if want := l.interest(c); want != c.events {
			if err := l.ctl(unix.EPOLL_CTL_MOD, c.fd, want); err != nil {
				l.drop(c, err)
				return
			}
			c.events = want
		}
	}
}

// acceptReady takes new connections off the listener's queue.
func (l *loop) acceptReady() {
	for range maxAccepts {
		var nfd int
		var sa unix.Sockaddr
		err := sock.IgnoringEINTR(func() (err error) {
			// accept4 (Linux) makes the new socket non-blocking and
			// close-on-exec in the same call, with no window in which
			// another thread's fork+exec could inherit it.
			nfd, sa, err = unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return err
		})
		switch {
		case err == nil:
			l.backoff.Reset()
			l.add(nfd, sa)
		case err == unix.EAGAIN:
			return // the queue is empty
		case sock.AcceptAborted(err):
			// ECONNABORTED and co: that client gave up while queued; the
			// listener is fine and the next one may be waiting.
		default:
			l.pauseAccept(err)
			return
		}
	}
	// The cap, not EAGAIN, ended this batch, so more may be queued. Level-
	// triggered, epoll says so again; edge-triggered, we must remember.
	if l.edge {
		l.acceptAgain = true
	}
}

// pauseAccept handles EMFILE (and any error we cannot act on). The client
// stays in the accept queue, so a level-triggered listener stays readable
// and the loop would spin at 100% CPU calling accept for nothing. Instead
// we take the listener out of the interest set and let the next
// epoll_wait time out when the backoff ends. Queued clients wait (their
// connect already succeeded) and are served when fds free up. The spare-fd
// trick (keep one fd in reserve, close it, accept, close the client) would
// turn them away instead; waiting suits a protocol whose client waits for
// its '*' anyway.
func (l *loop) pauseAccept(err error) {
	d, first := l.backoff.Next()
	if first {
		l.log.Warn("accept failed, pausing the listener", "err", os.NewSyscallError("accept4", err), "retry", d)
	}
	if err := l.ctl(unix.EPOLL_CTL_DEL, l.lfd, 0); err != nil {
		l.log.Warn("pausing the listener", "err", err)
	}
	l.paused, l.resumeAt = true, time.Now().Add(d)
}

// resumeAccept puts the listener back. EPOLL_CTL_ADD checks its state at
// once, so a queue that filled up meanwhile is reported even in
// edge-triggered mode, where no new edge would come for it.
func (l *loop) resumeAccept() error {
	l.paused = false
	return l.ctl(unix.EPOLL_CTL_ADD, l.lfd, l.listenEvents())
}

// add sends the '*' to a new connection and registers it.
func (l *loop) add(nfd int, sa unix.Sockaddr) {
	c := &conn{fd: nfd, peer: sock.AddrPort(sa)}
	l.send(c, ack)
	if c.err != nil {
		l.log.Info("peer gone before the ack", "peer", c.peer, "err", c.err)
		unix.Close(nfd)
		return
	}
	c.events = l.interest(c)
	// Bytes that arrived before this call are not lost in edge-triggered
	// mode: EPOLL_CTL_ADD looks at the socket and reports it if ready.
	if err := l.ctl(unix.EPOLL_CTL_ADD, nfd, c.events); err != nil {
		l.log.Warn("closing", "peer", c.peer, "err", err)
		unix.Close(nfd)
		return
	}
	for nfd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	l.conns[nfd] = c
	l.open++
	l.served++
	l.peak = max(l.peak, l.open)
	l.log.Debug("peer connected", "peer", c.peer, "fd", nfd)
}

// drop closes a connection and forgets it; err says why, if it was an
// error. Closing the fd also takes it out of the epoll interest set, because
// nothing else holds this open socket: we never dup it, and close-on-exec
// keeps child processes from inheriting it. (epoll watches the open file,
// not the fd number: if a copy survived, events would keep coming for an fd
// we no longer own.)
func (l *loop) drop(c *conn, err error) {
	if err != nil {
		l.log.Info("closing", "peer", c.peer, "err", err)
	}
	unix.Close(c.fd)
	l.conns[c.fd] = nil
	l.open--
}

// closeAll closes every connection the loop still has, its listener and
// its epoll instance.
func (l *loop) closeAll() {
	for _, c := range l.conns {
		if c != nil {
			l.drop(c, nil)
		}
	}
	unix.Close(l.lfd)
	unix.Close(l.epfd)
}
