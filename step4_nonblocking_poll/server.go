package main

import (
	"context"
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

// conn is what the server must remember about a client between sweeps,
// since no thread sits in a call on its behalf any more: its fd, its place
// in the protocol, and the answer bytes the kernel has not taken yet.
type conn struct {
	fd   int
	peer string
	m    protocol.Machine
	out  []byte // owed to the client, not yet written
	eof  bool   // the client shut its write side: close once out is empty
}

// wantRead says whether to ask c for input: not after the client's end of
// stream, and not while it owes too much (backpressure).
func (c *conn) wantRead() bool { return !c.eof && len(c.out) < maxPending }

// server is one goroutine's view of every fd it polls.
type server struct {
	lfd      int
	log      *slog.Logger
	interval time.Duration
	conns    map[int]*conn
	buf      []byte // one read buffer, shared: a sweep reads one fd at a time

	backoff  sock.Backoff
	acceptAt time.Time // no accept() before this, after EMFILE

	sweeps, idle int // how many sweeps ran, and how many found nothing
}

// serve sweeps until ctx ends. Nothing here blocks: a sweep asks every fd
// whether it has something and moves on when it has not. Only a sweep that
// did nothing sleeps, so a busy server runs flat out and an idle one wakes
// every interval; interval 0 never sleeps and burns a core even when idle.
func (s *server) serve(ctx context.Context) {
	defer s.closeAll()
	for ctx.Err() == nil {
		s.sweeps++
		if !s.sweep() {
			s.idle++
			if s.interval > 0 {
				sock.Sleep(ctx, s.interval)
			}
		}
	}
}

// sweep tries accept and then each connection once. It reports whether
// anything happened.
func (s *server) sweep() bool {
	busy := s.accept()
	for _, c := range s.conns { // deleting while ranging a map is safe in Go
		if s.handle(c) {
			busy = true
		}
	}
	return busy
}

// accept tries accept(2) once on the non-blocking listener.
func (s *server) accept() bool {
	if time.Now().Before(s.acceptAt) {
		return false // backing off after EMFILE
	}
	nfd, sa, err := sock.Accept(s.lfd) // EINTR is retried inside
	switch {
	case err == unix.EAGAIN:
		return false // nobody is waiting: the answer a blocking accept sleeps on
	case sock.AcceptAborted(err):
		// The client reset while it waited in the queue (ECONNABORTED):
		// that costs its connection only.
		s.log.Info("accept: connection aborted", "err", os.NewSyscallError("accept", err))
		return true
	case err != nil:
		// Out of fds (EMFILE): the connection stays queued, so trying
		// again next sweep fails the same way. Stop asking for a while,
		// longer each time, and say so once per burst.
		d, first := s.backoff.Next()
		if first {
			s.log.Warn("accept: backing off", "for", d, "err", os.NewSyscallError("accept", err))
		}
		s.acceptAt = time.Now().Add(d)
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
	return true
}

// handle asks one client for input, then hands the kernel whatever we owe
// it. Either call may find nothing to do (EAGAIN) or do only part of it (a
// short write): conn keeps the rest for the next sweep.
func (s *server) handle(c *conn) (busy bool) {
	if c.wantRead() {
		n, err := sock.Read(c.fd, s.buf)
		switch {
		case err == unix.EAGAIN:
			// Nothing yet: a blocking read would sleep here.
		case err != nil:
			// ECONNRESET: the client reset. It costs this client only.
			s.drop(c, os.NewSyscallError("read", err))
			return true
		case n == 0:
			// End of stream: the client shut its write side. It may
			// still be reading, so first pay what we owe.
			c.eof, busy = true, true
		default:
			c.out, busy = c.m.Feed(c.out, s.buf[:n]), true
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
			return true
		default:
			// Keep what the kernel did not take, at the front of the
			// same array, so out never grows past maxPending+bufSize.
			c.out, busy = c.out[:copy(c.out, c.out[n:])], true
		}
	}
	if c.eof && len(c.out) == 0 {
		s.log.Debug("peer done", "peer", c.peer)
		s.drop(c, nil)
		return true
	}
	return busy
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
// sweeps cost in CPU time: the figure the interval trades against latency.
func (s *server) closeAll() {
	for _, c := range s.conns {
		s.drop(c, nil)
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err == nil {
		s.log.Info("cpu time", "user", time.Duration(ru.Utime.Nano()), "sys", time.Duration(ru.Stime.Nano()),
			"sweeps", s.sweeps, "idle_sweeps", s.idle)
	}
}
