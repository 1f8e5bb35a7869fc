package main

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// threads is --threads, the C answer to step 1: a thread per client. Each
// client gets a goroutine that locks itself to its own OS thread, so when
// its read() blocks, that thread sleeps in the kernel and the others carry
// on. Go would start a thread per blocked syscall anyway; locking makes it
// one thread per client by design, as pthread_create would, and visible in
// the thread count.
type threads struct {
	// max caps the clients served at once (--max-clients). Every client
	// holds an OS thread, and the Go runtime aborts the whole process past
	// 10000 threads (debug.SetMaxThreads), so without a cap any crowd of
	// idle clients could crash the server.
	max      int
	clients  atomic.Int64 // clients being served now, one thread each
	refusing bool         // inside a burst of refusals, already logged
	running  sync.WaitGroup
}

// startThreads starts the thread counter and returns the --threads mode.
func startThreads(ctx context.Context, log *slog.Logger, maxClients int) *threads {
	t := &threads{max: maxClients}
	t.running.Go(func() { watchThreads(ctx, log, &t.clients) })
	return t
}

// spawn serves the client on fd on a new thread, or refuses it when max
// clients are being served already. Only serve's loop calls it, so refusing
// needs no lock.
func (t *threads) spawn(ctx context.Context, fd int, sa unix.Sockaddr, log *slog.Logger) {
	if t.clients.Load() >= int64(t.max) {
		// Refuse at once: accept and close, so the client learns now (it
		// reads end of stream without a '*') and the accept queue keeps
		// moving. Not accepting until a slot frees would leave clients
		// waiting in the queue, unable to tell a full server from a hung
		// one. One log line per burst, so a crowd cannot flood the log.
		if !t.refusing {
			t.refusing = true
			log.Warn("refusing clients: --max-clients reached", "max", t.max, "peer", sock.AddrPort(sa).String())
		}
		unix.Close(fd)
		return
	}
	t.refusing = false
	t.clients.Add(1)
	t.running.Go(func() {
		defer t.clients.Add(-1)
		// No UnlockOSThread: a goroutine that ends while locked takes
		// its thread with it, so the count falls as clients leave.
		runtime.LockOSThread()
		handle(ctx, fd, sa, log)
	})
}

// wait returns when every client's thread, and the counter, have finished.
func (t *threads) wait() { t.running.Wait() }
