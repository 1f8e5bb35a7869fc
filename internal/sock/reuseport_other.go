//go:build !linux && !freebsd

package sock

import "golang.org/x/sys/unix"

// On macOS (and the other BSDs), SO_REUSEPORT only lets sockets share an
// address: the kernel hands every new connection to one of them, and the
// other listeners stay idle (gnet's gnet.go says the same, and turns the
// option off there for several loops). So a server that wants several
// loops to share the load should not bind one listener per loop here but
// give every loop the same listener: each loop's kqueue then reports it
// readable, the loops race to accept, and the losers find EAGAIN. That is
// what evloop does when ReusePortSpreads is false. (Built and vetted for
// macOS, never run there.)
const (
	reusePortOpt     = unix.SO_REUSEPORT
	reusePortName    = "SO_REUSEPORT"
	ReusePortSpreads = false
)
