package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// c1m refuses a run the machine cannot hold, before starting anything,
// with one line naming the limit. Fed made-up limits, each check fires
// alone.
func TestC1MChecks(t *testing.T) {
	roomy := limits{memAvailable: 64 << 30, fileMax: 10_000_000, nrOpen: 1 << 20, nofile: 20000,
		epollWatches: 10_000_000, portRange: 28232, somaxconn: 4096, synBacklog: 4096, netdevBacklog: 1000}
	plan := func(conns, procs int, keepAlive time.Duration) c1mPlan {
		srcs, _ := parseSources(strconv.Itoa((conns + perSource - 1) / perSource))
		return c1mPlan{step: 6, procs: procs, loops: 1, hold: holdConfig{conns: conns, sources: srcs,
			perProc: 18000, dialing: 64, keepAlive: keepAlive}}
	}
	million := plan(1_000_000, 67, 0)
	if err := checkMachine(million, roomy); err != nil {
		t.Fatalf("a million on a roomy machine: %v", err)
	}
	for _, tc := range []struct {
		name string
		p    c1mPlan
		set  func(*limits)
		want string
	}{
		{"memory", million, func(l *limits) { l.memAvailable = 4 << 30 }, "free memory"},
		{"file-max", million, func(l *limits) { l.fileMax = 1_000_000 }, "fs.file-max"},
		{"nofile for workers", million, func(l *limits) { l.nofile = 10000 }, "RLIMIT_NOFILE"},
		{"nofile for servers", plan(1_000_000, 20, 0), nil, "use more --procs"},
		{"one process", plan(25_000, 1, 0), nil, "one server process holds at most 19936"},
		{"nr_open", million, func(l *limits) { l.nrOpen = 10000 }, "fs.nr_open"},
		{"epoll", million, func(l *limits) { l.epollWatches = 1_000_000 }, "fs.epoll.max_user_watches"},
		{"ports", million, func(l *limits) { l.portRange = 20000 }, "ports per source"},
		{"somaxconn", million, func(l *limits) { l.somaxconn = 16 }, "net.core.somaxconn"},
		{"syn backlog", million, func(l *limits) { l.synBacklog = 16 }, "net.ipv4.tcp_max_syn_backlog"},
		{"keepalive", plan(100_000, 7, time.Second), nil, "net.core.netdev_max_backlog"},
	} {
		l := roomy
		if tc.set != nil {
			tc.set(&l)
		}
		err := checkMachine(tc.p, l)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming %q", tc.name, err, tc.want)
		}
	}
	// Unreadable limits (-1) are not checked, rather than refused.
	unknown := limits{-1, -1, -1, -1, -1, -1, -1, -1, -1}
	if err := checkMachine(million, unknown); err != nil {
		t.Errorf("unreadable limits: %v", err)
	}
}

// The whole run at small scale, through the real binary: a group of
// three step 6 processes, everything held and released, every socket
// closed, exit 0.
func TestC1MSmall(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/net/sockstat"); err != nil {
		t.Skip("needs Linux: /proc/net/sockstat")
	}
	cmd := exec.Command(buildClient(t), "c1m", "--step", "6", "--conns", "300", "--procs", "3", "--per-proc", "100", "--hold", "1s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("c1m: %v\n%s", err, out)
	}
	for _, want := range []string{
		`(?m)^c1m: step6_epoll, 3 process\(es\) x 1 loop\(s\), listening on 127\.0\.0\.1:\d+ \(pid \d+\)$`,
		`(?m)^  connected  300 of 300 in .* 0 failed$`,
		`(?m)^  held       1s, 300 of 300 still open at the end$`,
		`(?m)^             holding: RSS [\d.]+ MiB, \d+ threads, \d+ open files, in 4 processes$`,
		`(?m)^  close      all released at once; server fds back to (\d+) \(from \d+, (\d+) before the run\)`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("output does not match %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`back to (\d+) \(from \d+, (\d+) before`).FindSubmatch(out); m != nil && string(m[1]) != string(m[2]) {
		t.Errorf("server fds back to %s, %s before the run:\n%s", m[1], m[2], out)
	}
}

// Ctrl-C in the middle of the hold stops everything c1m started: the
// server group (parent and children) and the client's worker processes.
func TestC1MInterruptCleansUp(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs Linux: /proc/PID/task/TID/children")
	}
	cmd := exec.Command(buildClient(t), "c1m", "--step", "7", "--conns", "200", "--procs", "2", "--per-proc", "50", "--hold", "5m")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// If the test fails half-way, SIGKILL to c1m still stops what it
	// started: its server and workers get SIGTERM when it dies.
	defer cmd.Process.Kill()
	var mu sync.Mutex
	var out bytes.Buffer
	connected := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.HasPrefix(sc.Text(), "  connected  200 of 200") {
				close(connected)
			}
		}
	}()
	select {
	case <-connected:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("not connected within 2 minutes:\n%s%s", out.String(), errb.String())
	}
	// Everything below c1m now: the server's parent and its two
	// children, and four hold workers.
	started := descendants(cmd.Process.Pid)
	if len(started) < 7 {
		t.Fatalf("c1m has %d descendants %v, want at least 7 (a parent, 2 servers, 4 workers)", len(started), started)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("c1m still running a minute after SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("c1m after SIGINT: %v, want exit status 130\n%s", err, errb.String())
	}
	for _, pid := range started {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("process %d that c1m started is still there (kill 0: %v)", pid, err)
		}
	}
}
