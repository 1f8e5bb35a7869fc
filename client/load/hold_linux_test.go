package load

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Hold's keepalive setting reaches the kernel: off by default (Go's dialer
// would have turned it on with 15 s), or the asked idle time and interval.
// Read back with getsockopt on the held sockets themselves.
func TestHoldKeepAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("*"))
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		ka         time.Duration
		on         int
		idle, intv int // seconds, checked when on
	}{
		{0, 0, 0, 0},
		{7 * time.Second, 1, 7, 7},
	} {
		h := Hold(context.Background(), HoldOptions{Host: "127.0.0.1", Ports: []int{port}, Conns: 3,
			Dialing: 3, ConnectTimeout: 5 * time.Second, KeepAlive: tc.ka}, nil)
		if h.Connected != 3 {
			t.Fatalf("connected %d of 3: %v", h.Connected, h.Errors.Count)
		}
		for _, c := range h.conns {
			rc, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var on, idle, intv int
			var gerr error
			rc.Control(func(fd uintptr) {
				if on, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE); gerr != nil {
					return
				}
				if idle, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); gerr != nil {
					return
				}
				intv, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
			})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if on != tc.on || (tc.on == 1 && (idle != tc.idle || intv != tc.intv)) {
				t.Errorf("KeepAlive %v: SO_KEEPALIVE %d, TCP_KEEPIDLE %d, TCP_KEEPINTVL %d; want %d, %d, %d",
					tc.ka, on, idle, intv, tc.on, tc.idle, tc.intv)
			}
		}
		h.Close()
	}
}
