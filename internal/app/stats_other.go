//go:build unix && !linux

package app

import "runtime"

// readOS has no /proc on macOS and FreeBSD, so threads and RSS print n/a
// (ps -M and procstat -t show threads there). macOS lists every open fd
// in /dev/fd, so connections are counted from it; FreeBSD's /dev/fd shows
// only 0-2 unless fdescfs is mounted, so there they are n/a rather than
// a wrong count.
func readOS() sample {
	s := sample{conns: -1, threads: -1, rss: -1}
	if runtime.GOOS == "darwin" {
		s.conns = countConns("/dev/fd")
	}
	return s
}
