//go:build unix

// The second half of docscheck: the chapters' short commands are run, so a
// reader who types them gets what the chapter shows.
//
// A ```sh fence is run when the line right before it (or before its expect
// lines) is a run marker:
//
//	<!-- run -->                  run it, 30 s at most
//	<!-- run timeout=20s -->      run it, with its own time limit
//	<!-- run needs=strace,bc -->  run it if these commands are installed,
//	                              else skip it and say which is missing
//	<!-- expect: ^listening on -->  zero or more Go regexps, each must
//	                                match the block's combined output
//	```sh
//	go build -o bin/step1 ./step1_sequential
//	```
//
// A block meant for a long run (C10K, a benchmark) gets a skip marker
// instead, and the test logs it with its reason:
//
//	<!-- skip: opens 10,000 connections -->
//
// The blocks of one chapter run in order, with `bash -euo pipefail`, in one
// scratch copy of the repository (its root is the working directory), so a
// later block may use a binary an earlier one built. CSG_SCALE=0.1 is set,
// which the client's --scale reads. Each block runs in its own process
// group; whatever is still alive in it when the block ends or times out is
// killed, and a block that leaves a server running fails: it must stop what
// it started (kill $!).

package docscheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const defaultTimeout = 30 * time.Second

var (
	runMarker    = regexp.MustCompile(`^\s*<!--\s*run(?:\s+timeout=(\S+))?(?:\s+needs=(\S+))?\s*-->\s*$`)
	expectMarker = regexp.MustCompile(`^\s*<!--\s*expect:\s?(.*?)\s*-->\s*$`)
	skipMarker   = regexp.MustCompile(`^\s*<!--\s*skip:\s*(.*?)\s*-->\s*$`)
	// anyRunLike catches a misspelt marker (<!-- run: -->, <!-- expect -->)
	// that would otherwise silently run nothing.
	anyRunLike = regexp.MustCompile(`^\s*<!--\s*(run|expect|skip)\b`)
)

// block is one fence the chapter asks to run or to skip.
type block struct {
	file    string
	line    int // line of the opening fence
	script  string
	timeout time.Duration
	expects []*regexp.Regexp
	skip    string   // the reason, if it is not run
	needs   []string // commands it runs that a machine may lack (strace)
}

// runBlocks finds the run and skip blocks of one Markdown file, in order,
// and the markers that are malformed or mark nothing.
func runBlocks(name, src string) ([]block, []problem) {
	var (
		out      []block
		probs    []problem
		pending  *block // markers seen, fence not yet
		markLine int
	)
	bad := func(line int, format string, args ...any) {
		probs = append(probs, problem{name, line, fmt.Sprintf(format, args...)})
	}
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		ln := lines[i]
		if m := fenceOpen.FindStringSubmatch(ln); m != nil {
			indent, marker, open := len(m[1]), m[2], i+1
			var body []string
			closed := false
			for i++; i < len(lines); i++ {
				if closesFence(lines[i], marker) {
					closed = true
					break
				}
				body = append(body, dedent(lines[i], indent))
			}
			if pending != nil {
				lang := strings.ToLower(m[3])
				switch {
				case pending.skip == "" && lang != "sh":
					bad(markLine, "run marker above a %q fence: only ```sh blocks are run; make it ```sh (commands only, no $ prompts or output)", lang)
				case !closed:
					// checkFence reports the unclosed fence.
				default:
					pending.line = open
					pending.script = strings.Join(body, "\n") + "\n"
					out = append(out, *pending)
				}
				pending = nil
			}
			continue
		}
		switch {
		case runMarker.MatchString(ln):
			m := runMarker.FindStringSubmatch(ln)
			if pending != nil {
				bad(markLine, "marker is not directly followed by a ```sh fence")
			}
			pending, markLine = &block{file: name, timeout: defaultTimeout}, i+1
			if m[1] != "" {
				d, err := time.ParseDuration(m[1])
				if err != nil || d <= 0 {
					bad(i+1, "run marker: timeout=%s is not a duration like 20s", m[1])
				} else {
					pending.timeout = d
				}
			}
			if m[2] != "" {
				pending.needs = strings.Split(m[2], ",")
			}
		case expectMarker.MatchString(ln):
			m := expectMarker.FindStringSubmatch(ln)
			if pending == nil || pending.skip != "" {
				bad(i+1, "expect marker must follow a run marker (or another expect line) directly")
				continue
			}
			re, err := regexp.Compile(m[1])
			if err != nil {
				bad(i+1, "expect marker: %v", err)
				continue
			}
			pending.expects = append(pending.expects, re)
		case skipMarker.MatchString(ln):
			m := skipMarker.FindStringSubmatch(ln)
			if pending != nil {
				bad(markLine, "marker is not directly followed by a ```sh fence")
			}
			if m[1] == "" {
				bad(i+1, "skip marker needs a reason: <!-- skip: opens 10,000 connections -->")
			}
			pending, markLine = &block{file: name, skip: m[1]}, i+1
		case anyRunLike.MatchString(ln):
			bad(i+1, "malformed marker: write <!-- run -->, <!-- run timeout=20s -->, <!-- expect: REGEX --> or <!-- skip: REASON -->")
		default:
			if pending != nil {
				bad(markLine, "marker is not directly followed by a ```sh fence: put it on the line right before the fence")
				pending = nil
			}
		}
	}
	if pending != nil {
		bad(markLine, "marker at the end of the file marks nothing")
	}
	return out, probs
}

// missing is the first command b needs that is not on PATH, or "".
func (b block) missing() string {
	for _, n := range b.needs {
		if _, err := exec.LookPath(n); err != nil {
			return n
		}
	}
	return ""
}

// result is what running one block gave.
type result struct {
	out      []byte
	err      error // exit status, or why it could not start
	timedOut bool
	leftover bool // processes were still running in its group at the end
}

// runBlock runs b's script in dir with env, in a process group of its own,
// and kills that group when the script ends or its time is up.
func runBlock(b block, dir string, env []string) result {
	// A file, not a pipe: a background server that inherits stdout must not
	// keep Wait from returning after bash has exited.
	f, err := os.CreateTemp("", "docscheck-out-*")
	if err != nil {
		return result{err: err}
	}
	defer os.Remove(f.Name())
	defer f.Close()

	cmd := exec.Command("bash", "-euo", "pipefail", "-c", b.script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil // /dev/null: a block that reads stdin gets EOF, not a hang
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return result{err: err}
	}
	pgid := cmd.Process.Pid

	var r result
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(b.timeout)
	select {
	case r.err = <-done:
		timer.Stop()
	case <-timer.C:
		r.timedOut = true
		syscall.Kill(-pgid, syscall.SIGKILL)
		r.err = <-done
	}
	// Give what the block stopped (kill $!) a moment to exit, then kill
	// whatever is left, so nothing outlives the block.
	for deadline := time.Now().Add(3 * time.Second); groupAlive(pgid) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if groupAlive(pgid) {
		r.leftover = !r.timedOut
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	f.Seek(0, io.SeekStart)
	r.out, _ = io.ReadAll(f)
	return r
}

// groupAlive says whether any process is left in the process group. A
// killed server whose parent (bash) has already exited is a zombie until
// init reaps it, which some containers' init does only every second or
// two; kill(2) still finds a zombie, so on Linux /proc is read instead and
// zombies do not count.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return true // no /proc (macOS, FreeBSD): kill's answer is all there is
	}
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // it exited while we looked
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so cut
		// after its closing parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// failure says why a block's result does not pass, or "" when it does.
func (b block) failure(r result) string {
	switch {
	case r.timedOut:
		return fmt.Sprintf("did not finish within %v (raise it with <!-- run timeout=60s --> or make the block shorter)", b.timeout)
	case r.err != nil:
		return fmt.Sprintf("failed: %v", r.err)
	case r.leftover:
		return "left processes running after it ended: stop what the block starts in the background (kill $!)"
	}
	for _, re := range b.expects {
		if !re.Match(r.out) {
			return fmt.Sprintf("output does not match <!-- expect: %s -->", re)
		}
	}
	return ""
}

// tail is the last n lines of out, to show with a failure.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return "\t| " + strings.Join(lines, "\n\t| ")
}

// copyRepo copies the repository at root into dst: the files git tracks or
// would track (untracked but not ignored), as they are in the working tree,
// so uncommitted edits are run too. Build outputs and .git are left behind.
func copyRepo(root, dst string) error {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git ls-files in %s: %v: %s", root, err, strings.TrimSpace(stderr.String()))
	}
	for _, rel := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		if err := copyOne(filepath.Join(root, rel), filepath.Join(dst, rel)); err != nil {
			return err
		}
	}
	return nil
}

func copyOne(src, dst string) error {
	st, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // tracked but deleted in the working tree
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case st.Mode().IsRegular():
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, st.Mode().Perm())
	}
	return nil // a submodule or other non-file entry: nothing to copy
}
