// The live view: with --stats a server prints, once a second, what it
// holds and what it costs, so that a class can watch step 3's threads
// climb with the clients while steps 5-7 stay flat, without /proc commands.

package app

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// sample is one reading. A field this OS cannot tell is -1, printed n/a:
// never a made-up zero.
type sample struct {
	conns   int   // open connected sockets: socket fds minus listeners
	threads int   // OS threads of the process
	gor     int   // goroutines
	rss     int64 // resident memory now, bytes
	cpu     time.Duration
}

// cpuTime is the process's user plus system time, from getrusage(2),
// which every Unix has.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// take reads the process now: the OS part from readOS (stats_linux.go,
// stats_other.go), goroutines and CPU the same way everywhere.
func take() sample {
	s := readOS()
	s.gor = runtime.NumGoroutine()
	s.cpu = cpuTime()
	return s
}

func orNA(v int64, f func(int64) string) string {
	if v < 0 {
		return "n/a"
	}
	return f(v)
}

// line formats a reading and the CPU used since the previous one, as a
// share of one core ("cpu=0.02s +1%"): a polling server shows its spin.
func (s sample) line(prev sample, dt time.Duration) string {
	share := "n/a"
	if s.cpu >= 0 && prev.cpu >= 0 && dt > 0 {
		share = strconv.Itoa(int(100*(s.cpu-prev.cpu).Seconds()/dt.Seconds()+0.5)) + "%"
	}
	return fmt.Sprintf("stats: conns=%s threads=%s goroutines=%d rss=%s cpu=%s (%s of a core)",
		orNA(int64(s.conns), func(v int64) string { return strconv.FormatInt(v, 10) }),
		orNA(int64(s.threads), func(v int64) string { return strconv.FormatInt(v, 10) }),
		s.gor,
		orNA(s.rss, func(v int64) string { return fmt.Sprintf("%.1fMiB", float64(v)/(1<<20)) }),
		orNA(int64(s.cpu), func(v int64) string { return fmt.Sprintf("%.2fs", time.Duration(v).Seconds()) }),
		share)
}

// printStats writes one line to w every interval until ctx ends. It runs
// on its own goroutine (and so, while it reads /proc, on some thread of
// the runtime's): the count of goroutines includes it, one more than the
// server's own.
func printStats(ctx context.Context, w io.Writer, interval time.Duration) {
	prev, at := take(), time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := take()
			fmt.Fprintln(w, s.line(prev, now.Sub(at)))
			prev, at = s, now
		}
	}
}
