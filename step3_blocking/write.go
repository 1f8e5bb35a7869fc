package main

import (
	"os"

	"concurrent-servers-go/internal/sock"
)

// writeAll is write(2) until p is all sent: a signal can cut a blocking
// write short after part of p has gone.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		tracef("write(fd %d, %d bytes)...", fd, len(p))
		n, err := sock.Write(fd, p)
		if err != nil {
			return os.NewSyscallError("write", err) // EPIPE, ECONNRESET: gone
		}
		p = p[n:]
	}
	return nil
}
