package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

const step2 = "concurrent-servers-go/step2_thread_per_conn"

// runClient runs the client's command line in-process and returns its
// exit status, stdout and stderr.
func runClient(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"client"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// hostPort splits a server's address into the HOST PORT arguments.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// closedPort is the address of a port nothing listens on: bound, then
// closed, so connect() is refused.
func closedPort(t *testing.T) (string, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return hostPort(t, addr)
}

// oneLine checks that s is exactly one line containing want.
func oneLine(t *testing.T, s, want string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.Contains(s, want) {
		t.Fatalf("want one line containing %q, got:\n%s", want, s)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestParseSources(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "[]",
		"3":                     "[127.0.0.1 127.0.0.2 127.0.0.3]",
		"127.0.0.254-127.0.1.1": "[127.0.0.254 127.0.0.255 127.0.1.0 127.0.1.1]",
		"127.0.0.5, 127.0.0.9":  "[127.0.0.5 127.0.0.9]",
		"127.0.0.2-127.0.0.2":   "[127.0.0.2]",
	} {
		ips, err := parseSources(in)
		if err != nil || fmt.Sprint(ips) != want {
			t.Errorf("parseSources(%q) = %v, %v; want %s", in, ips, err, want)
		}
	}
	for _, bad := range []string{"0", "255", "127.0.0.9-127.0.0.1", "x", "127.0.0.1-::1"} {
		if ips, err := parseSources(bad); err == nil {
			t.Errorf("parseSources(%q) = %v, want an error", bad, ips)
		}
	}
}

// Progress bars are for people: never drawn into a pipe or a file.
func TestProgressOffWithoutTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(int(w.Fd())) {
		t.Fatal("a pipe is not a terminal")
	}
	p := newProgress(w, "test", 10, "things")
	p.set(5)
	p.done()
	if p.bar != nil {
		t.Fatal("a bar was drawn into a pipe")
	}
}
