//go:build !linux

package evloop

import "golang.org/x/sys/unix"

// On systems without epoll the engine refuses to start: newPoller fails
// with ErrUnsupported before anything is bound, and Run returns that error.
// (A kqueue poller with the same method set is exercise 5 of the chapter.)
// The methods below are never reached; they exist so that the package, and
// the servers on it, build everywhere and say why they cannot run.
type poller struct{}

func newPoller() (*poller, error)                        { return nil, ErrUnsupported }
func (*poller) add(int, bool, bool) error                { return ErrUnsupported }
func (*poller) mod(int, bool, bool) error                { return ErrUnsupported }
func (*poller) del(int) error                            { return ErrUnsupported }
func (*poller) wait(evs []event, _ int) ([]event, error) { return evs[:0], ErrUnsupported }
func (*poller) wake() error                              { return ErrUnsupported }
func (*poller) drainWake()                               {}
func (*poller) close()                                   {}

func accept(int) (int, unix.Sockaddr, error) { return -1, nil, ErrUnsupported }
