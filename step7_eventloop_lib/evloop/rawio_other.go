//go:build !linux

package evloop

import "concurrent-servers-go/internal/sock"

// Elsewhere the loop's reads and writes are the ordinary, runtime-aware
// ones; poller_linux.go says why Linux uses raw syscalls for them.

func read(fd int, p []byte) (int, error)  { return sock.Read(fd, p) }
func write(fd int, p []byte) (int, error) { return sock.Write(fd, p) }
