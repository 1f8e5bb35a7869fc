//go:build !linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
)

// run refuses at once: epoll is a Linux system call, and this step is
// about epoll itself. The message says where to go instead, so a learner on
// a Mac reads one line rather than a compile error.
func run(context.Context, config, *slog.Logger, func(addr string)) error {
	return errors.New("this step needs Linux epoll, and this is " + runtime.GOOS +
		"; on macOS run it in a Linux VM or container (docker run -it --rm -v \"$PWD\":/src -w /src golang go run ./step6_epoll), " +
		"or use step5_select, which runs here")
}
