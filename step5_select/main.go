// Step 5: select(). Step 4's loop over non-blocking fds, but instead of
// asking every fd in turn and sleeping when none had anything, one goroutine
// hands the kernel the whole set of fds and sleeps in select() until at
// least one of them is ready. No CPU is spent on idle clients and no latency
// on a polling interval; the price is a set rebuilt and scanned on every
// call, and a hard limit: select cannot watch an fd at or above FD_SETSIZE.
//
//	go run ./step5_select                # listens on 127.0.0.1:8080
//	go run ./client -n 5 127.0.0.1 8080  # about 2.2 s, whatever N
package main

import (
	"context"
	"os"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/app"
	"concurrent-servers-go/internal/sock"
)

func main() {
	app.Main(app.Server{
		Name:  "step5_select",
		Usage: "serve every client at once from one select() loop",
		Run: func(ctx context.Context, env *app.Env) error {
			lfd, addr, err := sock.ListenFD(env.Host, env.Port)
			if err != nil {
				return err
			}
			defer unix.Close(lfd)
			// Non-blocking still: select says a client is waiting, but it
			// may reset before we accept, and accept must not then sleep.
			if err := unix.SetNonblock(lfd, true); err != nil {
				return os.NewSyscallError("fcntl O_NONBLOCK", err)
			}
			// select sleeps until an fd it watches is ready, so stopping
			// needs one more fd that ctx makes readable.
			wakefd, stop, err := wakeOnDone(ctx)
			if err != nil {
				return err
			}
			defer stop()
			env.Listening(addr.String())
			s := &server{lfd: lfd, wakefd: wakefd, log: env.Log,
				conns: map[int]*conn{}, buf: make([]byte, bufSize)}
			return s.serve()
		},
	})
}
