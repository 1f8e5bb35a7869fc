// Step 6: an event loop on raw epoll. Step 5's loop, but the kernel keeps the
// set of fds we are interested in and hands back only the ones that are
// ready, so one goroutine serves ten thousand mostly idle clients without
// looking at each of them on every turn, as select() had to. Linux only.
//
//	go run ./step6_epoll                          # level-triggered, one loop, 127.0.0.1:8080
//	go run ./step6_epoll --edge --loops 2         # edge-triggered, two loops
//	go run ./client -q -n 10000 127.0.0.1 8080    # about 2.2 s, like one client
package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/app"
)

// config is what the server needs from the command line.
type config struct {
	host  string
	port  int
	edge  bool // register sockets with EPOLLET instead of level-triggered
	loops int  // event loops, each with its own epoll and listener
}

func main() {
	app.Main(app.Server{
		Name:  "step6_epoll",
		Group: true, // --procs: a prefork group sharing the port (internal/app/group.go)
		Usage: "serve every client from epoll event loops (Linux)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "edge",
				Usage: "edge-triggered epoll (EPOLLET): woken once per change, so every wake-up reads until EAGAIN"},
			&cli.IntFlag{Name: "loops", Value: 1,
				Usage: "event loops, one goroutine and one epoll each; connections are spread by SO_REUSEPORT"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			cfg := config{host: env.Host, port: env.Port,
				edge: env.CLI.Bool("edge"), loops: env.CLI.Int("loops")}
			if cfg.loops < 1 || cfg.loops > 1024 {
				return cli.Exit("step6_epoll: --loops must be between 1 and 1024 (see --help)", 2)
			}
			return run(ctx, cfg, env.Log, env.Listening)
		},
	})
}
