package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// traceLog is set by --trace: tracef then logs every blocking call as it
// starts and as it returns, so you can see where the server sleeps. Left
// nil, tracef prints nothing.
var traceLog *slog.Logger

func tracef(format string, args ...any) {
	if traceLog != nil {
		traceLog.Info(fmt.Sprintf(format, args...))
	}
}

// watchThreads logs the process's OS thread count whenever it or the number
// of clients changes, until ctx ends: with --threads, the count follows the
// clients.
func watchThreads(ctx context.Context, log *slog.Logger, clients *atomic.Int64) {
	lastClients, lastThreads := int64(-1), -1
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n := clients.Load()
		threads, what := osThreads()
		if n != lastClients || threads != lastThreads {
			log.Info("os threads", "clients", n, what, threads)
			lastClients, lastThreads = n, threads
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// osThreads returns the number of OS threads in this process, from Linux's
// /proc/self/status. Where there is no /proc (macOS) it falls back on the
// runtime's count of threads it ever created, which never goes down, and
// says so in the name it returns.
func osThreads() (int, string) {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					return n, "threads"
				}
			}
		}
	}
	return pprof.Lookup("threadcreate").Count(), "threads_created"
}
