package sock

import "golang.org/x/sys/unix"

// On Linux, SO_REUSEPORT both lets several sockets bind one address and
// spreads new connections across the listening ones, by a hash of each
// connection's addresses. So --loops N gives N listeners that share the
// load.
const (
	reusePortOpt  = unix.SO_REUSEPORT
	reusePortName = "SO_REUSEPORT"
	// ReusePortSpreads reports whether listeners bound with
	// ListenFDReusePort share the incoming connections between them.
	ReusePortSpreads = true
)
