// Package stepproc builds a step's server, starts it on a free port and
// reads the address it logs: the one piece that both the tests' harness
// (internal/steptest) and the client's compare command need, so that both
// agree on how a step announces itself ("msg=listening addr=...").
package stepproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// BuildError is a go build that failed, with what the go command printed.
type BuildError struct {
	Pkg    string
	Err    error
	Output string
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("go build %s: %v\n%s", e.Pkg, e.Err, e.Output)
}

// FirstError is the first compiler message: go build prints "# pkg" before
// the first error, and the line after it is the one a reader wants.
func (e *BuildError) FirstError() string {
	lines := strings.Split(strings.TrimSpace(e.Output), "\n")
	if len(lines) > 1 && strings.HasPrefix(lines[0], "#") {
		return lines[1]
	}
	return strings.TrimSpace(lines[0])
}

// Build compiles the main package pkg into the file bin, running the go
// command in dir ("" for the current directory), with the race detector if
// race is set.
func Build(ctx context.Context, dir, pkg, bin string, race bool) error {
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &BuildError{Pkg: pkg, Err: err, Output: string(out)}
	}
	return nil
}

// listening is the line every step logs once its socket is bound; with
// --port 0 it is the only way to learn the port the kernel chose.
var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// ListeningAddr returns the address in a server's "listening" log line, and
// false for any other line. It is the one reader of that line's shape.
func ListeningAddr(line string) (string, bool) {
	if m := listening.FindStringSubmatch(line); m != nil {
		return m[1], true
	}
	return "", false
}

// Proc is a server process Start started.
type Proc struct {
	Cmd  *exec.Cmd
	Addr string // host:port from its "listening" line

	done chan struct{}
	err  error // Wait's result, once done is closed
}

// Start runs cmd, passes every line it prints (stderr, and stdout unless
// the caller set cmd.Stdout) to onLine, and returns once the process has
// logged its address. It fails if the process exits first, if wait passes
// (then it kills the process), or if ctx ends.
func Start(ctx context.Context, cmd *exec.Cmd, wait time.Duration, onLine func(string)) (*Proc, error) {
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	if cmd.Stdout == nil {
		cmd.Stdout = pw
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		// Wait returns once the process has exited and exec has copied
		// all its output into pw, so the scanner below sees every line.
		p.err = cmd.Wait()
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			if onLine != nil {
				onLine(line)
			}
			if a, ok := ListeningAddr(line); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
		// A line longer than the buffer stops the scanner: keep draining,
		// or the server would block writing its log.
		io.Copy(io.Discard, pr)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p.Addr = <-addr:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("exited before listening (%v)", p.err)
	case <-t.C:
		p.Kill()
		return nil, fmt.Errorf("did not log 'listening addr=' within %v", wait)
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// PID is the server's process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited and its output is read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for status 0); valid after Done.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process at once and waits for it.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// ErrNoExit is Stop's verdict on a server that ignored SIGTERM.
var ErrNoExit = errors.New("no exit after SIGTERM")

// Stop sends SIGTERM, which every step handles by closing its listener and
// exiting 0, and waits up to grace; past that it kills the process and
// returns ErrNoExit. Otherwise it returns the exit error (nil for status 0).
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Exited() {
		p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%w within %v", ErrNoExit, grace)
	}
}

// CPU is the user plus system time the process used; valid after Done.
// It comes from the kernel's accounting of the waited-for child
// (getrusage), so it is the same on Linux, macOS and FreeBSD.
func (p *Proc) CPU() time.Duration {
	if p.Cmd.ProcessState == nil {
		return 0
	}
	return p.Cmd.ProcessState.UserTime() + p.Cmd.ProcessState.SystemTime()
}
