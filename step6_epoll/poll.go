//go:build linux

package main

// The poller contract: all that server.go needs from, and knows of, the
// kernel's readiness interface. epoll.go provides it on Linux. A poller on
// another kernel's calls provides the same, and the server on top is shared
// rather than copied, as Go's own runtime poller has one contract and one
// file per kernel.
//
//	newPoller(edge bool) (*poller, error)
//		a new interest set in the kernel; edge asks for edge-triggered
//		reports (edge.go)
//	(*poller).set(fd int, old, want interest) error
//		change fd's entry from old to want; the zero interest means
//		absent, so set adds, changes or removes it
//	(*poller).wait(d time.Duration) ([]event, error)
//		sleep until some fd in the set is ready or d has passed
//		(forever if d < 0), and report the ready ones; the slice is
//		reused by the next wait, and EINTR is returned as it is
//	(*poller).close()
//		free the interest set
//
// server.go's wakeOnDone, the fd that stops the loop, is the other part that
// differs from one kernel to the next. Like the server, this file is built
// where a poller exists; elsewhere server_other.go refuses to run.

// maxEvents is how many ready fds one wait may hand back. More stay
// queued in the kernel for the next call, so this bounds the work of one
// round, not the number of clients: there is no FD_SETSIZE here.
const maxEvents = 256

// interest is what the server waits for on one fd. The zero value means
// "not in the interest set at all".
type interest struct{ read, write bool }

// event is one ready fd, in the terms the loop needs.
type event struct {
	fd          int
	read, write bool
	err         error // the connection is dead (EPOLLERR, EPOLLHUP)
}
