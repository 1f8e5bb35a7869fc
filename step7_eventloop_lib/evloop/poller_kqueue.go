//go:build darwin || freebsd

package evloop

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// poller is the one place that knows about kqueue, the twin of
// poller_linux.go; poller.go has the contract both keep. Where epoll keeps
// one mask per fd, kqueue keeps (fd, filter) pairs: a connection that waits
// for input and for room to write is two registrations, EVFILT_READ and
// EVFILT_WRITE, each added and deleted on its own, and each reported as an
// event of its own. The behaviours relied on here were checked against the
// kqueue(2) manual pages of FreeBSD and macOS, Go's runtime/netpoll_kqueue.go
// and gnet's pkg/netpoll/poller_kqueue_default.go. This file was built and
// vetted for darwin and freebsd, never run: the tests that exercise the
// loop above it ran on Linux only.
type poller struct {
	kq     int
	events []unix.Kevent_t
}

// wakeIdent names the EVFILT_USER event that wake triggers. A kevent is
// known by its (ident, filter) pair, so this ident never clashes with fd 0's
// EVFILT_READ; gnet uses 0 too, Go's runtime a magic number.
const wakeIdent = 0

func newPoller() (*poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	// kqueue(2) has no CLOEXEC flag on macOS (FreeBSD 14's kqueuex has):
	// set it after, as Go's runtime does for its own kqueue.
	unix.CloseOnExec(kq)
	p := &poller{kq: kq, events: make([]unix.Kevent_t, maxEvents)}
	// EVFILT_USER is an event with no fd behind it that any thread can
	// trigger: the kqueue way to end a kevent wait, where Linux needs an
	// eventfd. Both FreeBSD (since 8.1) and macOS (since 10.6) have it;
	// Go's runtime uses it on both. EV_CLEAR resets it once reported, so
	// there is nothing to drain.
	var wake unix.Kevent_t
	unix.SetKevent(&wake, wakeIdent, unix.EVFILT_USER, unix.EV_ADD|unix.EV_CLEAR)
	if err := p.apply("kevent EVFILT_USER", wake); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// apply hands changes to the kernel in one kevent call that must not
// sleep (a zero timeout). EV_RECEIPT makes the kernel answer every change
// with an EV_ERROR entry whose data is 0 or the errno, without draining
// pending events (kqueue(2)): without it, the first failing change would
// end the call and skip the ones after it. ENOENT, "the event could not be
// found to be modified or deleted", means a filter we delete was not
// registered: what we wanted. EINTR is retried, as Go's runtime and gnet
// do: every change here may be applied twice (EV_ADD of a registered
// filter modifies it, a second EV_DELETE is an ENOENT, a second trigger is
// one more wake-up).
func (p *poller) apply(call string, changes ...unix.Kevent_t) error {
	var receipts [2]unix.Kevent_t
	for i := range changes {
		changes[i].Flags |= unix.EV_RECEIPT
	}
	var zero unix.Timespec
	var n int
	err := sock.IgnoringEINTR(func() (err error) {
		n, err = unix.Kevent(p.kq, changes, receipts[:len(changes)], &zero)
		return err
	})
	if err != nil {
		return os.NewSyscallError(call, err)
	}
	for _, r := range receipts[:n] {
		if e := syscall.Errno(r.Data); r.Flags&unix.EV_ERROR != 0 && e != 0 && e != unix.ENOENT {
			return os.NewSyscallError(call, e)
		}
	}
	return nil
}

// change is one filter's registration as the loop wants it: EV_ADD (no
// EV_CLEAR, so level-triggered, as the contract says) or EV_DELETE.
func change(fd, filter int, on bool) unix.Kevent_t {
	var k unix.Kevent_t
	flags := unix.EV_DELETE
	if on {
		flags = unix.EV_ADD
	}
	// SetKevent: the field types of struct kevent differ between systems
	// and word sizes.
	unix.SetKevent(&k, fd, filter, flags)
	return k
}

func (p *poller) add(fd int, read, write bool) error {
	return p.apply("kevent EV_ADD", change(fd, unix.EVFILT_READ, read), change(fd, unix.EVFILT_WRITE, write))
}

// mod sends both filters' wishes in one call. The poller keeps no record
// of what is registered; deleting a filter that is not there costs an
// ENOENT receipt, ignored. EVFILT_WRITE is registered only while output is
// pending, as gnet does: a socket is writable nearly always.
func (p *poller) mod(fd int, read, write bool) error {
	return p.apply("kevent", change(fd, unix.EVFILT_READ, read), change(fd, unix.EVFILT_WRITE, write))
}

func (p *poller) del(fd int) error {
	return p.apply("kevent EV_DELETE", change(fd, unix.EVFILT_READ, false), change(fd, unix.EVFILT_WRITE, false))
}

// wait is kevent with no changes and room for maxEvents. Changes could ride
// along in this same call (kevent takes a changelist and an eventlist), but
// they would then fail here, far from the add or mod that made them, and a
// change queued for an fd that closes before the wait would apply to the
// next connection given that fd number: the loop applies its changes at
// once, as the contract says and as Go's runtime and gnet do.
//
// Each filter is its own event, so one fd may appear twice; the loop
// accepts only after a whole batch, so neither event can meet a newer
// connection with the same fd number.
//
// EV_EOF on EVFILT_READ means the peer will send no more (FreeBSD and
// macOS kqueue(2): "the filter also sets EV_EOF in flags, and returns the
// socket error (if any) in fflags"). With no error that is a half-close,
// which epoll reports as plain EPOLLIN (we never ask for EPOLLRDHUP): a
// read, which returns end of file. With an error (a reset) it is hup, like
// EPOLLERR. EV_EOF on EVFILT_WRITE means we can send no more: the
// connection is gone, hup, like EPOLLHUP. (haproxy's ev_kqueue.c maps them
// the same way.) Unlike epoll, which reports EPOLLHUP and EPOLLERR for any
// fd it watches, kqueue reports a broken connection only through a filter
// that is registered: one paused with neither filter learns of it when it
// reads or writes again.
func (p *poller) wait(evs []event, msec int) ([]event, error) {
	var ts *unix.Timespec // nil: no limit
	if msec >= 0 {
		// macOS fails a kevent whose timeout is too long with EINVAL;
		// Go's runtime caps it at 1e6 seconds, and so do we.
		t := unix.NsecToTimespec(int64(min(msec, 1e9)) * 1e6)
		ts = &t
	}
	n, err := unix.Kevent(p.kq, nil, p.events, ts)
	if err == unix.EINTR {
		return evs[:0], nil
	}
	if err != nil {
		return evs[:0], os.NewSyscallError("kevent", err)
	}
	evs = evs[:0]
	for _, kev := range p.events[:n] {
		ev := event{fd: int(kev.Ident)}
		eof := kev.Flags&unix.EV_EOF != 0
		switch kev.Filter {
		case unix.EVFILT_USER:
			ev.fd = wakeFD
		case unix.EVFILT_READ:
			ev.read = true
			ev.hup = eof && kev.Fflags != 0
		case unix.EVFILT_WRITE:
			ev.write = true
			ev.hup = eof
		default:
			continue // we register no other filter
		}
		if eof {
			ev.err = syscall.Errno(kev.Fflags)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// wake triggers the EVFILT_USER event (NOTE_TRIGGER), which ends a wait in
// the loop's goroutine or makes its next wait return at once. The loop's
// atomic flag makes sure only the first of many wake-ups pays this syscall.
func (p *poller) wake() error {
	var trigger unix.Kevent_t
	unix.SetKevent(&trigger, wakeIdent, unix.EVFILT_USER, 0)
	trigger.Fflags = unix.NOTE_TRIGGER
	return p.apply("kevent NOTE_TRIGGER", trigger)
}

// drainWake has nothing to do: EV_CLEAR reset the user event when wait
// reported it.
func (p *poller) drainWake() {}

// close releases the kqueue. The connections' registrations need no
// EV_DELETE: closing an fd removes every kevent that refers to it
// (kqueue(2); Go's netpollclose relies on the same).
func (p *poller) close() {
	unix.Close(p.kq)
}

// accept takes one connection off the listener, then makes it non-blocking
// and close-on-exec. macOS has no accept4, and one path for both systems
// keeps this file small (FreeBSD has accept4; Go's net uses it there). Go's
// net does the same on macOS under syscall.ForkLock, so that a fork between
// accept and FD_CLOEXEC cannot leak the fd into a child: so do we.
func accept(lfd int) (int, unix.Sockaddr, error) {
	syscall.ForkLock.RLock()
	nfd, sa, err := sock.Accept(lfd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, nil, err
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, nil, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	return nfd, sa, nil
}
