//go:build !linux

package load

import "syscall"

// bindNoPort does nothing outside Linux, which alone has
// IP_BIND_ADDRESS_NO_PORT: each source address then gives ~28k connections
// in all, rather than per server port.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
