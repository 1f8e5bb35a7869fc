package conformance

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

// TestSecondServerRefused starts each SO_REUSEPORT mode twice on one port,
// the way a teacher who runs the same command in a second terminal by
// mistake would. The kernel lets any socket of the same user that also sets
// SO_REUSEPORT join a port's group, so without a check the second server
// runs and silently takes part of every class's connections. It must
// instead exit at once, non-zero, with one line naming the address in use,
// while the first serves on. (The loops of one server still share the
// port: the first server here runs with them.)
func TestSecondServerRefused(t *testing.T) {
	cases := []struct {
		name, dir string
		args      []string
	}{
		{"step6-loops2", "step6_epoll", []string{"--loops", "2"}},
		{"step6-edge-loops2", "step6_epoll", []string{"--edge", "--loops", "2"}},
		{"step7", "step7_eventloop_lib", nil},
		{"step7-loops2", "step7_eventloop_lib", []string{"--loops", "2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pkg := "concurrent-servers-go/" + tc.dir
			first := steptest.Start(t, pkg, tc.args...)
			_, port, err := net.SplitHostPort(first.Addr)
			if err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			second := exec.CommandContext(ctx, steptest.Build(t, pkg), append([]string{"--port", port}, tc.args...)...)
			out, err := second.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ctx.Err() != nil {
				t.Fatalf("second server on %s: %v, want it to exit non-zero at once; it printed:\n%s", first.Addr, err, out)
			}
			msg := strings.TrimSpace(string(out))
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "address already in use") || !strings.Contains(msg, first.Addr) {
				t.Fatalf("second server said %q, want one line naming %s as already in use", msg, first.Addr)
			}
			// The first is untouched and still takes every connection.
			for range 5 {
				exchange(t, first.Addr, []byte("^abc$"))
			}
		})
	}
}
