// Step 2: a goroutine per connection. The accept loop hands each client to
// its own goroutine and goes straight back to accept, so clients no longer
// wait for each other. In C this is a thread per client; in Go a goroutine
// costs a few KiB and the runtime parks it on its epoll-based poller while it
// waits, so this model stretches much further than threads do.
//
//	go run ./step2_thread_per_conn       # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080  # about 2.2 s, whatever N
package main

import (
	"context"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/internal/sock"
)

func main() {
	app.Main(app.Server{
		Name:  "step2_thread_per_conn",
		Usage: "serve every client at once, a goroutine each",
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
