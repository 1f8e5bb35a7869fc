// Step 3: blocking I/O on raw file descriptors. The same sequential server as
// step 1, written with the system calls package net hides (socket, bind,
// listen, accept, read, write), so you can watch the one thing that makes it
// sequential: a read() that blocks until this client sends, while every
// other client waits in the kernel's accept queue. --trace prints each
// blocking call as it happens; --threads gives every connection a goroutine
// locked to its own OS thread, the C way of serving many clients at once,
// and --max-clients caps how many it serves at once.
//
// server.go is the model, step 1's server on raw fds; the other files hold
// what raw fds make us do by hand: write.go (a write can be cut short),
// stop.go (waking a thread asleep in the kernel), threads.go (--threads) and
// trace.go (--trace and the OS thread count).
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

// defaultMaxClients is --max-clients' default: a tenth of the 10000 OS
// threads past which the Go runtime aborts the process, so that the cap, not
// the crash, is what a crowd of clients meets.
const defaultMaxClients = 1000

func main() {
	app.Main(app.Server{
		Name:  "step3_blocking",
		Usage: "serve one client at a time with blocking syscalls on raw fds (--threads: an OS thread per client)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "trace",
				Usage: "print every blocking call (accept, read, write) as it starts and returns"},
			&cli.BoolFlag{Name: "threads",
				Usage: "serve each client on a goroutine locked to its own OS thread, and log the OS thread count"},
			&cli.IntFlag{Name: "max-clients", Value: defaultMaxClients,
				Usage: "with --threads, refuse clients past this many at once: each holds an OS thread, " +
					"and past 10000 threads the Go runtime aborts the whole server"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			maxClients := env.CLI.Int("max-clients")
			if maxClients < 1 {
				return cli.Exit("step3_blocking: --max-clients must be >= 1 (see --help)", 2)
			}
			lfd, addr, err := sock.ListenFD(env.Host, env.Port)
			if err != nil {
				return err
			}
			defer unix.Close(lfd)
			env.Listening(addr.String())
			if env.CLI.Bool("trace") {
				traceLog = env.Log
			}
			// A thread blocked in accept() does not notice that ctx ended:
			// it must be woken from outside (see stop.go).
			stop := afterStop(ctx, func() { wakeAccept(lfd, addr) })
			defer stop()
			var thr *threads // nil: one client at a time, as in step 1
			if env.CLI.Bool("threads") {
				thr = startThreads(ctx, env.Log, maxClients)
				defer thr.wait()
			}
			serve(ctx, lfd, env.Log, thr)
			return nil
		},
	})
}
