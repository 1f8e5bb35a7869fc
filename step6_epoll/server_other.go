//go:build !linux && !darwin && !freebsd

package main

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
)

// run refuses at once: this step is about the kernel's readiness interface
// itself, epoll on Linux (epoll.go) or kqueue on macOS and FreeBSD
// (kqueue.go), and this system has neither here. The message says where to
// go instead, so a learner reads one line rather than a compile error.
func run(context.Context, config, *slog.Logger, func(addr string)) error {
	return errors.New("this step needs epoll (Linux) or kqueue (macOS, FreeBSD), and this is " + runtime.GOOS +
		"; run it in a Linux VM or container (on Windows, WSL), or use step5_select")
}
