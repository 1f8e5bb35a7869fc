package app

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestBadFlagsExitTwoWithOneLine(t *testing.T) {
	s := Server{Name: "stepX", Flags: []cli.Flag{&cli.DurationFlag{Name: "interval"}},
		Run: func(context.Context, *Env) error { t.Error("Run called despite bad flags"); return nil }}
	for _, args := range [][]string{
		{"--bogus"},
		{"--port", "abc"},
		{"--port", "70000"},
		{"--port", "-1"},
		{"notaport"},
		{"--port", "9000", "9001"},
		{"9000", "9001"},
		{"--interval", "soon"},
		{"--log-level", "loud"},
	} {
		var errOut bytes.Buffer
		code := run(s, append([]string{"stepX"}, args...), &errOut)
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "stepX: ") {
			t.Errorf("args %q: exit %d, stderr %q; want exit 2 and one line", args, code, errOut.String())
		}
	}
}

func TestFlagsReachRun(t *testing.T) {
	cases := []struct {
		args []string
		port int
	}{
		{nil, DefaultPort},
		{[]string{"9090"}, 9090},
		{[]string{"--port", "0"}, 0},
		{[]string{"--host", "::1", "--port=7"}, 7},
	}
	for _, tc := range cases {
		var got *Env
		s := Server{Name: "stepX", Run: func(_ context.Context, e *Env) error { got = e; return nil }}
		var errOut bytes.Buffer
		if code := run(s, append([]string{"stepX"}, tc.args...), &errOut); code != 0 {
			t.Fatalf("args %q: exit %d: %s", tc.args, code, errOut.String())
		}
		if got == nil || got.Port != tc.port {
			t.Fatalf("args %q: Run saw %+v, want port %d", tc.args, got, tc.port)
		}
	}
}

func TestRunErrorExitsOne(t *testing.T) {
	s := Server{Name: "stepX", Run: func(context.Context, *Env) error { return context.DeadlineExceeded }}
	var errOut bytes.Buffer
	if code := run(s, []string{"stepX"}, &errOut); code != 1 || !strings.Contains(errOut.String(), "stepX: context deadline exceeded") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// A step validates its own flags in Run and answers with cli.Exit(..., 2):
// that status and line must reach the user unchanged.
func TestRunExitCoderPassesThrough(t *testing.T) {
	s := Server{Name: "stepX", Run: func(context.Context, *Env) error {
		return cli.Exit("stepX: --interval must be >= 0 (see --help)", 2)
	}}
	var errOut bytes.Buffer
	if code := run(s, []string{"stepX"}, &errOut); code != 2 || errOut.String() != "stepX: --interval must be >= 0 (see --help)\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestCPUProfile(t *testing.T) {
	path := t.TempDir() + "/cpu.prof"
	stop, err := CPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile not written: %v", err)
	}
	if _, err := CPUProfile(t.TempDir() + "/no/such/dir/cpu.prof"); err == nil {
		t.Fatal("CPUProfile into a missing directory succeeded")
	}
}
