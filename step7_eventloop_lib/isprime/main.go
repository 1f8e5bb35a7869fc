// The is-prime server, the experiment that closes the series: a check that
// takes seconds, run on the event loop, stalls every other client of that
// loop; run in the worker pool (--offload, libuv's uv_queue_work), it stalls
// nobody.
//
// The line protocol: a client sends a number in decimal (0 to 2^64-1)
// followed by a newline ("\r\n" also accepted); the server answers "prime\n"
// or "not prime\n", or "error: <why>\n" for a line that is not such a
// number. A client may send several lines at once: they are answered one
// after the other, in order. A line longer than 64 bytes gets an error and
// the connection is closed. There is no '*' ack: this is not the series'
// protocol.
//
//	go run ./step7_eventloop_lib/isprime --port 9090 [--offload]
//	printf '1000000000000000003\n' | nc -q1 127.0.0.1 9090 &   # a second or two of work
//	printf '7\n' | nc -q1 127.0.0.1 9090                       # answered at once only with --offload
package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/step7_eventloop_lib/evloop"
)

func main() {
	app.Main(app.Server{
		Name:  "isprime",
		Usage: "answer whether numbers are prime, on the loop or in the worker pool",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "offload",
				Usage: "check numbers in the worker pool instead of on the event loop"},
			&cli.IntFlag{Name: "loops", Value: 1,
				Usage: "event loops; one, like libuv's default loop, makes the stall easy to see"},
			&cli.IntFlag{Name: "workers", Value: 4,
				Usage: "worker pool goroutines for --offload (libuv's default is 4 too); with 1, a small number waits behind a big one"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			loops, workers := env.CLI.Int("loops"), env.CLI.Int("workers")
			if loops < 1 {
				return cli.Exit("isprime: --loops must be >= 1 (see --help)", 2)
			}
			if workers < 1 {
				return cli.Exit("isprime: --workers must be >= 1 (see --help)", 2)
			}
			s := &server{ctx: ctx, listening: env.Listening, offload: env.CLI.Bool("offload")}
			return evloop.Run(ctx, s, env.Host, env.Port, evloop.WithLoops(loops),
				evloop.WithWorkers(workers, 1024), evloop.WithLogger(env.Log))
		},
	})
}
