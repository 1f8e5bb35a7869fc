package main

import (
	"bufio"
	"context"
	"errors"
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
	"concurrent-servers-go/internal/procstat"
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
			sourcesFlag(),
			&cli.IntFlag{Name: "per-proc", Value: 9000, Usage: "connections per worker process (each process may open 20000 files)"},
			&cli.IntFlag{Name: "dialing", Value: 128, Usage: "connect() calls in flight per worker (more overflows the accept queue)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 10 * time.Second, Usage: "give up on a connection whose '*' takes longer"},
			&cli.DurationFlag{Name: "max-connect-time", Value: 2 * time.Minute, Usage: "stop connecting after this long, whatever is left"},
			&cli.DurationFlag{Name: "keepalive", Usage: "TCP keepalive idle time and probe interval of every held " +
				"connection; 0 (the default) turns it off: Go's default of 15 s sends 66,000 probes a second at a million " +
				"connections, more than loopback's per-CPU backlog passes, and the kernel aborts what loses its probes"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the result as a Markdown table row (with its header)"},
			allowRemoteFlag(),
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
			// Our own memory too: what holding costs the client.
			st, _ := procstat.ReadStatus(os.Getpid())
			fmt.Fprintf(w, "open %d %d\n", h.Open(), st.RSS)
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
	rss     int64         // its own memory, after a "check"
	checked bool
}

// holdRun is one run seen from the parent. Its phases, in order: start
// the workers, wait until every one is connected (the barrier: the hold
// starts only then, so everything is held at full size), hold, measure
// while holding, ask every worker how many connections are still open,
// and release them all at once.
type holdRun struct {
	cfg       holdConfig
	mu        sync.Mutex
	changed   chan struct{} // a worker said something
	workers   []*worker
	errLines  map[string]string
	errCounts map[string]int
}

// holdResult is what a run measured.
type holdResult struct {
	workers     int
	ok, failed  int
	connectTime time.Duration // the slowest worker's, as they run side by side
	stillOpen   int
	clientRSS   int64 // every worker's, summed, while holding
	before      serverSample
	held        serverSample
	kBefore     kernelSample
	kHeld       kernelSample
	idleCPU     time.Duration // the server's CPU time during the hold
}

func (r holdResult) rate() float64 {
	if r.connectTime <= 0 {
		return 0
	}
	return float64(r.ok) / r.connectTime.Seconds()
}

// errInterrupted is SIGINT or SIGTERM during the run.
var errInterrupted = errors.New("interrupted")

// runHold runs a hold up to, not including, the release: the caller
// releases (r.release), so that it can time what follows.
// connected, if set, is called once connecting ends (all connected,
// given up, or interrupted), before the hold.
func runHold(ctx context.Context, cfg holdConfig, errw io.Writer, connected func(holdResult)) (*holdRun, holdResult, error) {
	r := &holdRun{cfg: cfg, changed: make(chan struct{}, 1), errLines: map[string]string{}, errCounts: map[string]int{}}
	var res holdResult
	if cfg.pid > 0 {
		if res.before = sampleServer(cfg.pid); res.before.err != nil {
			return r, res, fmt.Errorf("--pid %d: %v", cfg.pid, res.before.err)
		}
	}
	res.kBefore = sampleKernel()
	// Then one connection, so that a server that is not there is one
	// clear line rather than thousands of failures. (After the sample:
	// the server may take a moment to close it.)
	probe := net.JoinHostPort(cfg.host, strconv.Itoa(cfg.ports[0]))
	if err := load.Probe(ctx, probe, cfg.timeout); err != nil {
		return r, res, err
	}
	if err := r.start(errw); err != nil {
		return r, res, err
	}
	res.workers = len(r.workers)
	err := r.connect(ctx, errw, &res)
	if connected != nil {
		connected(res)
	}
	if err != nil {
		return r, res, err
	}
	if res.ok == 0 {
		return r, res, nil
	}
	// The hold itself: every connection idle, nothing sent. What the
	// server spends meanwhile is the cost of idle connections.
	// (Only its CPU time: counting its open files reads /proc/PID/fd,
	// which makes the kernel build an inode per fd, and those would
	// show up in the kernel's memory below.)
	var cpuAtBarrier time.Duration
	if cfg.pid > 0 {
		cpuAtBarrier = serverCPU(cfg.pid)
	}
	t := time.NewTimer(cfg.hold)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	if ctx.Err() != nil {
		return r, res, errInterrupted
	}
	// Measure while everything is still open, then check.
	res.kHeld = sampleKernel()
	if cfg.pid > 0 {
		res.held = sampleServer(cfg.pid)
		res.idleCPU = res.held.cpu - cpuAtBarrier
	}
	res.stillOpen, res.clientRSS = r.check()
	return r, res, nil
}

// start starts one worker process per --per-proc connections; each runs
// this executable again as "hold --worker".
func (r *holdRun) start(errw io.Writer) error {
	cfg := r.cfg
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find my own executable to start workers: %v", err)
	}
	var ports, sources []string
	for _, p := range cfg.ports {
		ports = append(ports, strconv.Itoa(p))
	}
	for _, ip := range cfg.sources {
		sources = append(sources, ip.String())
	}
	nw := (cfg.conns + cfg.perProc - 1) / cfg.perProc
	for i := range nw {
		share := min(cfg.perProc, cfg.conns-i*cfg.perProc)
		args := []string{"hold", "--worker", "--offset", strconv.Itoa(i * cfg.perProc),
			"--conns", strconv.Itoa(share), "--dialing", strconv.Itoa(cfg.dialing),
			"--connect-timeout", cfg.timeout.String(), "--max-connect-time", cfg.maxConnect.String(),
			"--hold", cfg.hold.String(), "--keepalive", cfg.keepAlive.String()}
		if len(sources) > 0 {
			args = append(args, "--sources", strings.Join(sources, ","))
		}
		if cfg.allowRemote {
			args = append(args, "--allow-remote")
		}
		args = append(args, cfg.host, strings.Join(ports, ","))
		wc := exec.Command(self, args...)
		dieWithParent(wc)
		wc.Stderr = errw
		stdin, err := wc.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := wc.StdoutPipe()
		if err != nil {
			return err
		}
		if err := wc.Start(); err != nil {
			return fmt.Errorf("starting worker: %v", err)
		}
		w := &worker{cmd: wc, stdin: stdin, done: make(chan struct{})}
		r.workers = append(r.workers, w)
		go r.read(w, stdout)
	}
	return nil
}

// read follows one worker's reports on its stdout.
func (r *holdRun) read(w *worker, stdout io.Reader) {
	defer close(w.done)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		r.mu.Lock()
		switch {
		case f[0] == "progress" && len(f) == 3:
			w.ok, _ = strconv.Atoi(f[1])
			w.failed, _ = strconv.Atoi(f[2])
		case f[0] == "ready" && len(f) == 4:
			w.ok, _ = strconv.Atoi(f[1])
			w.failed, _ = strconv.Atoi(f[2])
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			w.elapsed, w.ready = time.Duration(ns), true
		case f[0] == "open" && len(f) == 3:
			w.open, _ = strconv.Atoi(f[1])
			w.rss, _ = strconv.ParseInt(f[2], 10, 64)
			w.checked = true
		case f[0] == "error" && len(f) == 4:
			n, _ := strconv.Atoi(f[2])
			r.errCounts[f[1]] += n
			if r.errLines[f[1]] == "" {
				r.errLines[f[1]] = f[3]
			}
		}
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
	io.Copy(io.Discard, stdout)
}

// connect is the barrier: it returns once every worker has opened its
// share (or given up, or died), showing progress on a terminal.
func (r *holdRun) connect(ctx context.Context, errw io.Writer, res *holdResult) error {
	bar := newProgress(errw, "hold", int64(r.cfg.conns), "conns")
	defer bar.done()
	tally := func() (ready int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		res.ok, res.failed = 0, 0
		for _, w := range r.workers {
			res.ok, res.failed = res.ok+w.ok, res.failed+w.failed
			res.connectTime = max(res.connectTime, w.elapsed)
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
		return ready
	}
	// Workers stop connecting after --max-connect-time on their own; this
	// bound is for a worker that hangs or never starts.
	limit := r.cfg.maxConnect + 30*time.Second
	bound := time.NewTimer(limit)
	defer bound.Stop()
	start := time.Now()
	for {
		ready := tally()
		bar.set(int64(res.ok + res.failed))
		if ready == len(r.workers) {
			return nil
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			res.connectTime = time.Since(start) // how long it had been trying
			return errInterrupted
		case <-bound.C:
			return fmt.Errorf("workers did not finish connecting within %v; released everything", limit)
		}
	}
}

// check asks every worker how many of its connections are still open
// (each peeks at every one) and how much memory it holds, and sums the
// answers, waiting up to 30 s for them.
func (r *holdRun) check() (open int, rss int64) {
	r.mu.Lock()
	for _, w := range r.workers {
		w.checked = false
		io.WriteString(w.stdin, "check\n") // a dead worker just never answers
	}
	r.mu.Unlock()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		open, rss = 0, 0
		all := true
		for _, w := range r.workers {
			select {
			case <-w.done:
				continue // a worker that exited holds nothing
			default:
			}
			open, rss = open+w.open, rss+w.rss
			all = all && w.checked
		}
		r.mu.Unlock()
		if all {
			return open, rss
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			return open, rss
		}
	}
}

// release lets every worker go at once: closing a worker's stdin tells it
// to close its connections and exit. All stdins are closed before any is
// waited for, so the close storm hits the server at full size. A worker
// still there after 30 s is killed.
func (r *holdRun) release() {
	for _, w := range r.workers {
		w.stdin.Close()
	}
	deadline := time.After(30 * time.Second)
	for _, w := range r.workers {
		select {
		case <-w.done:
		case <-deadline:
			w.cmd.Process.Kill()
			<-w.done
		}
		w.cmd.Wait()
	}
	r.workers = nil
}

func holdParent(c *cli.Context, cfg holdConfig) error {
	const cmd = "hold"
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	w := c.App.Writer
	md := c.Bool("markdown")
	r, res, err := runHold(ctx, cfg, c.App.ErrWriter, func(res holdResult) {
		if !md {
			printConnected(w, cfg, res)
		}
	})
	defer r.release()
	switch {
	case errors.Is(err, errInterrupted):
		r.release()
		return cli.Exit("client hold: interrupted; every connection has been closed", 130)
	case err != nil:
		return failErr(cmd, "%v", err)
	case res.ok == 0:
		if r.errCounts["refused"] > 0 && len(r.errCounts) == 1 {
			return failErr(cmd, "connection refused: is a server listening on %s port %s?", cfg.host, joinInts(cfg.ports))
		}
		return failErr(cmd, "no connection succeeded: %s", errSummary(r.errCounts, r.errLines))
	}
	if md {
		printHoldMarkdown(w, cfg, res)
	} else {
		printHeld(w, cfg, res)
	}
	if res.failed > 0 {
		fmt.Fprintln(c.App.ErrWriter, "FAIL "+errSummary(r.errCounts, r.errLines))
		return cli.Exit("", 1)
	}
	if res.stillOpen < res.ok {
		fmt.Fprintf(c.App.ErrWriter, "FAIL the server closed or reset %d of %d connections while they were held\n", res.ok-res.stillOpen, res.ok)
		return cli.Exit("", 1)
	}
	return nil
}

// printConnected prints the run's first two lines: what was asked, and
// how connecting went.
func printConnected(w io.Writer, cfg holdConfig, res holdResult) {
	fmt.Fprintf(w, "hold %s port %s: %d connections from %d worker process(es), %d source address(es)\n",
		cfg.host, joinInts(cfg.ports), cfg.conns, res.workers, max(len(cfg.sources), 1))
	fmt.Fprintf(w, "  connected  %d of %d in %s (%.0f connections/s), %d failed\n",
		res.ok, cfg.conns, human(res.connectTime), res.rate(), res.failed)
}

// perConn is the server's memory per connection: the growth of its RSS
// divided by the connections it holds, which its open files tell, not by
// ours (with several server ports, --pid may be only one of the servers).
func (r holdResult) perConn() (string, int) {
	n := r.held.fds - r.before.fds
	if r.held.err != nil || r.before.err != nil || n <= 0 {
		return "n/a", 0
	}
	return fmt.Sprintf("%.1f KiB", float64(r.held.rss-r.before.rss)/float64(n)/1024), n
}

// printHeld prints what holding showed: still open, the server's memory,
// the client's, and the kernel's.
func printHeld(w io.Writer, cfg holdConfig, res holdResult) {
	fmt.Fprintf(w, "  held       %v, %d of %d still open at the end\n", cfg.hold, res.stillOpen, res.ok)
	if cfg.pid > 0 {
		fmt.Fprintf(w, "  server     before:  %v\n", res.before)
		fmt.Fprintf(w, "             holding: %v\n", res.held)
		if perConn, n := res.perConn(); n > 0 {
			fmt.Fprintf(w, "  memory per connection: %s ((RSS holding - RSS before) / %d connections)\n", perConn, n)
		}
		fmt.Fprintf(w, "  idle CPU   %v of CPU time in the %v hold (%.2f%% of one core)\n",
			res.idleCPU.Round(time.Millisecond), cfg.hold, 100*res.idleCPU.Seconds()/cfg.hold.Seconds())
	}
	if res.clientRSS > 0 {
		fmt.Fprintf(w, "  client     RSS %.1f MiB in %d workers, %.1f KiB per connection\n",
			float64(res.clientRSS)/(1<<20), res.workers, float64(res.clientRSS)/float64(res.ok)/1024)
	}
	fmt.Fprintf(w, "  kernel     %s\n", kernelPerSocket(res.kBefore, res.kHeld))
}

func printHoldMarkdown(w io.Writer, cfg holdConfig, res holdResult) {
	fmt.Fprintln(w, machineLine(os.Args[1:]))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| connections | processes | sources | connected in | connections/s | failed | still open | server RSS before | RSS holding | per connection | threads holding | fds holding |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	rss := func(s serverSample) string {
		if cfg.pid == 0 || s.err != nil {
			return "n/a"
		}
		return fmt.Sprintf("%.1f MiB", float64(s.rss)/(1<<20))
	}
	threads, fds := "n/a", "n/a"
	if cfg.pid > 0 && res.held.err == nil {
		threads, fds = strconv.Itoa(res.held.threads), strconv.Itoa(res.held.fds)
	}
	perConn, _ := res.perConn()
	fmt.Fprintf(w, "| %d | %d | %d | %s | %.0f | %d | %d | %s | %s | %s | %s | %s |\n",
		res.ok, res.workers, max(len(cfg.sources), 1), human(res.connectTime), res.rate(), res.failed, res.stillOpen,
		rss(res.before), rss(res.held), perConn, threads, fds)
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
