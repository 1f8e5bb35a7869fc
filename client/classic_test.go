package main

import (
	"bytes"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

// The classic command against a real step, in the original's argument
// order: Elapsed on stdout, the Python-format log on stderr, exit 0.
func TestClassicAgainstStep2(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step2_thread_per_conn")
	host, port, _ := net.SplitHostPort(srv.Addr)
	var out, errOut bytes.Buffer
	code := run([]string{"client", host, port, "-n", "3", "--scale", "0.05"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	if !regexp.MustCompile(`^Elapsed: [0-9.]+\n$`).MatchString(out.String()) {
		t.Fatalf("stdout %q, want one Elapsed line", out.String())
	}
	logLine := regexp.MustCompile(`^INFO:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}:conn[0-2] (connected\.\.\.|sending b'.*'|received b'.*'|disconnecting)$`)
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	for _, l := range lines {
		if !logLine.MatchString(l) {
			t.Errorf("log line %q is not in the original client's format", l)
		}
	}
	if n := strings.Count(errOut.String(), "disconnecting"); n != 3 {
		t.Errorf("%d sessions disconnected, want 3", n)
	}
}

func TestClassicQuiet(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step2_thread_per_conn")
	host, port, _ := net.SplitHostPort(srv.Addr)
	var out, errOut bytes.Buffer
	if code := run([]string{"client", "-q", "-n", "2", "--scale", "0.05", host, port}, &out, &errOut); code != 0 || errOut.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestClassicFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, deadPort, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()

	// A server that answers like a plain echo server gets wrong bytes.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("*"))
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())

	cases := []struct {
		args []string
		code int
		line string // stderr must contain it
	}{
		{[]string{"127.0.0.1", deadPort}, 1, "client: connection refused: is a server listening on 127.0.0.1:" + deadPort + "?"},
		{[]string{"-q", "--scale", "0.05", "-n", "2", "127.0.0.1", echoPort}, 1, "FAIL wrong-bytes: 2 of 2 sessions"},
		{[]string{"127.0.0.1"}, 2, "client: want HOST and PORT, got 1 arguments"},
		{[]string{"127.0.0.1", "http"}, 2, `client: PORT "http" is not a port number`},
		{[]string{"-n", "0", "127.0.0.1", "1"}, 2, "need at least one connection"},
		{[]string{"-n", "x", "127.0.0.1", "1"}, 2, `invalid value "x" for flag -n`},
		{[]string{"--bogus", "127.0.0.1", "1"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--source", "nowhere", "127.0.0.1", "1"}, 2, `--source "nowhere" is not an IP address`},
		{[]string{"-n", "50000", "127.0.0.1", "1"}, 2, "-n 50000 needs about"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(append([]string{"client"}, tc.args...), &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.line) {
			t.Errorf("client %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.line)
		}
		if strings.Contains(errOut.String(), "goroutine ") {
			t.Errorf("client %q printed a stack trace", tc.args)
		}
	}
}

func TestInterspersed(t *testing.T) {
	a := newApp(nil, nil, new(int))
	cases := map[string]string{
		"client localhost 8080 -n 5":          "client -n 5 -- localhost 8080",
		"client -n 5 localhost 8080":          "client -n 5 -- localhost 8080",
		"client localhost -q 8080 --scale=.1": "client -q --scale=.1 -- localhost 8080",
		"client --help":                       "client --help",
	}
	for in, want := range cases {
		if got := strings.Join(interspersed(a, strings.Fields(in)), " "); got != want {
			t.Errorf("interspersed(%q) = %q, want %q", in, got, want)
		}
	}
}
