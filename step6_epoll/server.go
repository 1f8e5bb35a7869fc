//go:build linux || darwin || freebsd

package main

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/sock"
)

const (
	// bufSize is how much one read takes from one client.
	bufSize = 4096
	// maxPending caps the answer bytes a client may owe us. A client that
	// sends without reading would otherwise make us buffer without limit;
	// over the cap we stop reading it until it drains, so its own socket
	// buffers fill and the kernel makes it wait.
	maxPending = 64 << 10
)

// conn is what the server must remember about a client between two
// wake-ups, since no thread sits in a call on its behalf: its fd, its place
// in the protocol, and the answer bytes the kernel has not taken yet.
type conn struct {
	fd   int
	peer string
	m    protocol.Machine
	out  []byte // owed to the client, not yet written
	eof  bool   // the client shut its write side: close once out is empty

	watched interest // what the kernel's interest set holds for fd
	more    bool     // edge.go: left unread at the cap, queued in again
}

// wantRead says whether to ask the kernel about input from c: not after the
// client's end of stream, and not while it owes too much (backpressure).
func (c *conn) wantRead() bool { return !c.eof && len(c.out) < maxPending }

// server is one goroutine's view of every fd it watches.
type server struct {
	lfd    int
	wakefd int // readable once we must stop (see wakeOnDone)
	log    *slog.Logger
	poll   *poller // the epoll instance: the interest set lives in the kernel
	conns  map[int]*conn
	buf    []byte // one read buffer, shared: we read one fd at a time

	backoff  sock.Backoff
	acceptAt time.Time // no accept() before this, after EMFILE
	paused   bool      // the listener is out of the interest set until acceptAt

	edgeState // edge.go: what the drain caps left for the next round

	waits        int // how many times epoll_wait returned
	served, peak int // clients accepted; most at once
}

// serve is the epoll loop: sleep in epoll_wait until the kernel hands back
// the fds that are ready, serve exactly those, repeat. Nothing is rebuilt:
// the kernel keeps the interest set, changed only when a connection's needs
// change (see watch), and its answer lists only the ready fds, so a call
// costs what happened, however many clients are idle.
func (s *server) serve() error {
	defer s.closeAll()
	for {
		timeout := time.Duration(-1) // negative: sleep until something is ready
		if wait := time.Until(s.acceptAt); wait > 0 {
			// Backing off after EMFILE: leave the listener out, or
			// the kernel would report it ready at once, again and again.
			timeout = wait
		} else {
			s.resume()
		}
		if len(s.again) > 0 || s.acceptAgain {
			timeout = 0 // edge.go left work that no event will announce
		}
		events, err := s.poll.wait(timeout)
		if err == unix.EINTR {
			continue // a signal (the runtime preempting us, say) cut the wait short
		}
		if err != nil {
			return os.NewSyscallError(waitCall, err)
		}
		s.waits++
		for _, ev := range events {
			c := s.conns[ev.fd]
			switch {
			case ev.fd == s.wakefd:
				return nil // SIGINT or SIGTERM
			case ev.fd == s.lfd && s.edge:
				s.acceptEdge()
			case ev.fd == s.lfd:
				s.accept()
			case c == nil:
				// A bug: closing an fd takes it out of the interest set.
			case ev.err != nil:
				s.drop(c, ev.err) // a reset: what we owe cannot be delivered
			case s.edge:
				s.handleEdge(c, ev.read)
			default:
				s.handle(c, ev.read)
			}
		}
		if s.edge {
			s.serveAgain()
		}
	}
}

// accept takes one client that the kernel says is waiting.
// It reports whether more may be: edge.go takes them all.
func (s *server) accept() bool {
	nfd, sa, err := sock.Accept(s.lfd) // EINTR is retried inside
	switch {
	case err == nil:
	case err == unix.EAGAIN:
		return false // the queue is empty
	case sock.AcceptAborted(err):
		// That client gave up while queued (ECONNABORTED): it costs its
		// connection only, and the next may be waiting.
		s.log.Info("accept: connection aborted", "err", os.NewSyscallError("accept", err))
		return true
	case sock.OutOfResources(err):
		// EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued
		// and the listener stays readable until some fd is freed.
		s.pause(err)
		return false
	default:
		// Anything else: we cannot tell whether it will pass, so back
		// off too rather than spin on it.
		s.pause(err)
		return false
	}
	s.backoff.Reset()
	peer := sock.AddrPort(sa).String()
	// accept(2) does not pass O_NONBLOCK on to the new fd (accept4 could,
	// but macOS lacks it), nor close-on-exec: set both.
	unix.CloseOnExec(nfd)
	if err := unix.SetNonblock(nfd, true); err != nil {
		s.log.Warn("fcntl O_NONBLOCK", "peer", peer, "err", err)
		unix.Close(nfd)
		return true
	}
	s.log.Debug("peer connected", "peer", peer, "fd", nfd)
	// The ack is just the first byte owed: it goes out with the rest.
	s.conns[nfd] = &conn{fd: nfd, peer: peer, out: []byte{protocol.Ack}}
	s.served++
	s.peak = max(s.peak, len(s.conns))
	s.handle(s.conns[nfd], false) // sends it now, and registers the fd
	return true
}

// pause leaves the listener out for a while, longer each time, and says so
// once per burst. Its connection is still queued, so the listener stays
// readable: left in, it would be reported at once, again and again, and
// the loop would spin. Queued clients wait (their connect has succeeded)
// and are served once fds are freed.
func (s *server) pause(err error) {
	d, first := s.backoff.Next()
	if first {
		s.log.Warn("accept failed, pausing the listener", "err", os.NewSyscallError("accept", err), "retry", d)
	}
	if err := s.poll.set(s.lfd, interest{read: true}, interest{}); err != nil {
		s.log.Warn("pausing the listener", "err", err)
	}
	s.acceptAt = time.Now().Add(d)
	s.paused = true // serve calls resume once acceptAt has passed
}

// resume puts the listener back after a pause, if it is out. Adding an fd
// makes the kernel look at it at once, so a queue that filled meanwhile is
// reported even edge-triggered.
func (s *server) resume() {
	if !s.paused {
		return
	}
	if err := s.poll.set(s.lfd, interest{}, interest{read: true}); err != nil {
		s.log.Warn("resuming the listener", "err", err)
		s.acceptAt = time.Now().Add(time.Second) // try again later
		return
	}
	s.paused = false
}

// handle reads from a client that the kernel says is readable, then hands
// it whatever we owe, at once rather than waiting to hear that it is
// writable: usually the kernel takes it all and we never ask. A short
// write leaves the rest in out, and out makes us ask for writability.
// more reports that the read returned bytes: edge.go reads again.
func (s *server) handle(c *conn, readable bool) (more bool) {
	if readable {
		n, err := sock.Read(c.fd, s.buf)
		switch {
		case err == unix.EAGAIN:
			// Spurious readiness: nothing after all. Wait again.
		case err != nil:
			// ECONNRESET: the client reset. It costs this client only.
			s.drop(c, os.NewSyscallError("read", err))
			return
		case n == 0:
			// End of stream: the client shut its write side. It may
			// still be reading, so first pay what we owe.
			c.eof = true
		default:
			c.out, more = c.m.Feed(c.out, s.buf[:n]), true
		}
	}
	if len(c.out) > 0 {
		n, err := sock.Write(c.fd, c.out)
		switch {
		case err == unix.EAGAIN:
			// The client's socket buffer is full: it is not reading.
		case err != nil:
			// EPIPE or ECONNRESET: the client is gone.
			s.drop(c, os.NewSyscallError("write", err))
			return
		default:
			// Keep what the kernel did not take, at the front of the
			// same array, so out never grows past maxPending+bufSize.
			c.out = c.out[:copy(c.out, c.out[n:])]
		}
	}
	if c.eof && len(c.out) == 0 {
		s.log.Debug("peer done", "peer", c.peer)
		s.drop(c, nil)
		return
	}
	s.watch(c)
	return
}

// watch brings the kernel's interest set up to date with what c waits for
// now, with one epoll_ctl when that changed: input while wantRead, and
// writability only while we owe bytes, as select's sets were built.
func (s *server) watch(c *conn) {
	want := interest{read: c.wantRead(), write: len(c.out) > 0}
	if want == c.watched {
		return
	}
	if err := s.poll.set(c.fd, c.watched, want); err != nil {
		s.drop(c, err)
		return
	}
	c.watched = want
}

// drop closes a connection and forgets it; err says why, if it was an error.
func (s *server) drop(c *conn, err error) {
	if err != nil {
		s.log.Info("closing", "peer", c.peer, "err", err)
	}
	unix.Close(c.fd)
	delete(s.conns, c.fd)
}

// closeAll closes every connection when the server stops, and logs what the
// loop cost in CPU time, to compare with the step before.
func (s *server) closeAll() {
	for _, c := range s.conns {
		s.drop(c, nil)
	}
	s.log.Info("loop stopped", "served", s.served, "peak", s.peak)
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err == nil {
		s.log.Info("cpu time", "user", time.Duration(ru.Utime.Nano()), "sys", time.Duration(ru.Stime.Nano()),
			"waits", s.waits)
	}
}

// wakeOnDone returns an fd that becomes readable once ctx ends, and a stop
// that closes it. The loop sleeps in the kernel until an fd it watches is
// ready, and a signal is no help: Go's runtime takes SIGINT on whichever
// thread it lands on, and an EINTR that does reach the loop only means
// "ask again". So the loop must be woken through an fd it watches.
// Step 5 used a pipe; Linux has an eventfd, one fd that is a counter,
// readable while it is not zero (wakeFDs, in epoll.go; on kqueue it is
// step 5's pipe again, in kqueue.go).
func wakeOnDone(ctx context.Context) (rfd int, stop func(), err error) {
	fd, wfd, err := wakeFDs()
	if err != nil {
		return -1, nil, err
	}
	done := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		sock.Write(wfd, binary.NativeEndian.AppendUint64(nil, 1))
		close(done)
	})
	return fd, func() {
		// If the write has started, let it finish: closing first would
		// let it land on whatever file takes that fd number next.
		if !cancel() {
			<-done
		}
		unix.Close(fd)
		if wfd != fd {
			unix.Close(wfd) // a pipe's other end
		}
	}, nil
}
