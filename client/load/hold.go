package load

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HoldOptions configures Hold, one process's share of a hold run.
type HoldOptions struct {
	Host   string
	Ports  []int
	Conns  int      // connections this process opens
	Offset int      // index of its first connection in the whole run
	Local  []net.IP // source addresses; nil lets the kernel choose
	// Dialing bounds the connect() calls in flight. A burst of thousands
	// overflows the server's accept queue, and a dropped SYN costs its
	// client a one-second retransmit.
	Dialing        int
	ConnectTimeout time.Duration // connect plus the '*'
	// KeepAlive is the TCP keepalive idle time and probe interval of every
	// held connection; 0 turns keepalive off. Go's net.Dialer turns it on
	// by default (15 s idle, 15 s between probes), and that default is
	// what stops a million-connection run: a million connections send
	// 66,000 probes a second, plus as many ACKs, through loopback's
	// per-CPU backlog of 1000 packets (net.core.netdev_max_backlog). The
	// backlog overflows, probes and their ACKs are dropped, and after nine
	// unanswered probes the kernel aborts the connection
	// (TcpExtTCPAbortOnTimeout). An idle held connection needs no probe:
	// the tool itself checks at the end that each one is still open.
	KeepAlive time.Duration
}

// Held is the connections a Hold opened, kept open until Close.
type Held struct {
	conns     []net.Conn
	Connected int
	Errors    Errors
}

// Close closes every held connection.
func (h *Held) Close() {
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

// Hold opens o.Conns connections, waiting for each one's '*', and keeps
// them. Connection g (counting from o.Offset across every process) goes
// from source g % len(Local) to port (g / len(Local)) % len(Ports), so
// every (source, port) pair gets its share of the ephemeral ports.
// progress, if set, is called as connections succeed or fail.
func Hold(ctx context.Context, o HoldOptions, progress func(connected, failed int)) *Held {
	h := &Held{conns: make([]net.Conn, 0, o.Conns)}
	var mu sync.Mutex
	var ok, bad atomic.Int64
	slots := make(chan struct{}, max(o.Dialing, 1))
	var wg sync.WaitGroup
	for i := range o.Conns {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		g := o.Offset + i
		var local net.IP
		srcs := 1
		if len(o.Local) > 0 {
			local, srcs = o.Local[g%len(o.Local)], len(o.Local)
		}
		addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Ports[(g/srcs)%len(o.Ports)]))
		wg.Go(func() {
			defer func() { <-slots }()
			conn, err := dialAck(ctx, local, addr, o.ConnectTimeout)
			if err == nil {
				if err = setKeepAlive(conn, o.KeepAlive); err != nil {
					conn.Close()
				}
			}
			mu.Lock()
			if err != nil {
				h.Errors.add(err)
			} else {
				h.conns = append(h.conns, conn)
			}
			mu.Unlock()
			if err != nil {
				bad.Add(1)
			} else {
				ok.Add(1)
			}
			if progress != nil {
				progress(int(ok.Load()), int(bad.Load()))
			}
		})
	}
	wg.Wait()
	h.Connected = len(h.conns)
	return h
}

// Open counts the held connections the server has not closed or reset: a
// non-blocking peek that would block means the connection is open and
// idle; 0 bytes means the server closed it, an error that it reset it. A
// server with an idle time-out, or one that dropped connections under
// load, shows here.
func (h *Held) Open() (open int) {
	var b [1]byte
	for _, c := range h.conns {
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			continue
		}
		alive := false
		rc.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			// The server sends nothing after the '*', so data waiting
			// (n > 0) is as alive as nothing waiting (EAGAIN).
			alive = n > 0 || err == unix.EAGAIN
			return true // one attempt: never wait for the poller
		})
		if alive {
			open++
		}
	}
	return open
}

// setKeepAlive sets SO_KEEPALIVE on conn, and with it the idle time and
// the interval between probes (TCP_KEEPIDLE, TCP_KEEPINTVL), to d; d == 0
// turns keepalive off (setsockopt SO_KEEPALIVE 0). The dialer has already
// turned it on with Go's defaults; no probe goes out before the first
// 15 s of idleness, so switching it off after the '*' is in time.
func setKeepAlive(conn net.Conn, d time.Duration) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	cfg := net.KeepAliveConfig{Enable: d > 0}
	if d > 0 {
		cfg.Idle, cfg.Interval, cfg.Count = d, d, 9
	}
	if err := tc.SetKeepAliveConfig(cfg); err != nil {
		return fmt.Errorf("setsockopt SO_KEEPALIVE: %w", err)
	}
	return nil
}
