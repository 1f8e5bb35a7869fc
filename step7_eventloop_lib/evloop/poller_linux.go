package evloop

import (
	"os"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// poller is the one place that knows about epoll. The contract every
// poller must keep (a kqueue twin would have the same method set): add,
// mod and del say which of read and write readiness the loop wants for an
// fd; wait fills events and returns how many; wake makes a wait in another
// goroutine return, and drainWake resets it.
type poller struct {
	epfd   int
	efd    int // eventfd: other goroutines write to it to wake wait
	events []unix.EpollEvent
}

// event is one ready fd, as the loop sees it.
type event struct {
	fd          int
	read, write bool
	hup         bool // error or hang-up: the connection is broken
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
	if err := p.add(efd, true, false); err != nil {
		p.close()
		return nil, err
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
// error: it returns no events and the loop goes round again.
func (p *poller) wait(evs []event, msec int) ([]event, error) {
	n, err := unix.EpollWait(p.epfd, p.events, msec)
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
