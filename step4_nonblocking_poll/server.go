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
	// maxAccepts caps the connections one sweep takes off the listener, as
	// step 6 caps one wake-up. Taking one per sweep would make a burst of N
	// clients cost N sweeps of up to N reads each; taking all that wait
	// would let a flood of newcomers hold up the clients already here.
	maxAccepts = 64
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

// accept takes the clients waiting on the non-blocking listener, up to
// maxAccepts, and reports whether there was any.
func (s *server) accept() (busy bool) {
	if time.Now().Before(s.acceptAt) {
		return false // backing off after EMFILE
	}
	for range maxAccepts {
		nfd, sa, err := sock.Accept(s.lfd) // EINTR is retried inside
		switch {
		case err == nil:
			s.backoff.Reset()
			s.add(nfd, sa)
			busy = true
		case err == unix.EAGAIN:
			// The queue is empty: the answer a blocking accept sleeps on.
			return busy
		case sock.AcceptAborted(err):
			// That client gave up while queued (ECONNABORTED): it costs
			// its connection only, and the next one may be waiting.
			s.log.Info("accept: connection aborted", "err", os.NewSyscallError("accept", err))
			busy = true
		case sock.OutOfResources(err):
			// EMFILE/ENFILE/ENOBUFS/ENOMEM: the connection stays queued,
			// so trying again next sweep fails the same way. Stop asking
			// for a while, longer each time, and say so once per burst.
			s.pause(err)
			return busy
		default:
			// Anything else: we cannot act on it, so log and back off
			// too. Asking again every sweep would spin on the error.
			s.pause(err)
			return busy
		}
	}
	return true // the cap, not EAGAIN, ended the batch: more may wait
}

// pause stops accepting until the back-off delay has passed, logging once
// per burst of failures.
func (s *server) pause(err error) {
	d, first := s.backoff.Next()
	if first {
		s.log.Warn("accept: backing off", "for", d, "err", os.NewSyscallError("accept", err))
	}
	s.acceptAt = time.Now().Add(d)
}

// add sets up a connection accept returned.
func (s *server) add(nfd int, sa unix.Sockaddr) {
	peer := sock.AddrPort(sa).String()
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
