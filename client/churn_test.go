package main

import (
	"regexp"
	"testing"

	"concurrent-servers-go/client/procstat"
	"concurrent-servers-go/internal/steptest"
)

// churn's count of correct connections matches what the server wrote:
// per connection a '*' and 10 answer bytes, plus one '*' for the probe
// churn makes first.
func TestChurnCountsConnections(t *testing.T) {
	t.Parallel()
	srv := steptest.Start(t, step2)
	before, err := procstat.WrittenBytes(srv.PID())
	if err != nil {
		t.Skipf("cannot read the server's /proc/PID/io: %v", err)
	}
	host, port := hostPort(t, srv.Addr)
	code, out, errs := runClient(t, "churn", "--rate", "500", "--count", "50", "--concurrency", "4", "--size", "10", "--sources", "127.0.0.1-127.0.0.3", host, port)
	if code != 0 {
		t.Fatalf("churn exit %d\n%s%s", code, out, errs)
	}
	if !regexp.MustCompile(`(?m)^  done       50 connections in .*/s, 50 correct, 0 failed$`).MatchString(out) {
		t.Fatalf("unexpected report:\n%s", out)
	}
	after, err := procstat.WrittenBytes(srv.PID())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := after-before, int64(50*(1+10)+1); !wroteExactly(got, want) {
		t.Fatalf("server wrote %d bytes, want %d for 50 connections", got, want)
	}
}

func TestChurnRefused(t *testing.T) {
	host, port := closedPort(t)
	code, out, errs := runClient(t, "churn", "--count", "5", host, port)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	oneLine(t, errs, "connection refused")
}

func TestChurnBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"churn", "--rate", "0", "127.0.0.1", "1"},
		{"churn", "--count", "-1", "127.0.0.1", "1"},
		{"churn", "--concurrency", "0", "127.0.0.1", "1"},
		{"churn", "--size", "x", "127.0.0.1", "1"},
		{"churn", "192.0.2.7", "1"},
	} {
		code, _, errs := runClient(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		oneLine(t, errs, "client churn: ")
	}
}
