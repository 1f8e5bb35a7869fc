// Step 7: an event-loop library. Step 6's epoll loop moves into a package,
// evloop, and the server shrinks to four callbacks: what to send when a
// client connects, what to do with bytes that arrive, and so on. The library
// runs one loop per core, each with its own epoll and SO_REUSEPORT listener,
// owns every buffer, and offers a worker pool for work too slow for a loop.
//
//	go run ./step7_eventloop_lib          # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080   # about 2.2 s, whatever N
//
// Beside it: ./step7_eventloop_lib/isprime (the library's worker pool at
// work) and ./step7_eventloop_lib/gnetserver (this server on gnet).
package main

import (
	"context"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/step7_eventloop_lib/evloop"
)

func main() {
	app.Main(app.Server{
		Name:  "step7_eventloop_lib",
		Usage: "serve every client from a few event loops, through a callback library",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "loops", Value: runtime.NumCPU(),
				Usage: "event loops, each with its own epoll and listener"},
			&cli.DurationFlag{Name: "idle-timeout",
				Usage: "close connections silent for this long (0: never)"},
			&cli.StringFlag{Name: "cpuprofile",
				Usage: "write a CPU profile to this file (read it with go tool pprof)"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			loops, idle := env.CLI.Int("loops"), env.CLI.Duration("idle-timeout")
			if loops < 1 {
				return cli.Exit("step7_eventloop_lib: --loops must be >= 1 (see --help)", 2)
			}
			if idle < 0 {
				return cli.Exit("step7_eventloop_lib: --idle-timeout must be >= 0 (see --help)", 2)
			}
			if path := env.CLI.String("cpuprofile"); path != "" {
				stop, err := app.CPUProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			s := &server{log: env.Log, listening: env.Listening}
			err := evloop.Run(ctx, s, env.Host, env.Port,
				evloop.WithLoops(loops), evloop.WithIdleTimeout(idle),
				evloop.WithStopTimeout(500*time.Millisecond), evloop.WithLogger(env.Log))
			if s.eng != nil {
				// The library's counters, one line per loop: how evenly
				// SO_REUSEPORT spread the clients, and how often other
				// goroutines had to wake a loop.
				for i, st := range s.eng.Stats() {
					env.Log.Info("loop stats", "loop", i, "accepted", st.Accepted,
						"bytes_in", st.BytesIn, "bytes_out", st.BytesOut, "wakeups", st.Wakeups)
				}
			}
			return err
		},
	})
}
