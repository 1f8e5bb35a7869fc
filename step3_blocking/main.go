// Step 3: blocking I/O on raw file descriptors. The same sequential server as
// step 1, written with the system calls package net hides (socket, bind,
// listen, accept, read, write), so you can watch the one thing that makes it
// sequential: a read() that blocks until this client sends, while every
// other client waits in the kernel's accept queue. --trace prints each
// blocking call as it happens; --threads gives every connection a goroutine
// locked to its own OS thread, the C way of serving many clients at once.
//
//	go run ./step3_blocking --trace      # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080  # about 5 x 2.2 s; with --threads about 2.2 s
package main

import (
	"context"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/internal/sock"
)

func main() {
	app.Main(app.Server{
		Name:  "step3_blocking",
		Usage: "serve one client at a time with blocking syscalls on raw fds (--threads: an OS thread per client)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "trace",
				Usage: "print every blocking call (accept, read, write) as it starts and returns"},
			&cli.BoolFlag{Name: "threads",
				Usage: "serve each client on a goroutine locked to its own OS thread, and log the OS thread count"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			lfd, addr, err := sock.ListenFD(env.Host, env.Port)
			if err != nil {
				return err
			}
			defer unix.Close(lfd)
			env.Listening(addr.String())
			s := &server{lfd: lfd, addr: addr, log: env.Log,
				trace: env.CLI.Bool("trace"), conns: map[int]bool{}}
			// A thread blocked in accept() or read() does not notice that
			// ctx ended: stop must wake it from outside (see stop).
			context.AfterFunc(ctx, s.stop)
			if env.CLI.Bool("threads") {
				s.serveThreads(ctx)
			} else {
				s.serve(ctx)
			}
			return nil
		},
	})
}
