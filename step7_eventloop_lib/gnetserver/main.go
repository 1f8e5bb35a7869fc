// The protocol server on gnet (github.com/panjf2000/gnet/v2), the
// production library evloop is shaped after: the same callbacks, so the two
// servers read almost alike and the benchmarks compare hand-written with
// library, not two different programs.
//
//	go run ./step7_eventloop_lib/gnetserver   # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080       # about 2.2 s, whatever N
package main

import (
	"context"
	"runtime"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/app"
)

func main() {
	app.Main(app.Server{
		Name:  "gnetserver",
		Usage: "serve every client from gnet's event loops",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "loops", Value: runtime.NumCPU(),
				Usage: "gnet event loops (sub-reactors) behind its accepting main reactor"},
			&cli.StringFlag{Name: "cpuprofile",
				Usage: "write a CPU profile to this file (read it with go tool pprof)"},
		},
		Run: func(ctx context.Context, env *app.Env) error {
			loops := env.CLI.Int("loops")
			if loops < 1 {
				return cli.Exit("gnetserver: --loops must be >= 1 (see --help)", 2)
			}
			if path := env.CLI.String("cpuprofile"); path != "" {
				stop, err := app.CPUProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			return serve(ctx, env.Host, env.Port, loops, env.Log, env.Listening)
		},
	})
}
