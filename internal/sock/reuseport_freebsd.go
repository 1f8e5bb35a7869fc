package sock

import "golang.org/x/sys/unix"

// On FreeBSD, plain SO_REUSEPORT only lets sockets share an address: one
// of them gets every connection. SO_REUSEPORT_LB (FreeBSD 12 and later)
// is the option that also spreads connections across the listening
// sockets of the group, like Linux's SO_REUSEPORT; gnet's
// pkg/socket/sockopts_freebsd.go sets it for the same reason. So --loops N
// gives N listeners that share the load. (Built and vetted for FreeBSD,
// never run there.)
const (
	reusePortOpt     = unix.SO_REUSEPORT_LB
	reusePortName    = "SO_REUSEPORT_LB"
	ReusePortSpreads = true
)
