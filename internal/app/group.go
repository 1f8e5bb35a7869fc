package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/sock"
	"concurrent-servers-go/internal/stepproc"
)

// A prefork group is the multi-loop idea one level up. A step with
// --loops N runs N event loops in one process, each with its own listener
// on a shared port; --procs N runs N processes, each with its own loops,
// and their listeners share the port the same way (SO_REUSEPORT), so the
// kernel spreads new connections over processes instead of loops. What a
// process adds is its own file limit: RLIMIT_NOFILE caps one process's
// connections (20000 on the machine of docs/c10k-c1m.md), a group of 55
// holds a million.
//
// The binary starts copies of itself. The environment tells a copy that it
// is a child and which one; child 0 binds first, with the check that
// refuses a second server on a busy port, and the others join the port it
// got. The parent serves nothing: it logs the group's address once, stops
// every child on SIGINT or SIGTERM, and sums what the children report as
// they stop.

// The environment of a child: its index in the group, and the port to
// bind (child 0 gets the one asked for, which may be 0; the others get the
// one child 0 bound).
const (
	groupIndexEnv = "CONCURRENT_SERVERS_GROUP_INDEX"
	groupPortEnv  = "CONCURRENT_SERVERS_GROUP_PORT"
)

// maxProcs bounds --procs: a typo must not fork ten thousand servers.
const maxProcs = 1024

// procsFlag is --procs, made anew for each run: urfave/cli writes into a
// flag while it parses, so two runs must not share one.
func procsFlag() cli.Flag {
	return &cli.IntFlag{Name: "procs", Value: 1,
		Usage: "server processes sharing the port with SO_REUSEPORT (prefork), each with its own loops and open-file limit"}
}

// groupChild reports whether this process is a child of a group, and
// which one.
func groupChild() (index, port int, ok bool) {
	v, set := os.LookupEnv(groupIndexEnv)
	if !set {
		return 0, 0, false
	}
	index, err1 := strconv.Atoi(v)
	port, err2 := strconv.Atoi(os.Getenv(groupPortEnv))
	return index, port, err1 == nil && err2 == nil
}

// joinGroup prepares a child: every listener it opens shares the port,
// and it stops when its parent goes away. The parent holds the write end
// of the child's stdin and never writes; end of file on stdin means the
// parent exited, even by kill -9, on every OS (where Linux's
// PR_SET_PDEATHSIG would be Linux only).
func joinGroup(ctx context.Context, index int) context.Context {
	sock.JoinGroup(index > 0)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx
}

// child is the parent's view of one process of the group.
type child struct {
	index     int
	cmd       *exec.Cmd
	stdin     io.Closer
	listening chan string   // its bound address, once
	exited    chan struct{} // closed once its stderr ends and Wait returned
	err       error         // Wait's result
}

// group is the parent of a prefork group.
type group struct {
	name     string
	log      *slog.Logger
	stderr   io.Writer
	self     string
	args     []string
	children []*child
	stopping atomic.Bool

	mu     sync.Mutex
	totals map[string]map[string]int64 // message -> attribute -> sum
	order  []string                    // messages in the order first seen
}

// runGroup is the parent: it starts procs children, logs the group's
// address, and stops them all when ctx ends or any of them exits.
func runGroup(ctx context.Context, name string, env *Env, args []string, stderr io.Writer, procs int) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find my own executable to start the group: %w", err)
	}
	g := &group{name: name, log: env.Log, stderr: stderr, self: self, args: args,
		totals: map[string]map[string]int64{}}
	defer g.stop()

	// Child 0 first: it alone checks that the port is free, and with
	// --port 0 it picks the port the others join.
	addr, err := g.start(ctx, 0, env.Port)
	if err != nil {
		return err
	}
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("child 0 listens on %q: %w", addr, err)
	}
	port, _ := strconv.Atoi(portStr)
	for i := 1; i < procs; i++ {
		if _, err := g.start(ctx, i, port); err != nil {
			return err
		}
	}
	pids := make([]string, len(g.children))
	for i, c := range g.children {
		pids[i] = strconv.Itoa(c.cmd.Process.Pid)
	}
	// One listening line for the whole group, once every child listens:
	// whoever reads it (a test, the c1m tool) may connect at once.
	env.Log.Info("listening", "addr", addr, "procs", procs)
	env.Log.Info("group started", "pids", strings.Join(pids, ","))

	// Serve until told to stop, or until a child dies on its own: a group
	// missing a member would still accept, but send that member's share
	// of new connections nowhere.
	exited := make(chan *child, len(g.children))
	for _, c := range g.children {
		go func() {
			<-c.exited
			exited <- c
		}()
	}
	select {
	case <-ctx.Done():
		g.stop()
		g.logTotals()
		return nil
	case c := <-exited:
		if g.stopping.Load() {
			return nil
		}
		return fmt.Errorf("child %d (pid %d) exited on its own (%v); stopped the group", c.index, c.cmd.Process.Pid, c.err)
	}
}

// start starts child index on port and waits for its listening line.
func (g *group) start(ctx context.Context, index, port int) (string, error) {
	cmd := exec.Command(g.self, g.args...)
	cmd.Env = append(os.Environ(), groupIndexEnv+"="+strconv.Itoa(index), groupPortEnv+"="+strconv.Itoa(port))
	cmd.Stdout = os.Stdout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting child %d: %w", index, err)
	}
	c := &child{index: index, cmd: cmd, stdin: stdin, listening: make(chan string, 1), exited: make(chan struct{})}
	g.children = append(g.children, c)
	go func() {
		g.read(c, stderr)
		c.err = cmd.Wait()
		close(c.exited)
	}()
	select {
	case addr := <-c.listening:
		return addr, nil
	case <-c.exited:
		// Its last log line said why (a busy port: address already in
		// use); it went to our stderr.
		return "", fmt.Errorf("child %d exited before listening (%v)", index, c.err)
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("child %d did not listen within 30 s", index)
	}
}

// read forwards a child's log to ours, marked with the child's index. It
// keeps back the child's listening line, which the parent replaces with
// one for the group, and sums the numbers in the lines a child logs once
// told to stop (its final counters).
func (g *group) read(c *child, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if addr, ok := stepproc.ListeningAddr(line); ok {
			select {
			case c.listening <- addr:
			default:
			}
			continue
		}
		if g.stopping.Load() {
			g.add(line)
		}
		fmt.Fprintf(g.stderr, "%s child=%d\n", line, c.index)
	}
	io.Copy(io.Discard, r)
}

// add sums the integer attributes of one log line under its message.
func (g *group) add(line string) {
	attrs := logAttrs(line)
	msg := attrs["msg"]
	if msg == "" || msg == "stopped" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, v := range attrs {
		switch k {
		case "time", "level", "msg", "loop", "child", "pid":
			continue // not counters: summing them means nothing
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		if g.totals[msg] == nil {
			g.totals[msg] = map[string]int64{}
			g.order = append(g.order, msg)
		}
		g.totals[msg][k] += n
	}
}

// logTotals logs, per kind of final line, the children's numbers summed.
func (g *group) logTotals() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, msg := range g.order {
		keys := make([]string, 0, len(g.totals[msg]))
		for k := range g.totals[msg] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		args := []any{"of", msg, "procs", len(g.children)}
		for _, k := range keys {
			args = append(args, k, g.totals[msg][k])
		}
		g.log.Info("group totals", args...)
	}
}

// stop sends every child SIGTERM, the signal a lone server stops on, and
// waits for each; one that has not exited within 10 s is killed. It
// returns once every child has exited and its log has been read.
func (g *group) stop() {
	if g.stopping.Swap(true) {
		for _, c := range g.children {
			<-c.exited
		}
		return
	}
	for _, c := range g.children {
		// ESRCH: it exited already; Wait still reaps it.
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(10 * time.Second)
	for _, c := range g.children {
		select {
		case <-c.exited:
		case <-deadline:
			g.log.Warn("child did not stop within 10 s; killing it", "child", c.index, "pid", c.cmd.Process.Pid)
			c.cmd.Process.Kill()
			<-c.exited
		}
		c.stdin.Close()
	}
}

// logAttrs splits a log/slog text line into its key=value pairs; quoted
// values are unquoted.
func logAttrs(line string) map[string]string {
	attrs := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(k, " ") {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		attrs[k] = v
		line = rest
	}
	return attrs
}

// errGroupProcs is --procs out of range.
var errGroupProcs = errors.New("--procs must be between 1 and " + strconv.Itoa(maxProcs))
