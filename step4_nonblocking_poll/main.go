// Step 4: non-blocking sockets, polled. The listener and every connection are
// switched to non-blocking mode, so accept() and read() return at once with
// EAGAIN when there is nothing for them. One goroutine sweeps over all fds,
// asking each in turn, and sleeps --interval only after a sweep that found
// nothing to do: it serves every client at once, at a price in CPU time or
// in latency that the interval sets.
//
//	go run ./step4_nonblocking_poll      # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080  # about 2.2 s, whatever N
package main

import (
	"context"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/internal/sock"
)

func main() {
	app.Main(app.Server{
		Name:  "step4_nonblocking_poll",
		Usage: "serve every client at once by polling non-blocking fds in one loop",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "interval", Value: 200 * time.Millisecond,
				Usage: "sleep this long after a sweep that found nothing to do; 0 never sleeps (100% CPU)"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			interval := env.CLI.Duration("interval")
			if interval < 0 {
				return cli.Exit("step4_nonblocking_poll: --interval must be >= 0 (see --help)", 2)
			}
			lfd, addr, err := sock.ListenFD(env.Host, env.Port)
			if err != nil {
				return err
			}
			defer unix.Close(lfd)
			// Non-blocking: accept() returns EAGAIN instead of sleeping
			// when no client is waiting, so one loop can ask it in passing.
			if err := unix.SetNonblock(lfd, true); err != nil {
				return os.NewSyscallError("fcntl O_NONBLOCK", err)
			}
			env.Listening(addr.String())
			s := &server{lfd: lfd, log: env.Log, interval: interval,
				conns: map[int]*conn{}, buf: make([]byte, bufSize)}
			s.serve(ctx)
			return nil
		},
	})
}
