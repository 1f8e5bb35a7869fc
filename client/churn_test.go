package main

import (
	"io"
	"regexp"
	"strings"
	"testing"

	"concurrent-servers-go/internal/procstat"
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

// A duration without a unit is answered with what to type, for every
// duration flag of every command (the root's included), by long name,
// short name or --flag=value, and a value that is no number at all says
// what a duration looks like. Anything else keeps the flag package's words.
func TestDurationWithoutUnit(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-d", "3"}, "client bench: -d 3 has no unit: type -d 3s for seconds"},
		{[]string{"bench", "--duration=2.5"}, "client bench: --duration 2.5 has no unit: type --duration 2.5s for seconds"},
		{[]string{"bench", "--warmup", "1"}, "--warmup 1s"},
		{[]string{"bench", "--connect-timeout", "5"}, "--connect-timeout 5s"},
		{[]string{"churn", "-d", "3"}, "client churn: -d 3 has no unit: type -d 3s"},
		{[]string{"churn", "--timeout", "2"}, "--timeout 2s"},
		{[]string{"hold", "--hold", "10"}, "client hold: --hold 10 has no unit: type --hold 10s"},
		{[]string{"hold", "--connect-timeout", "10"}, "--connect-timeout 10s"},
		{[]string{"hold", "--max-connect-time", "120"}, "--max-connect-time 120s"},
		{[]string{"compare", "--budget", "60"}, "client compare: --budget 60 has no unit: type --budget 60s"},
		{[]string{"--timeout", "3"}, "client: --timeout 3 has no unit: type --timeout 3s"},
		{[]string{"bench", "-d", "ten"}, `-d "ten" is not a duration; write it like 10s`},
		{[]string{"bench", "-c", "1.5"}, `invalid value "1.5" for flag -c: parse error`},
	} {
		code, out, errs := runClient(t, append(tc.args, "127.0.0.1", "1")...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want 2 and nothing", tc.args, code, out)
		}
		if strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: want one line containing %q, got:\n%s", tc.args, tc.want, errs)
		}
	}
}

// One letter means one thing in every load tool: -c connections open at
// once, -n connections in all, -s bytes per message, -d the run's length.
// Every subcommand's flags are checked, so a new tool that gives a letter
// another meaning fails here.
func TestLoadToolsShareShortFlags(t *testing.T) {
	meaning := map[string]string{"c": "at once", "n": "in all", "s": "message", "d": "duration"}
	want := map[string]map[string]string{ // tool -> letter -> the long flag it must be
		"bench": {"c": "conns", "s": "size", "d": "duration"},
		"churn": {"c": "concurrency", "n": "count", "s": "size", "d": "duration"},
		"hold":  {"c": "conns"},
		"c1m":   {"c": "conns"}, // connections held, all at once, as in hold
	}
	var code int
	app := newApp(io.Discard, io.Discard, &code)
	for _, cmd := range app.Commands {
		letters := map[string]string{}
		for _, f := range cmd.Flags {
			names := f.Names()
			for _, a := range names[1:] {
				if len(a) == 1 {
					letters[a] = names[0]
				}
			}
		}
		for l, long := range want[cmd.Name] {
			if letters[l] != long {
				t.Errorf("client %s: -%s is %q, want --%s (-%s means %s)", cmd.Name, l, letters[l], long, l, meaning[l])
			}
		}
		for l, long := range letters {
			if _, known := meaning[l]; known && want[cmd.Name][l] == "" {
				t.Errorf("client %s: -%s is --%s, but -%s means %s in the load tools", cmd.Name, l, long, l, meaning[l])
			}
		}
	}
}

// churn's -c and -n reach the run: 12 connections, at most 3 at once.
func TestChurnShortFlags(t *testing.T) {
	t.Parallel()
	srv := steptest.Start(t, step2)
	host, port := hostPort(t, srv.Addr)
	code, out, errs := runClient(t, "churn", "-n", "12", "-c", "3", "-s", "5", "-d", "20s", "--rate", "1000", host, port)
	if code != 0 {
		t.Fatalf("churn exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, ", 3 at once, one 5-byte message each") ||
		!regexp.MustCompile(`(?m)^  done       12 connections in .*, 12 correct, 0 failed$`).MatchString(out) {
		t.Fatalf("unexpected report:\n%s", out)
	}
}
