package main

import (
	"context"
	"log/slog"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/sock"
)

// serve is the whole model: accept, handle to the end, repeat. Nothing else
// runs while handle works, so the second client's '*' comes only after the
// first client has gone.
func serve(ctx context.Context, lfd int, log *slog.Logger, thr *threads) {
	var backoff sock.Backoff
	for ctx.Err() == nil {
		tracef("accept(fd %d)...", lfd)
		fd, sa, err := sock.Accept(lfd) // sleeps until a client connects
		if err != nil {
			if ctx.Err() != nil {
				return // the listener was shut down because we are stopping
			}
			switch {
			case sock.AcceptAborted(err):
				// That client gave up while queued; the next may be waiting.
			case sock.OutOfResources(err):
				// Out of file descriptors (EMFILE): the connection stays
				// queued, so accepting again at once would fail again at
				// once. Wait for a served client to give its fd back.
				d, first := backoff.Next()
				if first {
					log.Warn("accept: out of resources, backing off", "err", err)
				}
				sock.Sleep(ctx, d)
			default:
				// Anything else: log and back off too, never spin.
				d, _ := backoff.Next()
				log.Warn("accept", "err", err)
				sock.Sleep(ctx, d)
			}
			continue
		}
		backoff.Reset()
		tracef("accept returned fd %d (peer %s)", fd, sock.AddrPort(sa))
		// accept(2) does not set close-on-exec (accept4 would, but macOS
		// lacks it): a child process must not inherit our clients.
		unix.CloseOnExec(fd)
		if thr != nil {
			thr.spawn(ctx, fd, sa, log) // --threads: see threads.go
			continue
		}
		handle(ctx, fd, sa, log)
	}
}

// handle serves one client until it closes its side. The protocol machine
// turns what we read into what we owe; we write it back before reading more,
// so when read finally reports EOF nothing is left unsent.
func handle(ctx context.Context, fd int, sa unix.Sockaddr, log *slog.Logger) {
	defer unix.Close(fd)
	// read(2) blocks until the client sends; closing the fd does not wake
	// it when the server must stop, shutdown(2) does (see stop.go).
	stop := afterStop(ctx, func() { unix.Shutdown(fd, unix.SHUT_RDWR) })
	defer stop()

	peer := sock.AddrPort(sa).String()
	log.Debug("peer connected", "peer", peer)
	if err := writeAll(fd, []byte{protocol.Ack}); err != nil {
		log.Info("peer gone before the ack", "peer", peer, "err", err)
		return
	}
	var m protocol.Machine
	buf := make([]byte, 4096)
	out := make([]byte, 0, len(buf))
	for {
		tracef("read(fd %d)...", fd)
		n, err := sock.Read(fd, buf) // sleeps until the client sends or leaves
		if n > 0 {
			tracef("read returned %d bytes", n)
			// Write blocks while the client is not reading and the kernel's
			// send buffer is full. That bounds our memory (one buffer), and
			// in this model it also stalls everyone else.
			if out = m.Feed(out[:0], buf[:n]); len(out) > 0 {
				if werr := writeAll(fd, out); werr != nil {
					log.Info("write", "peer", peer, "err", werr)
					return
				}
			}
		}
		if n <= 0 {
			if err == nil { // read(2) returns 0 at the end of the stream
				tracef("read returned 0 bytes")
				log.Debug("peer done", "peer", peer)
			} else if ctx.Err() == nil {
				// A reset costs this connection only.
				log.Info("read", "peer", peer, "err", err)
			}
			return
		}
	}
}
