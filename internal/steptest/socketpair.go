package steptest

import (
	"testing"

	"golang.org/x/sys/unix"
)

// SocketPair returns the two ends of a connected, non-blocking Unix stream
// socket pair, closed when the test ends: the smallest thing a poller can
// be tested on without a server. The flag is set after the call rather
// than with SOCK_NONBLOCK, which macOS lacks.
func SocketPair(t testing.TB) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
	}
	return fds[0], fds[1]
}
