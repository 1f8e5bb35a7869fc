package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/stepproc"
)

// c1m is the whole million-connection run as one command: check that the
// machine can hold N, start the server (a prefork group for steps 6 and 7,
// enough processes that each stays under its open-file limit), hold N
// connections for --hold, report, release them all at once and time the
// close storm, then stop everything it started, on Ctrl-C too.

// c1mSteps are the steps c1m can run, and whether each can run as a group.
var c1mSteps = map[int]struct {
	pkg   string
	group bool
}{
	2: {"./step2_thread_per_conn", false},
	6: {"./step6_epoll", true},
	7: {"./step7_eventloop_lib", true},
}

// Per-connection figures the checks use, measured on the machine of
// docs/c10k-c1m.md section 10 and rounded up: a loopback connection is two
// sockets, about 4 KiB of kernel memory each (slab caches TCP,
// sock_inode_cache, dentry, filp, eventpoll), plus the server's and the
// client's user memory. serverShare is how full c1m fills a server
// process's file limit: SO_REUSEPORT spreads by a hash, not evenly, so
// each process needs headroom over conns/procs.
const (
	memPerConn  = 12 << 10
	memSlack    = 1 << 30
	serverShare = 0.75
	fdSlackProc = 64
	// perSource is the connections c1m makes from one source address to
	// the one server port: below half the ephemeral range (28232 ports
	// here, so 14116). Since Linux 4.6 connect() tries the even ports of
	// the range first and leaves the odd ones to bind(); once a source
	// has used its even half, every further connect() scans those ~14000
	// taken ports before it finds a free odd one. A million connections
	// from 40 sources (25000 each) slowed to ~130 connections a second
	// at 562,000, 40 x 14,116, with the CPUs in the kernel.
	perSource = 12000
)

func c1mCommand() *cli.Command {
	return &cli.Command{
		Name:  "c1m",
		Usage: "start a server (group), hold N connections for a while, report, clean up: the C1M run in one command",
		Description: "c1m checks the machine first (free memory, fs.file-max, fs.nr_open, the open-file limit,\n" +
			"fs.epoll.max_user_watches, ephemeral ports per source address, net.core.somaxconn,\n" +
			"net.core.netdev_max_backlog) and refuses with one line naming the limit that would stop N.\n" +
			"It then builds the step, starts it with --procs so that no process passes its file limit,\n" +
			"holds --conns connections (client hold, from enough source addresses), releases them all at\n" +
			"once and waits until every socket is closed. Everything it started is stopped at the end,\n" +
			"and on Ctrl-C.\n\n" +
			"   go run ./client c1m --step 6 --conns 1000000 --hold 60s",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "step", Value: 6, Usage: "the step to run: 6 or 7 (as a prefork group), or 2 (one process)"},
			&cli.IntFlag{Name: "conns", Aliases: []string{"c"}, Value: 1_000_000, Usage: "connections to hold"},
			&cli.DurationFlag{Name: "hold", Value: 60 * time.Second, Usage: "how long to hold them once all are connected"},
			&cli.IntFlag{Name: "procs", Usage: "server processes (default: enough that each fills 3/4 of its open-file limit)"},
			&cli.IntFlag{Name: "loops", Value: 1, Usage: "event loops per server process (steps 6 and 7)"},
			&cli.IntFlag{Name: "per-proc", Value: 18000, Usage: "connections per client worker process"},
			&cli.IntFlag{Name: "sources", Usage: "source addresses 127.0.0.1... (default: one per 12000 connections, below half the port range)"},
			&cli.IntFlag{Name: "dialing", Value: 32, Usage: "connect() calls in flight per client worker"},
			// A SYN that gets no answer is sent again after 1, 3, 7, 15
			// and 31 s. With both CPUs busy connecting a million, a few
			// dozen SYNs are retransmitted; 30 s lets the fourth try land.
			// Those retransmits are not hidden: TCPSynRetrans counts them.
			&cli.DurationFlag{Name: "connect-timeout", Value: 30 * time.Second, Usage: "give up on a connection whose '*' takes longer"},
			&cli.DurationFlag{Name: "max-connect-time", Value: 6 * time.Minute, Usage: "stop connecting after this long"},
			&cli.DurationFlag{Name: "keepalive", Usage: "TCP keepalive of the held connections (0: off; see client hold --help)"},
			&cli.StringFlag{Name: "root", Usage: "the repository to build the step from (default: the Go module here)"},
		},
		OnUsageError: onUsageError("c1m"),
		Action:       c1m,
	}
}

// c1mPlan is what c1m will start, from its flags and the machine.
type c1mPlan struct {
	step     int
	procs    int // server processes; 1 for step 2
	loops    int
	hold     holdConfig
	serverFD uint64 // the open-file limit of each server process
}

func c1m(c *cli.Context) error {
	const cmd = "c1m"
	p, err := planC1M(c)
	if err != nil {
		return err
	}
	if err := checkMachine(p, readLimits()); err != nil {
		return failErr(cmd, "%v", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = runC1M(ctx, c.App.Writer, c.App.ErrWriter, c.String("root"), p)
	switch {
	case errors.Is(err, errInterrupted) || (err != nil && ctx.Err() != nil):
		return cli.Exit("client c1m: interrupted; every process it started is stopped", 130)
	case errors.Is(err, errHoldFailed):
		return cli.Exit("", 1)
	case err != nil:
		return failErr(cmd, "%v", err)
	}
	return nil
}

func planC1M(c *cli.Context) (c1mPlan, error) {
	const cmd = "c1m"
	p := c1mPlan{step: c.Int("step"), loops: c.Int("loops")}
	st, ok := c1mSteps[p.step]
	if !ok {
		return p, usageErr(cmd, "--step %d: want 2, 6 or 7", p.step)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return p, failErr(cmd, "getrlimit: %v", err)
	}
	p.serverFD = uint64(rl.Max) // a server raises its soft limit to the hard one
	conns := c.Int("conns")
	p.procs = c.Int("procs")
	if p.procs == 0 {
		p.procs = 1
		if st.group {
			per := int(float64(p.serverFD) * serverShare)
			p.procs = max(1, (conns+per-1)/per)
		}
	}
	sources := c.Int("sources")
	if sources == 0 {
		sources = (conns + perSource - 1) / perSource
	}
	switch {
	case conns < 1 || conns > 2_000_000:
		return p, usageErr(cmd, "--conns %d: want 1 to 2000000", conns)
	case p.procs < 1 || p.procs > 1024:
		return p, usageErr(cmd, "--procs %d: want 1 to 1024", p.procs)
	case p.procs > 1 && !st.group:
		return p, usageErr(cmd, "--procs: step %d runs as one process (a goroutine per connection has no group mode)", p.step)
	case p.loops < 1 || p.loops > 64:
		return p, usageErr(cmd, "--loops %d: want 1 to 64", p.loops)
	case sources < 1 || sources > 254:
		return p, usageErr(cmd, "--sources %d: want 1 to 254 (127.0.0.1 to 127.0.0.254)", sources)
	}
	srcs, _ := parseSources(strconv.Itoa(sources))
	p.hold = holdConfig{
		host: "127.0.0.1", conns: conns, sources: srcs, perProc: c.Int("per-proc"),
		dialing: c.Int("dialing"), timeout: c.Duration("connect-timeout"),
		maxConnect: c.Duration("max-connect-time"), hold: c.Duration("hold"),
		keepAlive: c.Duration("keepalive"),
	}
	h := p.hold
	switch {
	case h.perProc < 1 || h.perProc > 19000:
		return p, usageErr(cmd, "--per-proc %d: want 1 to 19000", h.perProc)
	case h.dialing < 1 || h.dialing > 4096:
		return p, usageErr(cmd, "--dialing %d: want 1 to 4096", h.dialing)
	case h.timeout <= 0 || h.maxConnect <= 0:
		return p, usageErr(cmd, "--connect-timeout and --max-connect-time must be above 0")
	case h.hold < 0 || h.hold > time.Hour:
		return p, usageErr(cmd, "--hold %v: want 0 to 1h", h.hold)
	case h.keepAlive < 0 || (h.keepAlive > 0 && h.keepAlive < time.Second):
		return p, usageErr(cmd, "--keepalive %v: want 0 (off) or at least 1s", h.keepAlive)
	}
	return p, nil
}

// limits is what checkMachine reads; -1 means unreadable (not checked).
type limits struct {
	memAvailable  int64 // bytes, /proc/meminfo MemAvailable
	fileMax       int64 // fs.file-max: open files, the whole system
	nrOpen        int64 // fs.nr_open: the most RLIMIT_NOFILE may be
	nofile        int64 // this process's hard RLIMIT_NOFILE (servers and workers inherit it)
	epollWatches  int64 // fs.epoll.max_user_watches: epoll registrations per user
	portRange     int64 // ephemeral ports, net.ipv4.ip_local_port_range
	somaxconn     int64 // net.core.somaxconn: the longest accept queue
	synBacklog    int64 // net.ipv4.tcp_max_syn_backlog: half-open connections per listener
	netdevBacklog int64 // net.core.netdev_max_backlog: packets queued per CPU
}

func readLimits() limits {
	num := func(path string, field int) int64 {
		b, err := os.ReadFile(path)
		if err != nil {
			return -1
		}
		f := strings.Fields(string(b))
		if field >= len(f) {
			return -1
		}
		n, err := strconv.ParseInt(f[field], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	l := limits{
		memAvailable: -1, nofile: -1, portRange: -1,
		fileMax:       num("/proc/sys/fs/file-max", 0),
		nrOpen:        num("/proc/sys/fs/nr_open", 0),
		epollWatches:  num("/proc/sys/fs/epoll/max_user_watches", 0),
		somaxconn:     num("/proc/sys/net/core/somaxconn", 0),
		synBacklog:    num("/proc/sys/net/ipv4/tcp_max_syn_backlog", 0),
		netdevBacklog: num("/proc/sys/net/core/netdev_max_backlog", 0),
	}
	if lo, hi := num("/proc/sys/net/ipv4/ip_local_port_range", 0), num("/proc/sys/net/ipv4/ip_local_port_range", 1); lo > 0 && hi >= lo {
		l.portRange = hi - lo + 1
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					l.memAvailable = kb << 10
				}
			}
		}
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		l.nofile = int64(rl.Max)
	}
	return l
}

// checkMachine refuses a plan this machine cannot hold, naming the limit
// in one line. Each check is the wall a run would otherwise hit half-way.
func checkMachine(p c1mPlan, l limits) error {
	n := int64(p.hold.conns)
	workers := (n + int64(p.hold.perProc) - 1) / int64(p.hold.perProc)
	perServer := (n + int64(p.procs) - 1) / int64(p.procs)
	listeners := int64(p.procs * p.loops)
	if p.step == 2 {
		listeners = 1
	}
	inFlight := workers * int64(p.hold.dialing)
	// In a group the hash spreads connections unevenly: leave each
	// process a tenth of headroom.
	const spread = 0.9
	type check struct {
		bad bool
		msg string
	}
	for _, c := range []check{
		{l.memAvailable >= 0 && l.memAvailable < n*memPerConn+memSlack, fmt.Sprintf(
			"free memory: %d connections need about %.1f GiB (%d KiB each, both ends, kernel and user), MemAvailable is %.1f GiB",
			n, float64(n*memPerConn+memSlack)/(1<<30), memPerConn>>10, float64(l.memAvailable)/(1<<30))},
		{l.fileMax >= 0 && l.fileMax < 2*n+10000, fmt.Sprintf(
			"fs.file-max is %d: %d connections are %d open files (both ends on this machine); raise it with sysctl fs.file-max=%d",
			l.fileMax, n, 2*n, 2*n+100000)},
		{l.nofile >= 0 && l.nofile < int64(p.hold.perProc)+fdSlackProc, fmt.Sprintf(
			"RLIMIT_NOFILE (hard) is %d: a client worker of --per-proc %d connections needs %d; lower --per-proc",
			l.nofile, p.hold.perProc, p.hold.perProc+fdSlackProc)},
		{p.procs == 1 && l.nofile >= 0 && perServer > l.nofile-fdSlackProc, fmt.Sprintf(
			"RLIMIT_NOFILE (hard) is %d: one server process holds at most %d connections, not %d (steps 6 and 7 take --procs)",
			l.nofile, l.nofile-fdSlackProc, perServer)},
		{p.procs > 1 && l.nofile >= 0 && float64(perServer) > float64(l.nofile-fdSlackProc)*spread, fmt.Sprintf(
			"RLIMIT_NOFILE (hard) is %d: %d server processes would hold %d connections each, and SO_REUSEPORT does not split evenly; use more --procs",
			l.nofile, p.procs, perServer)},
		{l.nrOpen >= 0 && l.nofile > l.nrOpen, fmt.Sprintf("fs.nr_open is %d, below RLIMIT_NOFILE %d", l.nrOpen, l.nofile)},
		{l.epollWatches >= 0 && l.epollWatches < 2*n+10000, fmt.Sprintf(
			"fs.epoll.max_user_watches is %d: the servers' epoll and the client's Go poller register %d sockets",
			l.epollWatches, 2*n)},
		{l.portRange >= 0 && int64(len(p.hold.sources))*(l.portRange/2) < n, fmt.Sprintf(
			"ports per source: %d source address(es) x %d ephemeral ports (half of net.ipv4.ip_local_port_range, the half connect() searches first) are fewer than %d connections to one port; raise --sources",
			len(p.hold.sources), l.portRange/2, n)},
		{l.somaxconn >= 0 && inFlight > listeners*l.somaxconn, fmt.Sprintf(
			"net.core.somaxconn is %d: %d connects in flight (%d workers x --dialing %d) could overflow %d accept queue(s), and a dropped SYN costs a 1 s retransmit; lower --dialing",
			l.somaxconn, inFlight, workers, p.hold.dialing, listeners)},
		{l.synBacklog >= 0 && inFlight > listeners*l.synBacklog, fmt.Sprintf(
			"net.ipv4.tcp_max_syn_backlog is %d: %d connects in flight could overflow %d SYN queue(s); lower --dialing",
			l.synBacklog, inFlight, listeners)},
		// Keepalive probes of idle connections pass through loopback's
		// per-CPU backlog; at ten backlogs' worth a second we saw it
		// overflow (docs/results/c1m-keepalive-20261202.txt).
		{p.hold.keepAlive > 0 && l.netdevBacklog >= 0 &&
			float64(n)/p.hold.keepAlive.Seconds() > float64(10*l.netdevBacklog), fmt.Sprintf(
			"net.core.netdev_max_backlog is %d: --keepalive %v makes %d connections send %.0f probes a second, and dropped probes abort connections; use --keepalive 0",
			l.netdevBacklog, p.hold.keepAlive, n, float64(n)/p.hold.keepAlive.Seconds())},
	} {
		if c.bad {
			return errors.New(c.msg)
		}
	}
	return nil
}

// errHoldFailed is a run that went to the end but did not hold everything;
// the FAIL lines are printed already.
var errHoldFailed = errors.New("hold failed")

// runC1M builds and starts the server, holds, releases, times the close
// storm and stops the server.
func runC1M(ctx context.Context, stdout, stderr io.Writer, root string, p c1mPlan) error {
	if root == "" {
		var err error
		if root, err = moduleRoot(ctx); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "c1m-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st := c1mSteps[p.step]
	bin := filepath.Join(dir, filepath.Base(st.pkg))
	fmt.Fprintf(stderr, "c1m: building %s\n", st.pkg)
	if err := stepproc.Build(ctx, root, st.pkg, bin, false); err != nil {
		return err
	}
	args := []string{"--port", "0"}
	if st.group {
		args = append(args, "--procs", strconv.Itoa(p.procs), "--loops", strconv.Itoa(p.loops))
	}
	// The server must not outlive c1m, even one killed by SIGKILL: on
	// Linux the kernel sends it SIGTERM then, and a group's parent stops
	// its children.
	server := exec.Command(bin, args...)
	dieWithParent(server)
	srv, err := stepproc.Start(ctx, server, 2*time.Minute, func(line string) {
		// The server's warnings and errors matter (EMFILE, a child that
		// died); its info lines are its own business.
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			fmt.Fprintln(stderr, "server: "+line)
		}
	})
	if err != nil {
		return fmt.Errorf("starting %s: %v", st.pkg, err)
	}
	defer func() {
		// SIGTERM to a group's parent stops every child first.
		if err := srv.Stop(time.Minute); err != nil {
			fmt.Fprintf(stderr, "c1m: stopping the server: %v\n", err)
		}
	}()
	_, port, _ := net.SplitHostPort(srv.Addr)
	p.hold.ports = []int{atoi(port)}
	p.hold.pid = srv.PID()
	fmt.Fprintf(stdout, "c1m: %s, %d process(es) x %d loop(s), listening on %s (pid %d)\n",
		filepath.Base(st.pkg), p.procs, p.loops, srv.Addr, srv.PID())
	fmt.Fprintf(stdout, "\n$ client hold --conns %d --sources %d --per-proc %d --dialing %d --keepalive %v --hold %v --pid %d 127.0.0.1 %s\n",
		p.hold.conns, len(p.hold.sources), p.hold.perProc, p.hold.dialing, p.hold.keepAlive, p.hold.hold, srv.PID(), port)

	start := time.Now()
	net0 := readNetCounters()
	r, res, err := runHold(ctx, p.hold, stderr, func(res holdResult) { printConnected(stdout, p.hold, res) })
	defer r.release()
	if err != nil {
		return err
	}
	if res.ok == 0 {
		return fmt.Errorf("no connection succeeded: %s", errSummary(r.errCounts, r.errLines))
	}
	printHeld(stdout, p.hold, res)
	failed := res.failed > 0 || res.stillOpen < res.ok
	if res.failed > 0 {
		fmt.Fprintln(stderr, "FAIL "+errSummary(r.errCounts, r.errLines))
	}
	if res.stillOpen < res.ok {
		fmt.Fprintf(stderr, "FAIL the server closed or reset %d of %d connections while they were held\n", res.ok-res.stillOpen, res.ok)
	}
	closeStorm(ctx, stdout, r, p.hold.pid, res)
	fmt.Fprintf(stdout, "  total      %s from the first connect to every socket closed\n", human(time.Since(start)))
	fmt.Fprintf(stdout, "  counters   %s\n", netDelta(net0, readNetCounters()))
	if failed {
		return errHoldFailed
	}
	return nil
}

// closeStorm releases every connection at once and waits until the server
// holds none of them: its open files back to what it had before the run.
// The kernel's socket count tells first, cheaply (counting a group's open
// files reads a directory entry per fd); the open files confirm.
func closeStorm(ctx context.Context, w io.Writer, r *holdRun, pid int, res holdResult) {
	cpu0 := serverCPU(pid)
	t0 := time.Now()
	released := make(chan struct{})
	go func() {
		r.release()
		close(released)
	}()
	limit := time.Now().Add(2 * time.Minute)
	var after serverSample
	// First the cheap reading, until the kernel's socket count is back
	// near where it was (other programs on the machine have sockets
	// too); then the server's open files, every 250 ms.
	for ctx.Err() == nil && time.Now().Before(limit) {
		k := sampleKernel()
		if k.sockErr != nil || k.tcpInuse <= res.kBefore.tcpInuse+1000 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		after = sampleServer(pid)
		if after.err != nil || after.fds <= res.before.fds || ctx.Err() != nil || time.Now().After(limit) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	<-released
	fmt.Fprintf(w, "  close      all released at once; server fds back to %d (from %d, %d before the run) %s later, server CPU %v\n",
		after.fds, res.held.fds, res.before.fds, human(elapsed), (after.cpu - cpu0).Round(time.Millisecond))
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
