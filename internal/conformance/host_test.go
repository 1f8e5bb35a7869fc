package conformance

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

// hostRows are the rows whose listener is ours (internal/sock); gnet opens
// its own.
var hostRows = []string{"step1", "step2", "step3", "step4", "step5", "step6", "step6-loops2", "step7"}

// TestHostExact holds every step to the address it is given. Linux's default
// (net.ipv6.bindv6only = 0) makes an IPv6 wildcard socket dual-stack, and
// package net's "tcp" network turns 0.0.0.0 into such a socket, so a server
// asked for every IPv4 interface would also answer on every IPv6 one, a
// surprise for anyone who firewalls the two apart. With --host 0.0.0.0 a
// connection to [::1] must be refused; with --host :: one to 127.0.0.1 must
// be; and the family asked for must still work.
func TestHostExact(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("this machine has no IPv6 loopback (%v): nothing can show a dual-stack listener", err)
	} else {
		ln.Close()
	}
	for _, name := range hostRows {
		r := rowNamed(name)
		t.Run(name, func(t *testing.T) {
			r.present(t)
			t.Parallel()
			for _, tc := range []struct{ host, yes, no string }{
				{"0.0.0.0", "127.0.0.1", "::1"},
				{"::", "::1", "127.0.0.1"},
			} {
				// A server bound to one family leaves the same port number
				// free in the other, and another program (another test
				// package, run at the same time) may get it by chance and
				// accept the probe. So an accepted probe is retried once
				// with a fresh server on a fresh port: chance does not
				// strike twice, a dual-stack listener does.
				var accepted string
				for range 2 {
					srv := steptest.Start(t, r.pkg(), append([]string{"--host", tc.host}, r.args...)...)
					_, port, err := net.SplitHostPort(srv.Addr)
					if err != nil {
						t.Fatalf("listening address %q: %v", srv.Addr, err)
					}
					if !strings.Contains(srv.Addr, tc.host) {
						t.Errorf("--host %s: server says it listens on %s", tc.host, srv.Addr)
					}
					c := connect(t, net.JoinHostPort(tc.yes, port))
					c.Close()
					accepted = ""
					if c, err := net.DialTimeout("tcp", net.JoinHostPort(tc.no, port), 5*time.Second); err == nil {
						c.Close()
						accepted = fmt.Sprintf("a connection to %s was accepted; the server must bind only the address asked for (%s)",
							net.JoinHostPort(tc.no, port), srv.Addr)
					}
					if err := srv.Stop(5 * time.Second); err != nil {
						t.Errorf("--host %s: %v", tc.host, err)
					}
					if accepted == "" {
						break
					}
				}
				if accepted != "" {
					t.Errorf("--host %s, twice: %s", tc.host, accepted)
				}
			}
		})
	}
}

// TestHostEmpty: an empty --host is not "every interface", it is a mistake (an
// unset shell variable, say). Every step refuses it with one line naming
// the flag, and exit status 2, as for any other bad flag.
func TestHostEmpty(t *testing.T) {
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			r.present(t)
			if r.csrc != "" {
				t.Skipf("row %s is a C reference server: its flags are its own, not internal/app's", r.name)
			}
			t.Parallel()
			// A server that takes '' and serves never exits by itself:
			// the context kills it, and the test then fails on its status.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, steptest.Build(t, r.pkg()), append([]string{"--port", "0", "--host", ""}, r.args...)...)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("--host '': want exit status 2, got %v:\n%s", err, out)
			}
			if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "--host") {
				t.Fatalf("--host '': want one line naming --host, got:\n%s", out)
			}
		})
	}
}
