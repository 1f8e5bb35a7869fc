package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"concurrent-servers-go/internal/procstat"
	"concurrent-servers-go/internal/steptest"
)

// hold opens its connections from several worker processes (it re-runs
// its own executable), so this test runs the real client binary. While it
// holds, the server's open files grow by exactly the connections hold
// says it opened, and hold's own report agrees.
func TestHoldMatchesServerFDs(t *testing.T) {
	t.Parallel()
	srv := steptest.Start(t, step2)
	client := buildClient(t)
	host, port := hostPort(t, srv.Addr)
	before, err := procstat.FDs(srv.PID())
	if err != nil {
		t.Skipf("cannot count the server's fds: %v", err)
	}
	const conns = 60
	// 25 per process: three workers, 25 + 25 + 10.
	cmd := exec.Command(client, "hold", "--conns", strconv.Itoa(conns), "--per-proc", "25", "--sources", "3",
		"--hold", "1500ms", "--pid", strconv.Itoa(srv.PID()), host, port)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Watch the server from outside while hold holds.
	seen := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && seen != before+conns; {
		seen, _ = procstat.FDs(srv.PID())
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("hold: %v\n%s%s", err, out.String(), errb.String())
	}
	if seen != before+conns {
		t.Fatalf("server had %d fds before and %d while holding; want %d more\n%s", before, seen, conns, out.String())
	}
	for _, want := range []string{
		`(?m)^hold .*: 60 connections from 3 worker process\(es\), 3 source address\(es\)$`,
		`(?m)^  connected  60 of 60 in .* 0 failed$`,
		`(?m)^  held       1.5s, 60 of 60 still open at the end$`,
		`(?m)^             holding: RSS [\d.]+ MiB, \d+ threads, ` + strconv.Itoa(before+conns) + ` open files$`,
		`(?m)^  memory per connection: -?[\d.]+ KiB \(\(RSS holding - RSS before\) / 60 connections\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output does not match %q:\n%s", want, out.String())
		}
	}
	// Every worker closed its connections on release.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _ := procstat.FDs(srv.PID()); n == before {
			return
		}
	}
	n, _ := procstat.FDs(srv.PID())
	t.Fatalf("server still has %d fds after hold ended, had %d before", n, before)
}

// buildClient builds the client binary, once per test run, for the tests
// that must run it as its own process.
func buildClient(t *testing.T) string {
	return steptest.Build(t, "concurrent-servers-go/client")
}

func TestHoldRefused(t *testing.T) {
	host, port := closedPort(t)
	code, out, errs := runClient(t, "hold", "--conns", "5", host, port)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	oneLine(t, errs, "connection refused")
}

func TestHoldBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"hold", "--conns", "0", "127.0.0.1", "1"},
		{"hold", "--per-proc", "30000", "127.0.0.1", "1"},
		{"hold", "--conns", "100000", "127.0.0.1", "1"},
		{"hold", "--sources", "10.0.0.1", "127.0.0.1", "1"},
		{"hold", "--sources", "127.0.0.9-127.0.0.1", "127.0.0.1", "1"},
		{"hold", "127.0.0.1", "1,x"},
		{"hold", "--bad", "127.0.0.1", "1"},
	} {
		code, _, errs := runClient(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		oneLine(t, errs, "client hold: ")
	}
}

// A server that drops connections while they are held (here: closes each
// 100 ms after its '*') is caught: hold reports how many are still open
// and fails.
func TestHoldSeesDroppedConnections(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("*"))
			time.AfterFunc(100*time.Millisecond, func() { c.Close() })
		}
	}()
	host, port := hostPort(t, ln.Addr().String())
	cmd := exec.Command(buildClient(t), "hold", "--conns", "5", "--hold", "600ms", host, port)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("hold: %v, want exit status 1\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "held       600ms, 0 of 5 still open at the end") {
		t.Fatalf("output:\n%s", out.String())
	}
	oneLine(t, errb.String(), "closed or reset 5 of 5 connections")
}

// The barrier: the hold starts only when every worker is connected, and
// all are released together. One connection's '*' comes a second late,
// so one worker is ready a second after the others; no connection of any
// worker may be closed before that '*' plus the hold, and the closes of
// all three workers come together.
func TestHoldBarrier(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var lateAck time.Time
	var closes []time.Time
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if n == 5 {
					time.Sleep(time.Second)
				}
				c.Write([]byte("*"))
				if n == 5 {
					mu.Lock()
					lateAck = time.Now()
					mu.Unlock()
				}
				io.Copy(io.Discard, c) // until the client closes
				mu.Lock()
				closes = append(closes, time.Now())
				mu.Unlock()
			}()
		}
	}()
	host, port := hostPort(t, ln.Addr().String())
	const hold = 800 * time.Millisecond
	cmd := exec.Command(buildClient(t), "hold", "--conns", "12", "--per-proc", "4", "--hold", hold.String(), host, port)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("hold: %v\n%s%s", err, out.String(), errb.String())
	}
	// The probe connection is closed at once: it is not held.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(closes)
		mu.Unlock()
		if n == 13 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(closes) != 13 {
		t.Fatalf("server saw %d closes, want 12 held + 1 probe\n%s", len(closes), out.String())
	}
	slices.SortFunc(closes, func(a, b time.Time) int { return a.Compare(b) })
	held := closes[1:] // closes[0] is the probe's
	if first := held[0]; first.Before(lateAck.Add(hold)) {
		t.Errorf("a connection was closed %v after the last worker was connected; the hold is %v",
			first.Sub(lateAck), hold)
	}
	if spread := held[len(held)-1].Sub(held[0]); spread > hold {
		t.Errorf("the held connections were closed over %v, more than the hold (%v): not released together", spread, hold)
	}
	if !strings.Contains(out.String(), "12 of 12 still open at the end") {
		t.Errorf("output:\n%s", out.String())
	}
}
