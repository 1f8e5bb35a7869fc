package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/client/load"
	"concurrent-servers-go/client/procstat"
	"concurrent-servers-go/internal/sock"
)

// ephemeralPorts is about how many source ports Linux hands out per
// (source address, destination address and port): the default
// ip_local_port_range is 32768-60999.
const ephemeralPorts = 28000

func holdCommand() *cli.Command {
	return &cli.Command{
		Name:      "hold",
		Usage:     "open many connections at once and keep them open (C10K and beyond)",
		ArgsUsage: "HOST PORT[,PORT...]",
		Description: "hold opens --conns connections, waits for every '*', keeps them idle for --hold, then\n" +
			"closes them. With --pid it reads the server's memory, threads and open files before and\n" +
			"while holding, and prints the memory each connection costs the server.\n\n" +
			"Three limits stand in the way of many connections from one machine, and hold passes each:\n" +
			"a process may open at most 20000 files here (hold starts one worker process per\n" +
			"--per-proc connections); a (source, destination) pair has ~28000 ephemeral ports\n" +
			"(--sources spreads over 127.0.0.x, several server ports over PORT,PORT,...). --sources also\n" +
			"speeds up connecting past ~10000: the kernel picks a source port for each connect() by\n" +
			"searching the range, which slows as the range fills.\n\n" +
			"   go run ./client hold --conns 10000 --pid $(pgrep -n step2) 127.0.0.1 8080",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "conns", Aliases: []string{"c"}, Value: 1000, Usage: "connections to open"},
			&cli.DurationFlag{Name: "hold", Value: 5 * time.Second, Usage: "how long to keep them open once all are connected"},
			&cli.IntFlag{Name: "pid", Usage: "the server's process id: report its RSS, threads and open files (Linux)"},
			sourcesFlag,
			&cli.IntFlag{Name: "per-proc", Value: 9000, Usage: "connections per worker process (each process may open 20000 files)"},
			&cli.IntFlag{Name: "dialing", Value: 128, Usage: "connect() calls in flight per worker (more overflows the accept queue)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 10 * time.Second, Usage: "give up on a connection whose '*' takes longer"},
			&cli.DurationFlag{Name: "max-connect-time", Value: 2 * time.Minute, Usage: "stop connecting after this long, whatever is left"},
			&cli.DurationFlag{Name: "keepalive", Usage: "TCP keepalive idle time and probe interval of every held " +
				"connection; 0 (the default) turns it off: Go's default of 15 s sends 66,000 probes a second at a million " +
				"connections, more than loopback's per-CPU backlog passes, and the kernel aborts what loses its probes"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the result as a Markdown table row (with its header)"},
			allowRemoteFlag,
			// The worker flags: hold runs its own executable again as
			// "hold --worker --offset N ..." for each share.
			&cli.BoolFlag{Name: "worker", Hidden: true},
			&cli.IntFlag{Name: "offset", Hidden: true},
		},
		OnUsageError: onUsageError("hold"),
		Action:       hold,
	}
}

type holdConfig struct {
	host        string
	ports       []int
	conns       int
	sources     []net.IP
	perProc     int
	dialing     int
	timeout     time.Duration
	maxConnect  time.Duration
	hold        time.Duration
	pid         int
	allowRemote bool
	keepAlive   time.Duration
}

func hold(c *cli.Context) error {
	const cmd = "hold"
	host, ports, err := target(c, cmd, true)
	if err != nil {
		return err
	}
	cfg := holdConfig{
		host: host, ports: ports, conns: c.Int("conns"), perProc: c.Int("per-proc"),
		dialing: c.Int("dialing"), timeout: c.Duration("connect-timeout"),
		maxConnect: c.Duration("max-connect-time"), hold: c.Duration("hold"),
		pid: c.Int("pid"), allowRemote: c.Bool("allow-remote"), keepAlive: c.Duration("keepalive"),
	}
	if cfg.sources, err = parseSources(c.String("sources")); err != nil {
		return usageErr(cmd, "%v", err)
	}
	if err := checkSources(cmd, cfg.sources, cfg.allowRemote); err != nil {
		return err
	}
	switch {
	case cfg.conns < 1 || cfg.conns > 2_000_000:
		return usageErr(cmd, "--conns %d: want 1 to 2000000", cfg.conns)
	case cfg.perProc < 1 || cfg.perProc > 19000:
		return usageErr(cmd, "--per-proc %d: want 1 to 19000 (a process may open 20000 files)", cfg.perProc)
	case cfg.dialing < 1 || cfg.dialing > 4096:
		return usageErr(cmd, "--dialing %d: want 1 to 4096", cfg.dialing)
	case cfg.timeout <= 0 || cfg.maxConnect <= 0:
		return usageErr(cmd, "--connect-timeout and --max-connect-time must be above 0")
	case cfg.hold < 0 || cfg.hold > 24*time.Hour:
		return usageErr(cmd, "--hold %v: want 0 to 24h", cfg.hold)
	case cfg.keepAlive < 0 || (cfg.keepAlive > 0 && cfg.keepAlive < time.Second):
		return usageErr(cmd, "--keepalive %v: want 0 (off) or at least 1s", cfg.keepAlive)
	}
	if c.Bool("worker") {
		return holdWorker(c, cfg, c.Int("offset"))
	}
	if room := ephemeralPorts * max(len(cfg.sources), 1) * len(cfg.ports); cfg.conns > room {
		return usageErr(cmd, "--conns %d needs more than the ~%d ephemeral ports of %d source address(es) x %d server port(s); "+
			"add --sources (e.g. --sources %d)", cfg.conns, room, max(len(cfg.sources), 1), len(cfg.ports),
			(cfg.conns+ephemeralPorts*len(cfg.ports)-1)/(ephemeralPorts*len(cfg.ports)))
	}
	return holdParent(c, cfg)
}

// holdWorker is one worker process: it opens its share, reports on stdout,
// and holds until its parent closes its stdin (or dies).
func holdWorker(c *cli.Context, cfg holdConfig, offset int) error {
	limit, _ := sock.RaiseNofile()
	if need := uint64(cfg.conns + 64); need > limit {
		return failErr("hold", "worker: %d connections need %d open files, the limit is %d", cfg.conns, need, limit)
	}
	// Bound the worker's life even if the parent never closes our stdin.
	ctx, cancel := context.WithTimeout(c.Context, cfg.maxConnect+cfg.hold+time.Minute)
	defer cancel()
	// The parent talks to us on stdin: "check" asks how many connections
	// are still open; end of file means release (or that it died).
	checks := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "check" {
				select {
				case checks <- struct{}{}:
				default:
				}
			}
		}
		cancel()
	}()
	connectCtx, stopConnecting := context.WithTimeout(ctx, cfg.maxConnect)
	defer stopConnecting()

	// Report progress ten times a second, not once per connection.
	w := c.App.Writer
	var ok, bad atomic.Int64
	done := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fmt.Fprintf(w, "progress %d %d\n", ok.Load(), bad.Load())
			}
		}
	})
	start := time.Now()
	h := load.Hold(connectCtx, load.HoldOptions{
		Host: cfg.host, Ports: cfg.ports, Conns: cfg.conns, Offset: offset, Local: cfg.sources,
		Dialing: cfg.dialing, ConnectTimeout: cfg.timeout, KeepAlive: cfg.keepAlive,
	}, func(connected, failed int) {
		ok.Store(int64(connected))
		bad.Store(int64(failed))
	})
	defer h.Close()
	close(done)
	reporter.Wait()
	// The error lines come before "ready", so the parent has them all
	// when it sees that this worker is done connecting.
	for k, n := range h.Errors.Count {
		fmt.Fprintf(w, "error %s %d %s\n", k, n, strings.ReplaceAll(h.Errors.First[k].Error(), "\n", " "))
	}
	fmt.Fprintf(w, "ready %d %d %d\n", h.Connected, h.Errors.Total(), time.Since(start))
	for {
		select {
		case <-checks:
			fmt.Fprintf(w, "open %d\n", h.Open())
		case <-ctx.Done():
			return nil
		}
	}
}

// worker is the parent's view of one worker process.
type worker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	done    chan struct{} // closed when its stdout ends
	ready   bool
	ok      int
	failed  int
	elapsed time.Duration // from its first connect to its last
	open    int           // connections still open, after a "check"
	checked bool
}

// serverSample is what --pid reads from the server.
type serverSample struct {
	st  procstat.Status
	fds int
	err error
}

func sampleServer(pid int) serverSample {
	var s serverSample
	if s.st, s.err = procstat.ReadStatus(pid); s.err == nil {
		s.fds, s.err = procstat.FDs(pid)
	}
	return s
}

func (s serverSample) String() string {
	if s.err != nil {
		return "n/a (" + s.err.Error() + ")"
	}
	return fmt.Sprintf("RSS %.1f MiB, %d threads, %d open files", float64(s.st.RSS)/(1<<20), s.st.Threads, s.fds)
}

func holdParent(c *cli.Context, cfg holdConfig) error {
	const cmd = "hold"
	self, err := os.Executable()
	if err != nil {
		return failErr(cmd, "cannot find my own executable to start workers: %v", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var before serverSample
	if cfg.pid > 0 {
		if before = sampleServer(cfg.pid); before.err != nil {
			return failErr(cmd, "--pid %d: %v", cfg.pid, before.err)
		}
	}
	// Then one connection, so that a server that is not there is one
	// clear line rather than thousands of failures. (After the sample:
	// the server may take a moment to close it.)
	probe := net.JoinHostPort(cfg.host, strconv.Itoa(cfg.ports[0]))
	if err := load.Probe(ctx, probe, cfg.timeout); err != nil {
		return failErr(cmd, "%v", err)
	}

	nw := (cfg.conns + cfg.perProc - 1) / cfg.perProc
	var mu sync.Mutex
	changed := make(chan struct{}, 1)
	var workers []*worker
	errLines := map[string]string{}
	errCounts := map[string]int{}
	defer func() {
		// Release: closing a worker's stdin tells it to close its
		// connections and exit; kill any that does not within 10 s.
		for _, w := range workers {
			w.stdin.Close()
		}
		deadline := time.After(10 * time.Second)
		for _, w := range workers {
			select {
			case <-w.done:
			case <-deadline:
				w.cmd.Process.Kill()
				<-w.done
			}
			w.cmd.Wait()
		}
	}()

	for i := range nw {
		share := min(cfg.perProc, cfg.conns-i*cfg.perProc)
		args := []string{"hold", "--worker", "--offset", strconv.Itoa(i * cfg.perProc),
			"--conns", strconv.Itoa(share), "--dialing", strconv.Itoa(cfg.dialing),
			"--connect-timeout", cfg.timeout.String(), "--max-connect-time", cfg.maxConnect.String(),
			"--hold", cfg.hold.String(), "--keepalive", cfg.keepAlive.String()}
		if len(cfg.sources) > 0 {
			var s []string
			for _, ip := range cfg.sources {
				s = append(s, ip.String())
			}
			args = append(args, "--sources", strings.Join(s, ","))
		}
		if cfg.allowRemote {
			args = append(args, "--allow-remote")
		}
		var ports []string
		for _, p := range cfg.ports {
			ports = append(ports, strconv.Itoa(p))
		}
		args = append(args, cfg.host, strings.Join(ports, ","))
		wc := exec.Command(self, args...)
		dieWithParent(wc)
		wc.Stderr = c.App.ErrWriter
		stdin, err := wc.StdinPipe()
		if err != nil {
			return failErr(cmd, "%v", err)
		}
		stdout, err := wc.StdoutPipe()
		if err != nil {
			return failErr(cmd, "%v", err)
		}
		if err := wc.Start(); err != nil {
			return failErr(cmd, "starting worker: %v", err)
		}
		w := &worker{cmd: wc, stdin: stdin, done: make(chan struct{})}
		workers = append(workers, w)
		go func() {
			defer close(w.done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				f := strings.SplitN(sc.Text(), " ", 4)
				mu.Lock()
				switch {
				case f[0] == "progress" && len(f) == 3:
					w.ok, _ = strconv.Atoi(f[1])
					w.failed, _ = strconv.Atoi(f[2])
				case f[0] == "ready" && len(f) == 4:
					w.ok, _ = strconv.Atoi(f[1])
					w.failed, _ = strconv.Atoi(f[2])
					ns, _ := strconv.ParseInt(f[3], 10, 64)
					w.elapsed, w.ready = time.Duration(ns), true
				case f[0] == "open" && len(f) == 2:
					w.open, _ = strconv.Atoi(f[1])
					w.checked = true
				case f[0] == "error" && len(f) == 4:
					n, _ := strconv.Atoi(f[2])
					errCounts[f[1]] += n
					if errLines[f[1]] == "" {
						errLines[f[1]] = f[3]
					}
				}
				mu.Unlock()
				select {
				case changed <- struct{}{}:
				default:
				}
			}
			io.Copy(io.Discard, stdout)
		}()
	}

	// Wait until every worker is ready (or gone), showing progress.
	bar := newProgress(c.App.ErrWriter, "hold", int64(cfg.conns), "conns")
	var connectTime time.Duration // the slowest worker's, as they run side by side
	tally := func() (ok, failed, ready int) {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range workers {
			ok, failed = ok+w.ok, failed+w.failed
			connectTime = max(connectTime, w.elapsed)
			select {
			case <-w.done:
				ready++
				continue
			default:
			}
			if w.ready {
				ready++
			}
		}
		return
	}
	// Workers stop connecting after --max-connect-time on their own; this
	// bound is for a worker that hangs or never starts.
	bound := time.NewTimer(cfg.maxConnect + 30*time.Second)
	defer bound.Stop()
	var ok, failed int
	stuck := false
	for ctx.Err() == nil && !stuck {
		var ready int
		ok, failed, ready = tally()
		bar.set(int64(ok + failed))
		if ready == len(workers) {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
		case <-bound.C:
			stuck = true
		}
	}
	bar.done()
	if stuck {
		return failErr(cmd, "workers did not finish connecting within %v; released everything", cfg.maxConnect+30*time.Second)
	}
	rate := 0.0
	if connectTime > 0 {
		rate = float64(ok) / connectTime.Seconds()
	}
	w := c.App.Writer
	md := c.Bool("markdown")
	if !md {
		fmt.Fprintf(w, "hold %s port %s: %d connections from %d worker process(es), %d source address(es)\n",
			cfg.host, joinInts(cfg.ports), cfg.conns, nw, max(len(cfg.sources), 1))
		fmt.Fprintf(w, "  connected  %d of %d in %s (%.0f connections/s), %d failed\n",
			ok, cfg.conns, human(connectTime), rate, failed)
	}
	if ctx.Err() != nil {
		return cli.Exit("client hold: interrupted; every connection has been closed", 130)
	}
	if ok == 0 {
		if errCounts["refused"] > 0 && len(errCounts) == 1 {
			return failErr(cmd, "connection refused: is a server listening on %s port %s?", cfg.host, joinInts(cfg.ports))
		}
		return failErr(cmd, "no connection succeeded: %s", errSummary(errCounts, errLines))
	}

	// Hold, then read the server while every connection is still open.
	t := time.NewTimer(cfg.hold)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	var held serverSample
	perConn, serverConns := "n/a", 0
	if cfg.pid > 0 {
		held = sampleServer(cfg.pid)
	}
	// Did the server keep them all? Each worker peeks at its connections.
	stillOpen := checkOpen(workers, &mu, changed)
	if cfg.pid > 0 {
		// Divide by the connections this server holds, which its open
		// files tell, not by ours: with several server ports, --pid is
		// only one of the servers.
		if n := held.fds - before.fds; held.err == nil && n > 0 {
			serverConns = n
			perConn = fmt.Sprintf("%.1f KiB", float64(held.st.RSS-before.st.RSS)/float64(n)/1024)
		}
	}
	if md {
		fmt.Fprintln(w, machineLine(os.Args[1:]))
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| connections | processes | sources | connected in | connections/s | failed | still open | server RSS before | RSS holding | per connection | threads holding | fds holding |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		rss := func(s serverSample) string {
			if cfg.pid == 0 || s.err != nil {
				return "n/a"
			}
			return fmt.Sprintf("%.1f MiB", float64(s.st.RSS)/(1<<20))
		}
		threads, fds := "n/a", "n/a"
		if cfg.pid > 0 && held.err == nil {
			threads, fds = strconv.Itoa(held.st.Threads), strconv.Itoa(held.fds)
		}
		fmt.Fprintf(w, "| %d | %d | %d | %s | %.0f | %d | %d | %s | %s | %s | %s | %s |\n",
			ok, nw, max(len(cfg.sources), 1), human(connectTime), rate, failed, stillOpen,
			rss(before), rss(held), perConn, threads, fds)
	} else {
		fmt.Fprintf(w, "  held       %v, %d of %d still open at the end\n", cfg.hold, stillOpen, ok)
		if cfg.pid > 0 {
			fmt.Fprintf(w, "  server     before:  %v\n", before)
			fmt.Fprintf(w, "             holding: %v\n", held)
			if serverConns > 0 {
				fmt.Fprintf(w, "  memory per connection: %s ((RSS holding - RSS before) / %d connections)\n", perConn, serverConns)
			}
		}
	}
	if failed > 0 {
		fmt.Fprintln(c.App.ErrWriter, "FAIL "+errSummary(errCounts, errLines))
		return cli.Exit("", 1)
	}
	if ctx.Err() != nil {
		return cli.Exit("client hold: interrupted; every connection has been closed", 130)
	}
	if stillOpen < ok {
		fmt.Fprintf(c.App.ErrWriter, "FAIL the server closed or reset %d of %d connections while they were held\n", ok-stillOpen, ok)
		return cli.Exit("", 1)
	}
	return nil
}

// checkOpen asks every worker how many of its connections are still open
// and sums the answers, waiting up to 10 s for them.
func checkOpen(workers []*worker, mu *sync.Mutex, changed <-chan struct{}) int {
	mu.Lock()
	for _, w := range workers {
		w.checked = false
		io.WriteString(w.stdin, "check\n") // a dead worker just never answers
	}
	mu.Unlock()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		mu.Lock()
		open, all := 0, true
		for _, w := range workers {
			select {
			case <-w.done:
				continue // a worker that exited holds nothing
			default:
			}
			open += w.open
			all = all && w.checked
		}
		mu.Unlock()
		if all {
			return open
		}
		select {
		case <-changed:
		case <-deadline.C:
			return open
		}
	}
}

func errSummary(counts map[string]int, first map[string]string) string {
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s: %d (first: %s)", k, n, first[k]))
	}
	return strings.Join(parts, "; ")
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
