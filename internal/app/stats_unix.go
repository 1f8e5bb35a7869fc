//go:build unix

package app

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// countConns counts the connected sockets among the fds listed in dir
// (/proc/self/fd on Linux, /dev/fd on macOS): fstat says which fds are
// sockets, and getsockopt(SO_ACCEPTCONN) which of those are listening, so
// what is left is the clients, whatever model serves them. Asking the
// process's own fds is cheap; reading /proc/net/tcp instead walks every
// socket of the machine. -1 if dir cannot be read.
func countConns(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		// An fd closed (or even reused) since ReadDir just answers
		// EBADF or for its new owner: a reading is a snapshot.
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			continue
		}
		if l, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && l == 0 {
			n++
		}
	}
	return n
}
