package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/sock"
)

// serve is step 1's loop with two changes. handle runs on a goroutine of
// its own (clients.Go), so the accept loop no longer waits for a client to
// finish and the next one is accepted at once. And the clients WaitGroup
// counts those goroutines: serve returns only after every one has closed
// its connection, so stopping is clean.
func serve(ctx context.Context, ln net.Listener, log *slog.Logger) {
	var clients sync.WaitGroup
	defer clients.Wait()
	var backoff sock.Backoff
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return // the listener was closed because we are stopping
			}
			if sock.OutOfResources(err) {
				// Out of file descriptors (EMFILE): the connection stays
				// queued, so accepting again at once would fail again at
				// once. Wait for a served client to give its fd back.
				d, first := backoff.Next()
				if first {
					log.Warn("accept: out of resources, backing off", "err", err)
				}
				sock.Sleep(ctx, d)
				continue
			}
			d, _ := backoff.Next()
			log.Warn("accept", "err", err)
			sock.Sleep(ctx, d) // anything else: back off too, never spin
			continue
		}
		backoff.Reset()
		clients.Go(func() { handle(ctx, conn, log) })
	}
}

// handle serves one client until it closes its side, exactly as in step 1:
// blocking reads and writes are fine here, because blocking parks only this
// client's goroutine, not the server.
func handle(ctx context.Context, conn net.Conn, log *slog.Logger) {
	defer conn.Close()
	// Read blocks until the client sends; closing the connection is the
	// only way to wake it when the server must stop.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	peer := conn.RemoteAddr().String()
	log.Debug("peer connected", "peer", peer)
	if _, err := conn.Write([]byte{protocol.Ack}); err != nil {
		log.Info("peer gone before the ack", "peer", peer, "err", err)
		return
	}
	var m protocol.Machine
	buf := make([]byte, 4096)
	out := make([]byte, 0, len(buf))
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			// Write blocks while the client is not reading and the kernel's
			// send buffer is full. That bounds our memory (one buffer) and,
			// unlike in step 1, stalls only this client's goroutine.
			if out = m.Feed(out[:0], buf[:n]); len(out) > 0 {
				if _, werr := conn.Write(out); werr != nil {
					log.Info("write", "peer", peer, "err", werr)
					return
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				log.Debug("peer done", "peer", peer)
			} else if ctx.Err() == nil {
				// A reset costs this connection only.
				log.Info("read", "peer", peer, "err", err)
			}
			return
		}
	}
}
