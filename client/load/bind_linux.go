package load

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort runs before a bound dial's bind(). With a source address the
// kernel would pick the source port at bind() time, unique per source
// address, capping us at ~28k connections per source whatever the server
// port; IP_BIND_ADDRESS_NO_PORT defers the choice to connect(), where only
// the full (source, destination) pair must be unique, so spreading over
// server ports multiplies the limit too.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
