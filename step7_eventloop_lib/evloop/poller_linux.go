package evloop

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// poller is the one place that knows about epoll; poller.go has the
// contract it keeps.
type poller struct {
	epfd   int
	efd    int // eventfd: other goroutines write to it to wake wait
	events []unix.EpollEvent
}

func newPoller() (*poller, error) {
	// EPOLL_CLOEXEC: a child process must not inherit our epoll instance.
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// An eventfd is a kernel counter that reads as readable while it is
	// non-zero: the cheapest fd another goroutine can poke to end our
	// epoll_wait. Non-blocking so that draining it can never block.
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &poller{epfd: epfd, efd: efd, events: make([]unix.EpollEvent, maxEvents)}
	// The Fd field is epoll's user data, returned as is with every event:
	// it is the fd only because add puts the fd there. The eventfd's events
	// carry wakeFD instead, so wait needs no test to report a wake-up.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeFD}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		p.close()
		return nil, os.NewSyscallError("epoll_ctl ADD", err)
	}
	return p, nil
}

// mask turns the loop's wishes into epoll flags. Level-triggered (no
// EPOLLET): an fd we did not finish with is reported again on the next
// wait, so the loop may read once per fd per round and stay fair, and a
// missed edge can never hang a connection. EPOLLERR and EPOLLHUP are always
// reported, asked for or not.
func mask(read, write bool) uint32 {
	var m uint32
	if read {
		m |= unix.EPOLLIN
	}
	if write {
		m |= unix.EPOLLOUT
	}
	return m
}

func (p *poller) add(fd int, read, write bool) error {
	ev := unix.EpollEvent{Events: mask(read, write), Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl ADD", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev))
}

func (p *poller) mod(fd int, read, write bool) error {
	ev := unix.EpollEvent{Events: mask(read, write), Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl MOD", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev))
}

func (p *poller) del(fd int) error {
	return os.NewSyscallError("epoll_ctl DEL", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil))
}

// wait blocks for up to msec milliseconds (-1: no limit) and appends the
// ready fds to evs[:0]. A signal ending the wait early (EINTR) is not an
// error: it returns no events and the loop goes round again. epoll hands
// over no socket error with EPOLLERR, so err stays 0 and the loop asks
// SO_ERROR; a peer's half-close is EPOLLRDHUP, which we never ask for, not
// EPOLLHUP (both directions gone), so it shows only as EPOLLIN.
func (p *poller) wait(evs []event, msec int) ([]event, error) {
	var n int
	var err error
	if msec == 0 {
		// A poll that cannot sleep: a raw syscall (see read below).
		n, err = epollPoll(p.epfd, p.events)
	} else {
		// One that may sleep must tell the runtime, which then lends our
		// P to other goroutines meanwhile: unix.EpollWait does.
		n, err = unix.EpollWait(p.epfd, p.events, msec)
	}
	if err == unix.EINTR {
		return evs[:0], nil
	}
	if err != nil {
		return evs[:0], os.NewSyscallError("epoll_wait", err)
	}
	evs = evs[:0]
	for _, ev := range p.events[:n] {
		evs = append(evs, event{
			fd:    int(ev.Fd),
			read:  ev.Events&unix.EPOLLIN != 0,
			write: ev.Events&unix.EPOLLOUT != 0,
			hup:   ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0,
		})
	}
	return evs, nil
}

// wake adds one to the eventfd counter, which makes it readable. The loop's
// atomic flag makes sure only the first of many wake-ups pays this syscall.
func (p *poller) wake() error {
	one := [8]byte{1}
	_, err := sock.Write(p.efd, one[:])
	if err == unix.EAGAIN {
		return nil // the counter is full: the loop is awake anyway
	}
	return os.NewSyscallError("write eventfd", err)
}

// drainWake reads the counter back to zero, so the eventfd stops being
// readable until the next wake.
func (p *poller) drainWake() {
	var buf [8]byte
	sock.Read(p.efd, buf[:])
}

func (p *poller) close() {
	unix.Close(p.efd)
	unix.Close(p.epfd)
}

// accept takes one connection off the listener, already non-blocking and
// close-on-exec: accept4 does in one syscall what accept + two fcntl calls
// do on systems without it.
func accept(lfd int) (int, unix.Sockaddr, error) {
	var nfd int
	var sa unix.Sockaddr
	err := sock.IgnoringEINTR(func() (err error) {
		nfd, sa, err = unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return err
	})
	return nfd, sa, err
}

// The loop's hot syscalls cannot block: every socket is non-blocking, so
// read and write return EAGAIN rather than wait, and a poll with a zero
// timeout returns at once. For those the runtime's bookkeeping around a
// syscall (entersyscall and exitsyscall: mark the P as lent out, so that
// another thread may take it if the call blocks, and take it back after)
// is pure cost, paid twice per message. RawSyscall skips it. That is safe
// only for a call that returns in microseconds: while it runs, the P and
// every goroutine queued on it wait, and a raw call that blocked would
// stall them all (with GOMAXPROCS=1, the whole program) until a signal
// ended it. So the sleeping epoll_wait above keeps unix.EpollWait.

// read is read(2) on a non-blocking fd, as a raw syscall, EINTR retried.
func read(fd int, p []byte) (int, error) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
		if e == 0 {
			return int(n), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

// write is write(2) on a non-blocking fd, as a raw syscall, EINTR retried.
func write(fd int, p []byte) (int, error) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
		if e == 0 {
			return int(n), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

// epollPoll is epoll_wait with a zero timeout, as a raw syscall. It uses
// epoll_pwait, which every Linux architecture has (arm64 has no
// epoll_wait); a nil signal mask makes it epoll_wait.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// bufPtr is the address of p's first byte, or nil for an empty p.
func bufPtr(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Pointer(&p[0])
}
