package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// children lists the process ids pid started (Linux's
// /proc/PID/task/TID/children, for the main thread and every other one).
func children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Ctrl-C in the middle of a run: compare stops the server it started,
// removes its temporary directory, and exits with status 130.
func TestCompareInterruptStopsServers(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs Linux's /proc")
	}
	client := buildClient(t)
	// Twenty sequential sessions of 2.2 s: far longer than the test waits.
	cmd := exec.Command(client, "compare", "--steps", "1", "--n", "20", "--budget", "100s")
	cmd.Dir = ".."
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Wait for the server: the child whose executable is the built step.
	var srv int
	var exe string
	for deadline := time.Now().Add(60 * time.Second); srv == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, c := range children(cmd.Process.Pid) {
			if e, err := os.Readlink("/proc/" + strconv.Itoa(c) + "/exe"); err == nil && strings.HasSuffix(e, "/step1_sequential") {
				srv, exe = c, e
			}
		}
	}
	if srv == 0 {
		t.Fatalf("no step1 server started within 60 s\n%s%s", out.String(), errb.String())
	}
	time.Sleep(300 * time.Millisecond) // let the sessions begin
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("compare exit: %v, want status 130\n%s%s", err, out.String(), errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("compare still running 10 s after SIGINT\n%s%s", out.String(), errb.String())
	}
	if err := syscall.Kill(srv, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("server %d still exists after compare ended: kill(0) = %v", srv, err)
	}
	if _, err := os.Stat(filepath.Dir(exe)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary directory %s left behind: %v", filepath.Dir(exe), err)
	}
	if !strings.Contains(errb.String(), "interrupted; every server it started has been stopped") {
		t.Fatalf("stderr: %s", errb.String())
	}
}
