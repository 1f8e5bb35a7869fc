package main

import (
	"bytes"
	"errors"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"concurrent-servers-go/client/procstat"
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
