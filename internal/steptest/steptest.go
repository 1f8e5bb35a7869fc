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
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
	args := []string{"build", "-o", bin}
	if RaceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
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

	mu      sync.Mutex
	log     bytes.Buffer
	done    chan struct{}
	err     error // Wait's result, once done is closed
	mayExit atomic.Bool
}

// MayExit tells Stop that the server is expected to end on its own during
// the test (a case that documents how a server dies), so an exit before
// Stop is not reported as a failure.
func (s *Server) MayExit() { s.mayExit.Store(true) }

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

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
	s := &Server{Cmd: cmd, done: make(chan struct{})}
	if RaceEnabled && cmd.Env == nil && os.Getenv("GORACE") == "" {
		// A race-built program sleeps a second at exit by default (to let
		// reports flush); over a suite of hundreds of server stops that is
		// minutes of nothing.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = cmd.Wait()
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case s.Addr = <-addr:
	case <-s.done:
		t.Fatalf("%s exited before listening (%v):\n%s", cmd.Path, s.err, s.Log())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s did not log its address within 20s:\n%s", cmd.Path, s.Log())
	}
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
	if !s.Exited() {
		s.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.done:
	case <-time.After(grace):
		s.Cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("no exit within %v of SIGTERM", grace)
	}
	if s.err != nil {
		return fmt.Errorf("exit after SIGTERM: %v", s.err)
	}
	return nil
}

// Exited reports whether the server process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

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
