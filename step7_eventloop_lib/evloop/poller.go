package evloop

import "syscall"

// The poller contract. A poller is the one part of evloop that knows which
// readiness interface the kernel offers (epoll on Linux); everything above
// it, in eventloop.go, conn.go and engine.go, is the same on every system.
// As in Go's own runtime/netpoll.go, each implementation is one file per OS
// with the same method set, and this file says what every one must do.
//
// newPoller() (*poller, error)
//
//	Makes a poller with its wake-up mechanism armed. Every fd it creates is
//	close-on-exec. It fails with ErrUnsupported where no implementation
//	exists, before anything is bound.
//
// add(fd, read, write) and mod(fd, read, write)
//
//	add starts watching fd; mod replaces what fd is watched for. read and
//	write say exactly which readiness the loop wants now, both may be false.
//	Readiness is level-triggered: an fd the loop did not finish with (data
//	left unread, output still pending) is reported again on the next wait.
//	That is what lets the loop read once per fd per round and stay fair.
//
// del(fd)
//
//	Stops watching fd while it stays open (the listener, when accept backs
//	off). Closing an fd removes it by itself: no del before close(2).
//
// wait(evs, msec) ([]event, error)
//
//	Sleeps until an fd is ready, wake is called, or msec milliseconds pass
//	(0: do not sleep, -1: no limit), and returns evs[:0] with one event per
//	ready fd appended. A signal ending the sleep is not an error: no events.
//	Broken connections (error or hang-up) are reported whatever the loop
//	asked for, as hup.
//
// wake() and drainWake()
//
//	wake may be called from any goroutine and makes the next (or current)
//	wait return an event whose fd is wakeFD. drainWake, called on the loop
//	after that event, rearms it so that the next wake is seen again. Several
//	wakes before a wait may be reported once.
//
// close()
//
//	Releases the poller's fds. The loop calls it once, after its last wait.
//
// accept(lfd) (fd, sockaddr, error)
//
//	Not a poller method but OS-shaped all the same: takes one connection
//	off a non-blocking listener, already non-blocking and close-on-exec,
//	retrying EINTR, with accept(2)'s errors otherwise.
type pollerContract interface {
	add(fd int, read, write bool) error
	mod(fd int, read, write bool) error
	del(fd int) error
	wait(evs []event, msec int) ([]event, error)
	wake() error
	drainWake()
	close()
}

// Every OS file's poller must have the contract's method set: this line
// fails to compile otherwise, on whichever OS is missing one.
var _ pollerContract = (*poller)(nil)

// event is one ready fd, as the loop sees it.
type event struct {
	fd          int
	read, write bool
	// hup: the connection is broken (an error, or the peer is gone in both
	// directions). A peer that only shut down its sending side is not hup:
	// that shows as read, and the read returns end of file.
	hup bool
	// err is the socket's error when the kernel hands it over with the
	// event, 0 when it does not: the loop then asks SO_ERROR.
	err syscall.Errno
}

// wakeFD is the fd of the event that wait reports for a wake-up. It is no
// real fd, so the loop tells a wake-up apart without knowing how the poller
// makes one.
const wakeFD = -1
