//go:build linux

package main

import (
	"context"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// run is main's wiring, as step 5's main.go does it, for one loop; with
// --loops, runLoops (loops.go) does the same for several.
func run(ctx context.Context, cfg config, log *slog.Logger, listening func(addr string)) error {
	if cfg.loops > 1 {
		return runLoops(ctx, cfg, log, listening)
	}
	// One loop: a plain listener, so a second server started by mistake
	// on the same port gets EADDRINUSE.
	lfd, addr, err := sock.ListenFD(cfg.host, cfg.port)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	s, stop, err := newServer(ctx, 0, lfd, cfg.edge, log)
	if err != nil {
		return err
	}
	defer stop()
	listening(addr.String())
	log.Info("epoll", "mode", mode(cfg.edge), "loops", 1)
	return s.serve()
}

// newServer makes loop number id for the listener lfd: a new epoll
// instance with lfd and an fd that ctx's end makes readable in its interest
// set. From here on the kernel keeps that set: we describe it once per
// change, not once per wait as with select. stop closes what it opened.
func newServer(ctx context.Context, id, lfd int, edge bool, log *slog.Logger) (s *server, stop func(), err error) {
	// Non-blocking still: epoll says a client is waiting, but it may reset
	// before we accept, and accept must not then sleep.
	if err := unix.SetNonblock(lfd, true); err != nil {
		return nil, nil, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	p, err := newPoller(edge)
	if err != nil {
		return nil, nil, err
	}
	// epoll_wait sleeps until an fd it watches is ready, so stopping needs
	// one more fd that ctx makes readable.
	wakefd, unwake, err := wakeOnDone(ctx)
	if err != nil {
		p.close()
		return nil, nil, err
	}
	stop = func() { unwake(); p.close() }
	for _, fd := range []int{wakefd, lfd} {
		if err := p.set(fd, interest{}, interest{read: true}); err != nil {
			stop()
			return nil, nil, err
		}
	}
	s = &server{lfd: lfd, wakefd: wakefd, log: log.With("loop", id), poll: p,
		conns: map[int]*conn{}, buf: make([]byte, bufSize)}
	s.edge = edge
	return s, stop, nil
}

// mode names the trigger mode for the log.
func mode(edge bool) string {
	if edge {
		return "edge-triggered"
	}
	return "level-triggered"
}
