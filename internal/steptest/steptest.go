// Package steptest starts a step's server as its own process, the way a
// learner runs it, for end-to-end tests: build the binary once per test run
// (with the race detector when the tests have it), start it on --port 0,
// read the address it logs, and stop it with SIGTERM, failing the test if it
// does not exit cleanly.
//
// A separate process, rather than calling the step's code in the test, is
// what lets tests send it signals, lower its open-file limit, count its open
// fds and read its memory, and it tests main() too.
package steptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concurrent-servers-go/internal/stepproc"
)

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{} // package -> binary
)

// Build compiles the main package pkg (an import path such as
// "concurrent-servers-go/step1_sequential") once per test process and
// returns the binary's path. Call Cleanup from TestMain to remove it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	if builtDir == "" {
		d, err := os.MkdirTemp("", "steptest-")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = d
	}
	bin := filepath.Join(builtDir, strings.ReplaceAll(pkg, "/", "_"))
	if err := stepproc.Build(context.Background(), "", pkg, bin, RaceEnabled); err != nil {
		t.Fatal(err)
	}
	built[pkg] = bin
	return bin
}

// Cleanup removes the binaries Build made; call it from TestMain after m.Run.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
}

// Server is a running step server.
type Server struct {
	Addr string // host:port it listens on
	Cmd  *exec.Cmd

	proc    *stepproc.Proc
	mu      sync.Mutex
	log     bytes.Buffer
	mayExit atomic.Bool
}

// MayExit tells Stop that the server is expected to end on its own during
// the test (a case that documents how a server dies), so an exit before
// Stop is not reported as a failure.
func (s *Server) MayExit() { s.mayExit.Store(true) }

// Start builds pkg and runs it with --port 0 and the extra args, waits until
// it logs its address, and arranges for Stop at the end of the test.
func Start(t testing.TB, pkg string, args ...string) *Server {
	t.Helper()
	return StartCmd(t, exec.Command(Build(t, pkg), append([]string{"--port", "0"}, args...)...))
}

// StartCmd is Start for a command the caller prepared (to set its
// environment or resource limits, say). It must log "listening addr=...".
func StartCmd(t testing.TB, cmd *exec.Cmd) *Server {
	t.Helper()
	s := &Server{Cmd: cmd}
	if RaceEnabled && cmd.Env == nil && os.Getenv("GORACE") == "" {
		// A race-built program sleeps a second at exit by default (to let
		// reports flush); over a suite of hundreds of server stops that is
		// minutes of nothing.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	p, err := stepproc.Start(context.Background(), cmd, 20*time.Second, func(line string) {
		s.mu.Lock()
		s.log.WriteString(line + "\n")
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("%s: %v:\n%s", cmd.Path, err, s.Log())
	}
	s.proc, s.Addr = p, p.Addr
	t.Cleanup(func() {
		if err := s.Stop(5 * time.Second); err != nil {
			t.Errorf("stopping %s: %v\n%s", filepath.Base(cmd.Path), err, s.Log())
		}
	})
	return s
}

// PID is the server's process id.
func (s *Server) PID() int { return s.Cmd.Process.Pid }

// Log is everything the server printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Stop sends SIGTERM and waits up to grace for a clean exit (status 0). It
// kills the server and returns an error if it takes longer or fails; a
// second Stop returns the first one's verdict.
func (s *Server) Stop(grace time.Duration) error {
	if s.mayExit.Load() && s.Exited() {
		return nil
	}
	if err := s.proc.Stop(grace); err != nil {
		if errors.Is(err, stepproc.ErrNoExit) {
			return err
		}
		return fmt.Errorf("exit after SIGTERM: %v", err)
	}
	return nil
}

// Exited reports whether the server process has ended.
func (s *Server) Exited() bool { return s.proc.Exited() }

// WaitLog waits until the server's log matches re, for up to d.
func (s *Server) WaitLog(re *regexp.Regexp, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		if re.MatchString(s.Log()) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
