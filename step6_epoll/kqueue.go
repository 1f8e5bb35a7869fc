//go:build darwin || freebsd

package main

// The poller of poll.go on kqueue (macOS, FreeBSD): the only place where the
// server meets kqueue and kevent. The twin of epoll.go, in the same order,
// so that diff shows what changes from one kernel to the other. Built and
// vetted for darwin and freebsd, never run: the tests ran on Linux only.
//
// Closing a connection's fd also removes its kevents, so drop needs no
// EV_DELETE: kqueue(2) says so, and Go's runtime relies on it
// (runtime/netpoll_kqueue.go, netpollclose).

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// waitCall names the call poller.wait makes, for serve's error message.
const waitCall = "kevent"

// poller is one kqueue and the arrays one kevent wait fills.
type poller struct {
	kq     int
	edge   bool // register every filter with EV_CLEAR (edge.go)
	kevs   []unix.Kevent_t
	events []event
	at     map[int]int // fd -> its place in events, while wait merges
}

// newPoller creates a kqueue, an interest set of its own in the kernel.
func newPoller(edge bool) (*poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	// kqueue() takes no flags on macOS: close-on-exec comes after, as
	// Go's runtime does it for its own kqueue.
	unix.CloseOnExec(kq)
	return &poller{kq: kq, edge: edge, at: map[int]int{},
		kevs: make([]unix.Kevent_t, maxEvents), events: make([]event, 0, maxEvents)}, nil
}

func (p *poller) close() { unix.Close(p.kq) }

// set moves fd in the interest set from old to want. kqueue keeps one entry
// per (fd, filter), not one mask per fd: each of EVFILT_READ and
// EVFILT_WRITE whose wish changed is one change, EV_ADD or EV_DELETE, and
// both go to the kernel in one kevent call (a changelist, no eventlist).
// EVFILT_WRITE is thus registered only while we owe bytes, as EPOLLOUT was.
func (p *poller) set(fd int, old, want interest) error {
	var changes [2]unix.Kevent_t
	n := 0
	for _, f := range [2]struct {
		filter   int
		was, now bool
	}{{unix.EVFILT_READ, old.read, want.read}, {unix.EVFILT_WRITE, old.write, want.write}} {
		if f.was == f.now {
			continue
		}
		// No EVFILT_READ twin of EPOLLRDHUP is needed: a client's
		// shutdown sets EV_EOF on the read filter by itself.
		flags := unix.EV_DELETE
		if f.now {
			flags = unix.EV_ADD | p.trigger()
		}
		unix.SetKevent(&changes[n], fd, f.filter, flags)
		n++
	}
	if n == 0 {
		return nil
	}
	// With no eventlist, a failing change ends the call with its errno.
	// EINTR is retried, as Go's runtime and gnet do: applying these
	// changes twice is harmless.
	err := sock.IgnoringEINTR(func() error {
		_, err := unix.Kevent(p.kq, changes[:n], nil, nil)
		return err
	})
	if err != nil {
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

// wait sleeps in kevent for at most d (forever if d < 0) and returns the
// ready fds. kqueue reports each filter as an event of its own; wait
// merges the two of one fd into one event, so that the loop sees what
// epoll gives it: one event per ready fd.
func (p *poller) wait(d time.Duration) ([]event, error) {
	var ts *unix.Timespec // nil: no limit
	if d >= 0 {
		// macOS fails a kevent whose timeout is too long with EINVAL;
		// Go's runtime caps it at 1e6 seconds.
		t := unix.NsecToTimespec(int64(min(d, 1e6*time.Second)))
		ts = &t
	}
	n, err := unix.Kevent(p.kq, nil, p.kevs, ts)
	if err != nil {
		return nil, err // EINTR included: the caller decides
	}
	p.events = p.events[:0]
	clear(p.at)
	for _, kev := range p.kevs[:n] {
		fd := int(kev.Ident)
		i, seen := p.at[fd]
		if !seen {
			i = len(p.events)
			p.at[fd] = i
			p.events = append(p.events, event{fd: fd})
		}
		ev := &p.events[i]
		// EV_EOF is kqueue's only end-of-connection flag, and the filter
		// says which side ended (kqueue(2)). On EVFILT_READ the client
		// shut its write side: readable, never "close now", as with
		// EPOLLRDHUP (reading drains what it sent, then returns 0), unless
		// fflags holds a socket error (a reset), EPOLLERR's twin. On
		// EVFILT_WRITE we can send no more: the connection is dead, as
		// with EPOLLHUP.
		eof := kev.Flags&unix.EV_EOF != 0
		switch kev.Filter {
		case unix.EVFILT_READ:
			ev.read = true
			if eof && kev.Fflags != 0 {
				ev.err = os.NewSyscallError("kevent (EV_EOF)", unix.Errno(kev.Fflags))
			}
		case unix.EVFILT_WRITE:
			ev.write = true
			if eof && ev.err == nil {
				ev.err = errors.New("hung up (EV_EOF on EVFILT_WRITE)")
				if kev.Fflags != 0 {
					ev.err = os.NewSyscallError("kevent (EV_EOF)", unix.Errno(kev.Fflags))
				}
			}
		}
	}
	return p.events, nil
}

// trigger is the flag every registration carries: EV_CLEAR, kqueue's twin
// of EPOLLET, resets the event once reported, so it comes again only when
// something changes (new bytes, a new client).
func (p *poller) trigger() int {
	if p.edge {
		return unix.EV_CLEAR
	}
	return 0
}

// wakeFDs makes wakeOnDone's fd. kqueue has a wake-up with no fd at all
// (EVFILT_USER, which step 7's evloop uses), and no eventfd: this server
// watches an fd, so the twin is step 5's self-pipe, the read end watched,
// the write end written once ctx ends.
func wakeFDs() (rfd, wfd int, err error) {
	var fds [2]int
	if err := unix.Pipe(fds[:]); err != nil {
		return -1, -1, os.NewSyscallError("pipe", err)
	}
	// Close-on-exec like every other fd here (macOS has no pipe2), and
	// a non-blocking write end, so that the write never waits.
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	if err := unix.SetNonblock(fds[1], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return -1, -1, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	return fds[0], fds[1], nil
}
