package sock

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestListenFDPortZero(t *testing.T) {
	fd, ap, err := ListenFD("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if ap.Port() == 0 || ap.Addr().String() != "127.0.0.1" {
		t.Fatalf("bound %v, want 127.0.0.1 with a real port", ap)
	}
	// A client of package net can reach the raw listener, and Accept sees it.
	c, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nfd, sa, err := Accept(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nfd)
	if got := AddrPort(sa); got.String() != c.LocalAddr().String() {
		t.Fatalf("accept says peer %v, client says it is %v", got, c.LocalAddr())
	}
}

func TestListenFDIPv6AndNames(t *testing.T) {
	fd, ap, err := ListenFD("localhost", 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if !ap.Addr().IsLoopback() {
		t.Fatalf("localhost bound %v", ap)
	}
	if fd, _, err := ListenFD("::1", 0); err == nil {
		unix.Close(fd)
	} else {
		t.Logf("no IPv6 loopback here: %v", err)
	}
	if _, err := ResolveTCP("127.0.0.1", 70000); err == nil {
		t.Fatal("port 70000 accepted")
	}
}

func TestListenFDAddressInUse(t *testing.T) {
	fd, ap, err := ListenFD("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if fd2, _, err := ListenFD("127.0.0.1", int(ap.Port())); err == nil {
		unix.Close(fd2)
		t.Fatal("second listener on a busy port succeeded")
	}
}

func TestBackoff(t *testing.T) {
	var b Backoff
	d, first := b.Next()
	if !first || d != 5*time.Millisecond {
		t.Fatalf("first Next = %v, %v", d, first)
	}
	for i := 0; i < 20; i++ {
		d, first = b.Next()
		if first {
			t.Fatal("later Next says first")
		}
	}
	if d != time.Second {
		t.Fatalf("backoff grew to %v, want a 1s cap", d)
	}
	b.Reset()
	if _, first := b.Next(); !first {
		t.Fatal("Reset did not start a new burst")
	}
}

func TestErrorClasses(t *testing.T) {
	if !OutOfResources(unix.EMFILE) || OutOfResources(unix.ECONNABORTED) {
		t.Fatal("OutOfResources misclassifies")
	}
	if !AcceptAborted(unix.ECONNABORTED) || AcceptAborted(unix.EMFILE) {
		t.Fatal("AcceptAborted misclassifies")
	}
	calls := 0
	err := IgnoringEINTR(func() error {
		calls++
		if calls < 3 {
			return unix.EINTR
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("IgnoringEINTR: err %v after %d calls", err, calls)
	}
}

func TestRaiseNofile(t *testing.T) {
	n, err := RaiseNofile()
	if err != nil {
		t.Logf("setrlimit: %v", err)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if n != uint64(rl.Cur) {
		t.Fatalf("RaiseNofile returned %d, limit is %d", n, rl.Cur)
	}
}

// A group's first listener must refuse a port that another SO_REUSEPORT
// listener already holds (a server started twice), while a member joining
// its own group on that port still binds.
func TestListenFDReusePortRefusesBusyPort(t *testing.T) {
	first, ap, err := ListenFDReusePort("127.0.0.1", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(first)
	member, _, err := ListenFDReusePort("127.0.0.1", int(ap.Port()), true)
	if err != nil {
		t.Fatalf("joining our own group: %v", err)
	}
	unix.Close(member)
	fd, _, err := ListenFDReusePort("127.0.0.1", int(ap.Port()), false)
	if err == nil {
		unix.Close(fd)
		t.Fatal("a second group's first listener bound a busy port")
	}
	if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), ap.String()) {
		t.Fatalf("got %v, want EADDRINUSE naming %v", err, ap)
	}
}

func TestResolveEmptyHost(t *testing.T) {
	if ap, err := ResolveTCP("", 8080); err == nil {
		t.Fatalf("empty host resolved to %v; want an error", ap)
	}
}

// Each listener takes only the family it was given: 0.0.0.0 is not [::],
// and :: is not 0.0.0.0, whatever net.ipv6.bindv6only says.
func TestListenExactFamily(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here (%v)", err)
	} else {
		ln.Close()
	}
	refused := func(host, addr string) {
		t.Helper()
		if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("listening on %s, a connection to %s was accepted", host, addr)
		}
	}
	for _, tc := range []struct{ host, yes, no string }{
		{"0.0.0.0", "127.0.0.1", "::1"},
		{"::", "::1", "127.0.0.1"},
	} {
		ln, err := Listen(tc.host, 0)
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp", net.JoinHostPort(tc.yes, strconv.Itoa(port)))
		if err != nil {
			t.Errorf("Listen(%s): %v", tc.host, err)
		} else {
			c.Close()
		}
		refused("Listen "+tc.host, net.JoinHostPort(tc.no, strconv.Itoa(port)))
		ln.Close()

		fd, ap, err := ListenFD(tc.host, 0)
		if err != nil {
			t.Fatal(err)
		}
		refused("ListenFD "+tc.host, net.JoinHostPort(tc.no, strconv.Itoa(int(ap.Port()))))
		unix.Close(fd)
	}
}
