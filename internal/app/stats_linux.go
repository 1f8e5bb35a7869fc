package app

import (
	"os"

	"concurrent-servers-go/internal/procstat"
)

// readOS reads threads and RSS from /proc/self/status (the same reader the
// client's tools use on a server from outside) and counts the connections
// among the fds in /proc/self/fd.
func readOS() sample {
	s := sample{conns: countConns("/proc/self/fd"), threads: -1, rss: -1}
	if st, err := procstat.ReadStatus(os.Getpid()); err == nil {
		s.threads, s.rss = st.Threads, st.RSS
	}
	return s
}
