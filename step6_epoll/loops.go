//go:build linux

package main

// Multi-loop mode (--loops N). One loop is one goroutine on one core. To
// use N cores, run N loops, each with its own listener, epoll instance and
// connections, so that they share nothing and need no lock. The listeners
// all bind the same port with SO_REUSEPORT, and the kernel spreads new
// connections over their accept queues by a hash of the client's address
// and port.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// runLoops opens cfg.loops listeners on one port, serves each from its own
// loop, and waits until ctx ends and every loop has closed its connections.
func runLoops(ctx context.Context, cfg config, log *slog.Logger, listening func(addr string)) error {
	// One loop failing stops the others: each has its own wake-up fd (an
	// eventfd per loop), and cancel makes them all readable.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loops []*server
	var addr netip.AddrPort
	port := cfg.port
	for i := range cfg.loops {
		// The first listener checks that nobody else holds the port (a
		// second server started by mistake must fail, not take half our
		// clients); the others join it. With --port 0 the first bind
		// picks a free port and the others bind that one.
		lfd, ap, err := sock.ListenFDReusePort(cfg.host, port, i > 0)
		if err != nil {
			return err
		}
		defer unix.Close(lfd)
		s, stop, err := newServer(ctx, i, lfd, cfg.edge, log)
		if err != nil {
			return err
		}
		defer stop()
		if i == 0 {
			addr, port = ap, int(ap.Port())
		}
		loops = append(loops, s)
	}
	listening(addr.String())
	log.Info("epoll", "mode", mode(cfg.edge), "loops", cfg.loops)

	errs := make([]error, len(loops))
	var wg sync.WaitGroup
	for i, s := range loops {
		// Each loop blocks its own OS thread in epoll_wait; the Go
		// scheduler hands the loop's P to other goroutines meanwhile.
		wg.Go(func() {
			if errs[i] = s.serve(); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
