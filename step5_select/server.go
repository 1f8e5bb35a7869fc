package main

import (
	"context"
	"log/slog"
	"os"
	"time"
	"unsafe"

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

// fdSetSize is FD_SETSIZE: an fd_set is a bitmap with one bit per fd number,
// of a fixed size (1024 bits on Linux and macOS). select can watch no fd at
// or above it; in C, FD_SET(1024, &set) silently writes past the end.
const fdSetSize = int(unsafe.Sizeof(unix.FdSet{})) * 8

// conn is what the server must remember about a client between two
// wake-ups, since no thread sits in a call on its behalf: its fd, its place
// in the protocol, and the answer bytes the kernel has not taken yet.
type conn struct {
	fd   int
	peer string
	m    protocol.Machine
	out  []byte // owed to the client, not yet written
	eof  bool   // the client shut its write side: close once out is empty
}

// wantRead says whether to ask the kernel about input from c: not after the
// client's end of stream, and not while it owes too much (backpressure).
func (c *conn) wantRead() bool { return !c.eof && len(c.out) < maxPending }

// server is one goroutine's view of every fd it watches.
type server struct {
	lfd    int
	wakefd int // readable once we must stop (see wakeOnDone)
	log    *slog.Logger
	conns  map[int]*conn
	buf    []byte // one read buffer, shared: we read one fd at a time

	backoff  sock.Backoff
	acceptAt time.Time // no accept() before this, after EMFILE

	selects int // how many times select returned
}

// serve is the select loop: build the sets of fds we care about, sleep in
// select until the kernel marks some ready, serve exactly those, repeat.
// select overwrites the sets with its answer, so they are rebuilt from
// our own state every time round: O(fds) work per call, even when one fd
// is ready.
func (s *server) serve() error {
	defer s.closeAll()
	var rset, wset unix.FdSet
	for {
		rset.Zero()
		wset.Zero()
		rset.Set(s.wakefd)
		maxfd := max(s.wakefd, s.lfd)
		var timeout *unix.Timeval // nil: sleep until something is ready
		if wait := time.Until(s.acceptAt); wait > 0 {
			// Backing off after EMFILE: leave the listener out, or
			// the kernel would report it ready at once, again and again.
			tv := unix.NsecToTimeval(wait.Nanoseconds())
			timeout = &tv
		} else {
			rset.Set(s.lfd)
		}
		for fd, c := range s.conns {
			if c.wantRead() {
				rset.Set(fd)
			}
			// Ask for writability only while we owe bytes: a socket's
			// send buffer is nearly always writable, so watching it
			// otherwise would wake us for nothing, over and over.
			if len(c.out) > 0 {
				wset.Set(fd)
			}
			maxfd = max(maxfd, fd)
		}
		_, err := unix.Select(maxfd+1, &rset, &wset, nil, timeout)
		if err == unix.EINTR {
			continue // a signal woke us; the sets are rebuilt anyway
		}
		if err != nil {
			return os.NewSyscallError("select", err)
		}
		s.selects++
		if rset.IsSet(s.wakefd) {
			return nil // SIGINT or SIGTERM
		}
		for fd, c := range s.conns { // deleting while ranging a map is safe in Go
			if rset.IsSet(fd) || wset.IsSet(fd) {
				s.handle(c, rset.IsSet(fd))
			}
		}
		// Accept last, so no connection is new to the sets we just read.
		if rset.IsSet(s.lfd) {
			s.accept()
		}
	}
}

// accept takes one client that the kernel says is waiting.
func (s *server) accept() {
	nfd, sa, err := sock.Accept(s.lfd) // EINTR is retried inside
	switch {
	case err == nil:
	case err == unix.EAGAIN:
		return // the queue is empty: the client left it between select and accept
	case sock.AcceptAborted(err):
		// That client gave up while queued (ECONNABORTED): it costs its
		// connection only, and the next may be waiting.
		s.log.Info("accept: connection aborted", "err", os.NewSyscallError("accept", err))
		return
	case sock.OutOfResources(err):
		// EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued
		// and the listener stays readable until some fd is freed.
		s.pause(err)
		return
	default:
		// Anything else: we cannot tell whether it will pass, so back
		// off too rather than spin on it.
		s.pause(err)
		return
	}
	s.backoff.Reset()
	peer := sock.AddrPort(sa).String()
	// select cannot watch this fd: FdSet.Set would index past the bitmap
	// (Go panics where C would corrupt memory). Refuse the client now,
	// clearly, rather than let it hang; the others carry on.
	if nfd >= fdSetSize {
		s.log.Warn("refusing client: its fd is beyond what select can watch",
			"peer", peer, "fd", nfd, "FD_SETSIZE", fdSetSize)
		unix.Close(nfd)
		return
	}
	// accept(2) does not pass O_NONBLOCK on to the new fd (accept4 could,
	// but macOS lacks it), nor close-on-exec: set both.
	unix.CloseOnExec(nfd)
	if err := unix.SetNonblock(nfd, true); err != nil {
		s.log.Warn("fcntl O_NONBLOCK", "peer", peer, "err", err)
		unix.Close(nfd)
		return
	}
	s.log.Debug("peer connected", "peer", peer, "fd", nfd)
	// The ack is just the first byte owed: it goes out with the rest.
	s.conns[nfd] = &conn{fd: nfd, peer: peer, out: []byte{protocol.Ack}}
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
	s.acceptAt = time.Now().Add(d)
}

// handle reads from a client that the kernel says is readable, then hands
// it whatever we owe, at once rather than waiting to hear that it is
// writable: usually the kernel takes it all and we never ask. A short
// write leaves the rest in out, and out makes us ask for writability.
func (s *server) handle(c *conn, readable bool) {
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
			c.out = c.m.Feed(c.out, s.buf[:n])
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
	}
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
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err == nil {
		s.log.Info("cpu time", "user", time.Duration(ru.Utime.Nano()), "sys", time.Duration(ru.Stime.Nano()),
			"selects", s.selects)
	}
}

// wakeOnDone returns an fd that becomes readable once ctx ends, and a stop
// that closes it. The loop sleeps in the kernel until an fd it watches is
// ready, and a signal is no help: Go's runtime takes SIGINT on whichever
// thread it lands on, and an EINTR that does reach the loop only means
// "ask again". So the loop must be woken through an fd it watches.
// The self-pipe trick: watch a pipe's read end, write a byte into its
// other end.
func wakeOnDone(ctx context.Context) (rfd int, stop func(), err error) {
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		return -1, nil, os.NewSyscallError("pipe", err)
	}
	// Close-on-exec like every other fd here, so that a child process
	// never holds a copy. (pipe2 would set it in the same call, but macOS
	// lacks it.)
	unix.CloseOnExec(p[0])
	unix.CloseOnExec(p[1])
	done := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		unix.Write(p[1], []byte{0})
		close(done)
	})
	return p[0], func() {
		// If the write has started, let it finish: closing first would
		// let it land on whatever file takes that fd number next.
		if !cancel() {
			<-done
		}
		unix.Close(p[0])
		unix.Close(p[1])
	}, nil
}
