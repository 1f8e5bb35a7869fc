package main

import (
	"context"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Stopping a thread that sleeps in the kernel. Step 1 stops by closing the
// listener and each connection from another goroutine, which works because
// package net's Close also wakes its own poller. On a raw fd it does not: on
// Linux a thread already inside read(fd) or accept(fd) keeps sleeping on the
// socket after another thread calls close(fd), since close only frees the fd
// number, not the socket the sleeper holds. shutdown(2) acts on the socket
// itself: a blocked read returns 0, a blocked write fails with EPIPE, and on
// Linux a blocked accept fails with EINVAL.

// afterStop arranges for wake to run when ctx ends, and returns the function
// that cancels that: step 1's context.AfterFunc, plus one guarantee. If wake
// has already started, stop waits for it to finish, so that the caller,
// which closes the fd right after stop, never lets wake shut down an fd
// number that close has handed back to the kernel for a new client.
func afterStop(ctx context.Context, wake func()) (stop func()) {
	done := make(chan struct{})
	after := context.AfterFunc(ctx, func() {
		defer close(done)
		wake()
	})
	return func() {
		if !after() {
			<-done // wake is running or has run: let it finish first
		}
	}
}

// wakeAccept wakes the thread blocked in accept(lfd), which then sees that
// ctx has ended and returns.
func wakeAccept(lfd int, addr netip.AddrPort) {
	if err := unix.Shutdown(lfd, unix.SHUT_RDWR); err != nil {
		// macOS refuses to shut down a listening socket (ENOTCONN) and
		// leaves accept asleep: wake it with a connection of our own.
		// handle shuts it down at once, since ctx has ended, and serve's
		// loop then sees ctx and returns.
		selfConnect(addr)
	}
}

func selfConnect(addr netip.AddrPort) {
	ip := addr.Addr()
	switch {
	case ip.IsUnspecified() && ip.Is4(): // listening on 0.0.0.0
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsUnspecified(): // listening on ::
		ip = netip.IPv6Loopback()
	}
	if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, addr.Port()).String(), time.Second); err == nil {
		c.Close()
	}
}
