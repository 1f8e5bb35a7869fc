// Step 1: a sequential server. It accepts one connection, serves it until the
// client leaves, and only then accepts the next: while one client is served,
// every other one waits in the kernel's accept queue.
//
//	go run ./step1_sequential            # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080  # about 5 x 2.2 s
package main

import (
	"context"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/internal/sock"
)

func main() {
	app.Main(app.Server{
		Name:  "step1_sequential",
		Usage: "serve one client at a time, to the end",
		Run: func(ctx context.Context, env *app.Env) error {
			ln, err := sock.Listen(env.Host, env.Port)
			if err != nil {
				return err
			}
			env.Listening(ln.Addr().String())
			// A goroutine blocked in Accept wakes up only when the listener
			// is closed: that is how SIGINT reaches it.
			context.AfterFunc(ctx, func() { ln.Close() })
			serve(ctx, ln, env.Log)
			return nil
		},
	})
}
