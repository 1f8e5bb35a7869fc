package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/sock"
)

// server is a listening fd and the connection fds open on it. Every call on
// them blocks: the calling thread sleeps in the kernel until the call can
// finish.
type server struct {
	lfd   int
	addr  netip.AddrPort
	log   *slog.Logger
	trace bool

	mu       sync.Mutex
	stopping bool
	conns    map[int]bool // open connection fds, so that stop can wake them
}

// serve is step 1's loop on a raw fd: accept, handle to the end, repeat.
// While handle sits in read() waiting for this client, nobody calls accept(),
// so the next client's connection waits in the kernel's queue: connected,
// but without its '*'.
func (s *server) serve(ctx context.Context) {
	for {
		fd, peer, ok := s.accept(ctx)
		if !ok {
			return
		}
		s.handle(fd, peer)
	}
}

// serveThreads is the C answer to that: a thread per client. Each client
// gets a goroutine that locks itself to its own OS thread, so when its read()
// blocks, that thread sleeps in the kernel and the others carry on. Go would
// start a thread per blocked syscall anyway; locking makes it one thread per
// client by design, as pthread_create would, and visible in the thread count.
func (s *server) serveThreads(ctx context.Context) {
	var clients sync.WaitGroup
	defer clients.Wait()
	clients.Go(func() { s.watchThreads(ctx) })
	for {
		fd, peer, ok := s.accept(ctx)
		if !ok {
			return
		}
		clients.Go(func() {
			// No UnlockOSThread: a goroutine that ends while locked takes
			// its thread with it, so the count falls as clients leave.
			runtime.LockOSThread()
			s.handle(fd, peer)
		})
	}
}

// accept blocks in accept(2) until a client connects, and registers its fd.
// It returns ok=false once the server is stopping.
func (s *server) accept(ctx context.Context) (fd int, peer string, ok bool) {
	var backoff sock.Backoff
	for {
		s.tracef("accept(fd %d)...", s.lfd)
		nfd, sa, err := sock.Accept(s.lfd) // EINTR is retried inside
		if err == nil {
			peer = sock.AddrPort(sa).String()
			s.tracef("accept returned fd %d (peer %s)", nfd, peer)
			// accept(2) does not set close-on-exec (accept4 would, but
			// macOS lacks it): a child process must not inherit clients.
			unix.CloseOnExec(nfd)
			if !s.register(nfd) {
				unix.Close(nfd)
				return -1, "", false
			}
			return nfd, peer, true
		}
		if s.isStopping() {
			return -1, "", false // stop shut the listener down
		}
		switch {
		case sock.AcceptAborted(err):
			// The client reset while it waited in the queue
			// (ECONNABORTED): that costs its connection only.
			s.log.Info("accept: connection aborted", "err", os.NewSyscallError("accept", err))
		case sock.OutOfResources(err):
			// Out of fds (EMFILE): the connection stays queued, so an
			// immediate retry fails the same way, at 100% CPU. Wait for
			// a client to leave and give its fd back.
			d, first := backoff.Next()
			if first {
				s.log.Warn("accept: out of resources, backing off", "err", os.NewSyscallError("accept", err))
			}
			sock.Sleep(ctx, d)
		default:
			s.log.Warn("accept", "err", os.NewSyscallError("accept", err))
			d, _ := backoff.Next()
			sock.Sleep(ctx, d)
		}
	}
}

// handle serves one client until it closes its side. Each answer is written
// out before the next read, so when read returns 0 (the client shut its
// write side) nothing is owed any more and closing loses nothing.
func (s *server) handle(fd int, peer string) {
	defer s.release(fd)
	s.log.Debug("peer connected", "peer", peer, "fd", fd)
	if err := s.writeAll(fd, []byte{protocol.Ack}); err != nil {
		s.log.Info("peer gone before the ack", "peer", peer, "err", err)
		return
	}
	var m protocol.Machine
	buf := make([]byte, 4096)
	out := make([]byte, 0, len(buf))
	for {
		// The thread sleeps here until this client sends something or
		// leaves. In the default mode that is the whole server asleep.
		s.tracef("read(fd %d)...", fd)
		n, err := sock.Read(fd, buf)
		if err != nil {
			// ECONNRESET: the client reset. It costs this client only.
			if !s.isStopping() {
				s.log.Info("read", "peer", peer, "err", os.NewSyscallError("read", err))
			}
			return
		}
		s.tracef("read returned %d bytes", n)
		if n == 0 {
			// End of stream: the client closed or shut down its write
			// side (or stop shut the socket down).
			s.log.Debug("peer done", "peer", peer)
			return
		}
		if out = m.Feed(out[:0], buf[:n]); len(out) > 0 {
			if err := s.writeAll(fd, out); err != nil {
				if !s.isStopping() {
					s.log.Info("write", "peer", peer, "err", err)
				}
				return
			}
		}
	}
}

// writeAll writes p whole. A blocking write sleeps while the kernel's send
// buffer is full (the client is not reading), which bounds our memory to one
// buffer; it can still return early, having sent part of p, when a signal
// arrives mid-way, so loop until every byte is gone.
func (s *server) writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		s.tracef("write(fd %d, %d bytes)...", fd, len(p))
		n, err := sock.Write(fd, p)
		if err != nil {
			// EPIPE or ECONNRESET: the client is gone.
			return os.NewSyscallError("write", err)
		}
		p = p[n:]
	}
	return nil
}

// register records a new connection fd, unless the server is stopping.
func (s *server) register(fd int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.conns[fd] = true
	return true
}

// release forgets fd and closes it. Forgetting first, under the lock, means
// stop can never shut down an fd number that close has already handed back
// to the kernel for reuse.
func (s *server) release(fd int) {
	s.mu.Lock()
	delete(s.conns, fd)
	s.mu.Unlock()
	unix.Close(fd)
}

func (s *server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// stop wakes every thread blocked in accept, read or write. close() would
// not: on Linux a thread already inside read(fd) keeps sleeping on the
// socket after another thread closes fd. shutdown() acts on the socket
// itself: a blocked read returns 0, a blocked write fails with EPIPE, and on
// Linux a blocked accept fails with EINVAL.
func (s *server) stop() {
	s.mu.Lock()
	s.stopping = true
	for fd := range s.conns {
		unix.Shutdown(fd, unix.SHUT_RDWR)
	}
	err := unix.Shutdown(s.lfd, unix.SHUT_RDWR)
	s.mu.Unlock()
	if err != nil {
		// macOS refuses to shut down a listening socket (ENOTCONN) and
		// leaves accept asleep: wake it with a connection of our own,
		// which accept then closes because we are stopping.
		s.selfConnect()
	}
}

func (s *server) selfConnect() {
	ip := s.addr.Addr()
	switch {
	case ip.IsUnspecified() && ip.Is4(): // listening on 0.0.0.0
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsUnspecified(): // listening on ::
		ip = netip.IPv6Loopback()
	}
	if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, s.addr.Port()).String(), time.Second); err == nil {
		c.Close()
	}
}

// tracef logs a blocking call as it starts or returns, with --trace.
func (s *server) tracef(format string, args ...any) {
	if s.trace {
		s.log.Info(fmt.Sprintf(format, args...))
	}
}

// watchThreads logs the process's OS thread count whenever it or the number
// of clients changes, until ctx ends.
func (s *server) watchThreads(ctx context.Context) {
	lastClients, lastThreads := -1, -1
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		clients := len(s.conns)
		s.mu.Unlock()
		threads, what := osThreads()
		if clients != lastClients || threads != lastThreads {
			s.log.Info("os threads", "clients", clients, what, threads)
			lastClients, lastThreads = clients, threads
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// osThreads returns the number of OS threads in this process, from Linux's
// /proc/self/status. Where there is no /proc (macOS) it falls back on the
// runtime's count of threads it ever created, which never goes down, and
// says so in the name it returns.
func osThreads() (int, string) {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					return n, "threads"
				}
			}
		}
	}
	return pprof.Lookup("threadcreate").Count(), "threads_created"
}
