//go:build linux

package main

// The poller of poll.go on Linux's epoll: the only place where the server
// meets epoll_create1, epoll_ctl and epoll_wait.
//
// Closing a connection's fd also takes it out of the interest set, so drop
// needs no EPOLL_CTL_DEL: nothing else holds the open socket (we never dup
// it, and close-on-exec keeps child processes from inheriting it). epoll
// watches the open file, not the fd number: were a copy alive, events would
// keep coming for an fd that is no longer ours.

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waitCall names the call poller.wait makes, for serve's error message.
const waitCall = "epoll_wait"

// poller is one epoll instance and the arrays one epoll_wait fills.
type poller struct {
	epfd   int
	edge   bool // register every fd with EPOLLET (edge.go)
	kevs   []unix.EpollEvent
	events []event
}

// newPoller creates an epoll instance, an interest set of its own in the
// kernel.
func newPoller(edge bool) (*poller, error) {
	// EPOLL_CLOEXEC: a child process must not inherit the epoll fd.
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	return &poller{epfd: epfd, edge: edge,
		kevs: make([]unix.EpollEvent, maxEvents), events: make([]event, 0, maxEvents)}, nil
}

func (p *poller) close() { unix.Close(p.epfd) }

// set moves fd in the interest set from old to want, with one epoll_ctl:
// ADD when it was not there, DEL when nothing is wanted, else MOD.
func (p *poller) set(fd int, old, want interest) error {
	op := unix.EPOLL_CTL_MOD
	switch {
	case old == interest{}:
		op = unix.EPOLL_CTL_ADD
	case want == interest{}:
		op = unix.EPOLL_CTL_DEL
	}
	var events uint32
	if want.read {
		// EPOLLRDHUP: also wake us when the client shuts its side.
		// After EOF wantRead asks for neither: both stay true for
		// good, and level-triggered epoll would report them on every
		// single wait.
		events |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if want.write {
		events |= unix.EPOLLOUT
	}
	ev := unix.EpollEvent{Events: events | p.trigger(), Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// wait sleeps in epoll_wait for at most d (forever if d < 0) and returns
// the ready fds.
func (p *poller) wait(d time.Duration) ([]event, error) {
	msec := -1
	if d >= 0 {
		msec = int((d + time.Millisecond - 1) / time.Millisecond) // round up: never wake early
	}
	n, err := unix.EpollWait(p.epfd, p.kevs, msec)
	if err != nil {
		return nil, err // EINTR included: the caller decides
	}
	p.events = p.events[:0]
	for _, kev := range p.kevs[:n] {
		ev := event{fd: int(kev.Fd),
			// EPOLLRDHUP (the client shut its write side) counts as
			// readable, never as "close now": bytes it sent before its
			// FIN may still wait in our receive buffer, and it is owed
			// the answers. Reading drains them, then returns 0 (EOF).
			read:  kev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0,
			write: kev.Events&unix.EPOLLOUT != 0}
		// EPOLLERR and EPOLLHUP come whether we asked for them or not.
		switch {
		case kev.Events&unix.EPOLLERR != 0:
			ev.err = sockError(ev.fd)
		case kev.Events&unix.EPOLLHUP != 0:
			// Both directions are shut. We never shut our own side, so
			// the connection is dead (reset): nobody is left to read.
			ev.err = errors.New("hung up (EPOLLHUP)")
		}
		p.events = append(p.events, ev)
	}
	return p.events, nil
}

// sockError reads the error behind EPOLLERR (a reset, say) out of SO_ERROR.
func sockError(fd int) error {
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
		return os.NewSyscallError("epoll (EPOLLERR)", unix.Errno(e))
	}
	return errors.New("socket error (EPOLLERR)")
}

// trigger is the flag every registration carries: EPOLLET asks for edges.
func (p *poller) trigger() uint32 {
	if p.edge {
		return unix.EPOLLET
	}
	return 0
}

// wakeFDs makes wakeOnDone's fd: an eventfd is both the end the loop
// watches and the end ctx's end writes to.
func wakeFDs() (rfd, wfd int, err error) {
	// Close-on-exec like every other fd here, so that a child process
	// never holds a copy; non-blocking, so that the write never waits.
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, -1, os.NewSyscallError("eventfd", err)
	}
	return fd, fd, nil
}
