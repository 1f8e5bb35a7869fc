// Package sock holds the socket plumbing every step needs but none of them
// teaches: resolving the listen address, creating a listening socket by hand,
// retrying a syscall that a signal interrupted, backing off when accept()
// fails for want of resources, and raising the open-file limit.
//
// Everything here is portable across Linux and macOS: it uses only calls that
// golang.org/x/sys/unix offers on both (socket + CloseOnExec rather than
// SOCK_CLOEXEC, accept + SetNonblock rather than accept4).
package sock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Backlog is the accept queue length the raw steps ask listen() for. The
// kernel silently caps it at net.core.somaxconn (4096 on current Linux), so
// asking for more is harmless. A long queue matters for C10K: a client whose
// SYN finds the queue full is not refused, its SYN is dropped and retried a
// second later, which shows up as a one-second stall in the client's numbers.
const Backlog = 4096

// ResolveTCP turns a --host and --port pair into an address. Names such as
// "localhost" are looked up; the first address found wins. An empty host is
// refused rather than read as "every interface": say 0.0.0.0 or ::.
func ResolveTCP(host string, port int) (netip.AddrPort, error) {
	if host == "" {
		return netip.AddrPort{}, errors.New("empty host: give an address such as 127.0.0.1, 0.0.0.0 (every IPv4 interface) or :: (every IPv6 one)")
	}
	if port < 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %d out of range 0-65535", port)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
		if lerr != nil || len(ips) == 0 {
			return netip.AddrPort{}, fmt.Errorf("cannot resolve host %q: %v", host, lerr)
		}
		ip = ips[0]
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// Listen opens a listening socket through package net, for the steps that use
// Go's own networking (steps 1 and 2). Go already sets SO_REUSEADDR on
// listeners and asks for somaxconn as the backlog.
//
// The network is "tcp4" or "tcp6", chosen from the resolved address, never
// plain "tcp": given 0.0.0.0, "tcp" opens an IPv6 socket that also takes
// IPv4 (dual-stack [::]), so a server asked for every IPv4 interface would
// answer on every IPv6 one too. "tcp6" sets IPV6_V6ONLY, as ListenFD does.
func Listen(host string, port int) (net.Listener, error) {
	ap, err := ResolveTCP(host, port)
	if err != nil {
		return nil, err
	}
	network := "tcp4"
	if ap.Addr().Is6() {
		network = "tcp6"
	}
	ln, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// ListenFD creates a raw, blocking listening socket: socket, setsockopt,
// bind, listen, the four calls package net hides. It returns the fd and the
// address actually bound, which tells the caller the port when it asked for 0.
func ListenFD(host string, port int) (int, netip.AddrPort, error) {
	if inGroup {
		return ListenFDReusePort(host, port, false)
	}
	return listenFD(host, port, false)
}

// inGroup and joinGroup say that this process is one of a prefork group of
// server processes sharing one port (internal/app's --procs), and whether
// it joins a port the group's first process already holds.
var inGroup, joinGroup bool

// JoinGroup makes every listener this process opens from now on a member
// of a group sharing its port with SO_REUSEPORT, ListenFD's too; join says
// that another process of the group listens there already, so the check
// against an accidental second server is skipped. Call it before the
// server opens its first listener.
func JoinGroup(join bool) {
	inGroup, joinGroup = true, join
}

// ListenFDReusePort is ListenFD with SO_REUSEPORT set (SO_REUSEPORT_LB on
// FreeBSD), so that several sockets, one per event loop, can bind the same
// address and the kernel spreads incoming connections across them. Where
// it does not spread them (macOS: ReusePortSpreads is false), it still
// binds, and the caller shares one listener instead.
//
// SO_REUSEPORT alone cannot tell a deliberate group from an accident: the
// kernel lets any socket of the same user that also sets it join, so the
// same server started twice by mistake would bind too and quietly take
// half the new connections. So the first listener of a group (join false)
// first makes sure nobody listens on the address, with a probe bound
// without SO_REUSEPORT; only then does it bind with the flag. The others
// (join true, on the port the first one got) skip the check, since that
// listener is now there by design. A server started twice thus fails on
// its first listener, with EADDRINUSE naming the address.
func ListenFDReusePort(host string, port int, join bool) (int, netip.AddrPort, error) {
	if !join && !joinGroup {
		ap, err := probeFree(host, port)
		if err != nil {
			return -1, netip.AddrPort{}, err
		}
		// With port 0 the probe asked the kernel for a free port; the
		// group takes that one.
		host, port = ap.Addr().String(), int(ap.Port())
	}
	return listenFD(host, port, true)
}

// probeFree binds, and closes at once, a socket without SO_REUSEPORT on
// host:port, and returns the address it got. Without the flag, bind fails
// with EADDRINUSE while any other socket listens there, with or without
// SO_REUSEPORT: on Linux and the BSDs alike, sharing a port needs every
// socket to ask for it. SO_REUSEADDR still lets the probe through when the
// port is only held by connections in TIME_WAIT, as a restart needs. (Two
// servers started within the same few microseconds could both pass the
// probe before either binds; the check is for a human's mistake, not a
// lock.)
func probeFree(host string, port int) (netip.AddrPort, error) {
	fd, ap, err := listenFD(host, port, false)
	if err != nil {
		return netip.AddrPort{}, err
	}
	unix.Close(fd)
	return ap, nil
}

func listenFD(host string, port int, reusePort bool) (int, netip.AddrPort, error) {
	ap, err := ResolveTCP(host, port)
	if err != nil {
		return -1, netip.AddrPort{}, err
	}
	domain := unix.AF_INET
	if ap.Addr().Is6() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, netip.AddrPort{}, os.NewSyscallError("socket", err)
	}
	// Close-on-exec: a child process must not inherit (and keep open) our
	// listener. Steps 1-5 also build on macOS, which lacks SOCK_CLOEXEC.
	unix.CloseOnExec(fd)
	fail := func(call string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		// The address goes in the error, so that "bind: address already
		// in use" also says which address.
		return -1, netip.AddrPort{}, &net.OpError{Op: "listen", Net: "tcp",
			Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError(call, err)}
	}
	// SO_REUSEADDR lets a restarted server bind its port again at once,
	// while connections of the previous run still sit in TIME_WAIT.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt SO_REUSEADDR", err)
	}
	// IPV6_V6ONLY: bind exactly the address asked for. Linux's default
	// (net.ipv6.bindv6only = 0) lets an IPv6 socket on :: take IPv4
	// connections too, so --host :: would also answer on 0.0.0.0.
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("setsockopt IPV6_V6ONLY", err)
		}
	}
	if reusePort {
		// reusePortOpt is SO_REUSEPORT, or SO_REUSEPORT_LB on FreeBSD:
		// see the reuseport_*.go files for what each system does with it.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, reusePortOpt, 1); err != nil {
			return fail("setsockopt "+reusePortName, err)
		}
	}
	if err := unix.Bind(fd, Sockaddr(ap)); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, Backlog); err != nil {
		return fail("listen", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, AddrPort(sa), nil
}

// Sockaddr converts an address to the form bind and connect take.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// AddrPort converts what accept and getsockname return back to an address;
// anything that is not IPv4 or IPv6 becomes the zero AddrPort.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// IgnoringEINTR calls fn until it returns something other than EINTR. A
// signal that arrives while a thread sits in a slow syscall (accept, read,
// select, epoll_wait) makes the call return EINTR without having done
// anything; the right answer is simply to ask again. The Go runtime sends
// its own signals to threads (for goroutine preemption), so this happens in
// practice, not only when the user presses Ctrl-C.
func IgnoringEINTR(fn func() error) error {
	for {
		err := fn()
		if err != unix.EINTR {
			return err
		}
	}
}

// Read is read(2) with EINTR retried.
func Read(fd int, p []byte) (int, error) {
	var n int
	err := IgnoringEINTR(func() (err error) {
		n, err = unix.Read(fd, p)
		return err
	})
	return n, err
}

// Write is write(2) with EINTR retried.
func Write(fd int, p []byte) (int, error) {
	var n int
	err := IgnoringEINTR(func() (err error) {
		n, err = unix.Write(fd, p)
		return err
	})
	return n, err
}

// Accept is accept(2) with EINTR retried.
func Accept(lfd int) (int, unix.Sockaddr, error) {
	var nfd int
	var sa unix.Sockaddr
	err := IgnoringEINTR(func() (err error) {
		nfd, sa, err = unix.Accept(lfd)
		return err
	})
	return nfd, sa, err
}

// AcceptAborted reports whether accept failed only for the connection it was
// about to return: the peer reset it while it waited in the queue
// (ECONNABORTED), or the network under it went away (EPROTO, ENETDOWN...).
// The listener is fine; accept again at once.
func AcceptAborted(err error) bool {
	return errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.EPROTO) ||
		errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENETDOWN) ||
		errors.Is(err, unix.EHOSTUNREACH)
}

// OutOfResources reports whether accept failed because the process or the
// system ran out of file descriptors or memory. The pending connection stays
// in the kernel's queue, so the listener stays readable: a server that simply
// accepts again spins at 100% CPU. It must wait (see Backoff) until some
// connection closes.
func OutOfResources(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// Backoff is the pause between accept attempts while out of resources: 5 ms
// at first, doubling up to one second, as net/http's server does. Waiting
// lets connections that are being served finish and give their fds back.
type Backoff struct {
	delay time.Duration
}

// Next returns how long to wait before the next attempt and reports whether
// this is the first failure of a burst, so the caller logs once per burst
// instead of once per attempt.
func (b *Backoff) Next() (time.Duration, bool) {
	first := b.delay == 0
	if first {
		b.delay = 5 * time.Millisecond
	} else if b.delay *= 2; b.delay > time.Second {
		b.delay = time.Second
	}
	return b.delay, first
}

// Reset ends a burst, after an accept that succeeded.
func (b *Backoff) Reset() { b.delay = 0 }

// Sleep waits d, or less if ctx ends first.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// RaiseNofile raises the soft open-file limit (RLIMIT_NOFILE) to the hard
// one and returns the limit now in force. Every connection is a file
// descriptor, so the usual soft limit of 1024 is the first wall a server or
// a load generator hits on the way to C10K. Only root can raise the hard
// limit itself.
func RaiseNofile() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, os.NewSyscallError("getrlimit", err)
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			// macOS refuses a soft limit above kern.maxfilesperproc even
			// when the hard limit is "infinity"; keep what we have.
			return uint64(rl.Cur), os.NewSyscallError("setrlimit", err)
		}
		rl = want
	}
	// Rlimit's fields are uint64 on Linux and macOS but int64 on FreeBSD
	// (where RLIM_INFINITY is -1, which converts to the largest uint64).
	return uint64(rl.Cur), nil
}
