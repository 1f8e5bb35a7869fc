package main

import (
	"bytes"
	"net"
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
