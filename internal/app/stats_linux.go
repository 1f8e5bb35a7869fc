package app

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// readOS reads threads and RSS from /proc/self/status and counts the
// connections among the fds in /proc/self/fd.
func readOS() sample {
	s := sample{conns: countConns("/proc/self/fd"), threads: -1, rss: -1}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return s
	}
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(v))
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "Threads":
			s.threads = int(n)
		case "VmRSS":
			s.rss = n * 1024 // the kernel prints kB
		}
	}
	return s
}
