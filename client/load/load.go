// Package load holds the engines behind the client's load tools: bench
// (echo throughput and latency over long-lived connections), churn (short
// connections at a bounded rate) and hold (many idle connections at once).
// The client's subcommands parse flags and print; everything that touches
// the network lives here, so tests can drive it directly.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"concurrent-servers-go/internal/protocol"
)

// Pattern bytes: messages are drawn from 'a'..'y' so that no byte is '$'
// (which would end the message, and its answer would be missing) or '^',
// and every answer byte is simply the byte sent plus one ('b'..'z').
const (
	patFirst = 'a'
	patLen   = 25
)

// patRing returns a buffer of size+patLen bytes cycling over 'a'..'y', plus
// its expected answer; message m is ring[m%patLen:][:size]. Messages differ
// from their neighbours, so a server that loses, repeats or reorders bytes
// is caught by comparing answers with the expected ring.
func patRing(size int) (ring, answer []byte) {
	ring = make([]byte, size+patLen)
	answer = make([]byte, size+patLen)
	for i := range ring {
		ring[i] = patFirst + byte(i%patLen)
		answer[i] = ring[i] + 1
	}
	return ring, answer
}

// CheckLoopback refuses any address outside 127.0.0.0/8 and ::1: these
// tools open thousands of connections and must not be pointed at a machine
// by mistake.
func CheckLoopback(host string) error {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
		if lerr != nil || len(ips) == 0 {
			return fmt.Errorf("cannot resolve host %q", host)
		}
		ip = ips[0]
	}
	if !ip.Unmap().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address; these load tools only target this machine unless --allow-remote", host)
	}
	return nil
}

// dialer returns a net.Dialer bound to local (if any).
func dialer(local net.IP, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
		d.Control = bindNoPort
	}
	return d
}

// dialAck connects and waits for the server's '*', all within timeout.
func dialAck(ctx context.Context, local net.IP, addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := dialer(local, timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("%w: no '*' within %v (does the server serve one client at a time?)", ErrNoAck, timeout)
		}
		return nil, fmt.Errorf("%w: waiting for '*': %v", ErrNoAck, err)
	}
	if ack[0] != protocol.Ack {
		conn.Close()
		return nil, fmt.Errorf("%w: first byte is %q, want '*'", ErrNoAck, ack[0])
	}
	conn.SetReadDeadline(time.Time{})
	return conn, nil
}

// Probe connects once and waits for the '*', so that a tool can say in
// one line that no server is there before it opens thousands of
// connections. A server busy with other clients may delay the '*' past
// timeout; that is reported too.
func Probe(ctx context.Context, addr string, timeout time.Duration) error {
	conn, err := dialAck(ctx, nil, addr, timeout)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("connection refused: is a server listening on %s?", addr)
		}
		return fmt.Errorf("%s: %v", addr, err)
	}
	return conn.Close()
}

// ErrNoAck marks a connection whose server never sent a correct '*'.
var ErrNoAck = errors.New("no ack")

// Errors counts failures by kind, keeping the first error of each kind.
type Errors struct {
	Count map[string]int
	First map[string]error
}

func (e *Errors) add(err error) {
	if e.Count == nil {
		e.Count, e.First = map[string]int{}, map[string]error{}
	}
	k := Kind(err)
	if e.Count[k] == 0 {
		e.First[k] = err
	}
	e.Count[k]++
}

func (e *Errors) merge(o *Errors) {
	for k, n := range o.Count {
		if e.Count == nil {
			e.Count, e.First = map[string]int{}, map[string]error{}
		}
		if e.Count[k] == 0 {
			e.First[k] = o.First[k]
		}
		e.Count[k] += n
	}
}

// Total is the number of failures of every kind.
func (e *Errors) Total() int {
	n := 0
	for _, c := range e.Count {
		n += c
	}
	return n
}

// Lines is one line per kind of failure: "refused: 3 (first: ...)".
func (e *Errors) Lines() []string {
	var out []string
	for _, k := range sortedKeys(e.Count) {
		out = append(out, fmt.Sprintf("%s: %d (first: %v)", k, e.Count[k], e.First[k]))
	}
	return out
}

// AllRefused reports whether the only failures were refused connections.
func (e *Errors) AllRefused() bool {
	return e.Total() > 0 && e.Count["refused"] == e.Total()
}

// Kind names an error for the failure summary.
func Kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, ErrNoAck):
		return "no-ack"
	case errors.Is(err, ErrWrongBytes):
		return "wrong-bytes"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed-early"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no-port" // out of ephemeral ports for this source address
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "emfile"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// ErrWrongBytes marks an answer that is not what the protocol owes.
var ErrWrongBytes = errors.New("wrong bytes")

func sortedKeys(m map[string]int) []string {
	return slices.Sorted(maps.Keys(m))
}
