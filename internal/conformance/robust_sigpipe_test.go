package conformance

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"concurrent-servers-go/internal/stepproc"
)

// TestLogGone starts every step with its stderr (its log) a pipe that the
// test closes as soon as it has read the "listening" line, the way
// `step 2> >(head -1)` or a log collector that dies does. Go raises SIGPIPE
// for a write to a broken pipe on fd 1 or 2, and SIGPIPE's default action
// kills the process (status 141 in a shell). A server must shrug that off:
// serve on, log nothing more, and still exit 0 on SIGTERM (when it logs
// "stopped" into the closed pipe).
func TestLogGone(t *testing.T) {
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			r.present(t)
			testLogGone(t, r)
		})
	}
}

func testLogGone(t *testing.T, r row) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(r.binary(t), append([]string{"--port", "0"}, r.args...)...)
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close() // only the child holds the write end now
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if a, ok := stepproc.ListeningAddr(sc.Text()); ok {
				lines <- a
				return
			}
		}
		close(lines)
	}()
	var addr string
	select {
	case a, ok := <-lines:
		if !ok {
			t.Fatal("server ended its log before listening")
		}
		addr = a
	case <-time.After(20 * time.Second):
		t.Fatal("no listening line within 20s")
	}
	pr.Close() // the log reader is gone: every later log write is EPIPE

	// A reset makes every step log (at info) that the peer went away, and
	// a sequential server gets round to the second client only after it.
	for i := 0; i < 3; i++ {
		c := connect(t, addr)
		c.SetLinger(0)
		c.Close()
	}
	exchange(t, addr, []byte("^abc$"))
	select {
	case err := <-done:
		t.Fatalf("server died with its log gone: %v", err)
	default:
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) && strings.Contains(ee.String(), "broken pipe") {
				t.Fatalf("SIGTERM with the log gone: %v (SIGPIPE killed it)", err)
			}
			t.Fatalf("SIGTERM with the log gone: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
}
