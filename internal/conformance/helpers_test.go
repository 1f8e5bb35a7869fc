package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/steptest"
)

// ioTimeout bounds every single client operation, so a server that hangs
// fails the test instead of hanging it. It is generous on purpose: the
// cases check what arrives, not how fast.
const ioTimeout = 30 * time.Second

// answer is what the protocol owes for in, sent on one fresh connection
// (after the '*'): the reference machine, never a hand-written copy.
func answer(in ...[]byte) []byte {
	var m protocol.Machine
	var out []byte
	for _, b := range in {
		out = m.Feed(out, b)
	}
	return out
}

// dialer returns connections with a short receive buffer when small is set,
// so a client that does not read pushes back on the server after a few KiB
// instead of after the several MiB loopback autotuning allows. The buffer
// must be set before connect() to fix the advertised window.
func dialer(small bool) *net.Dialer {
	d := &net.Dialer{Timeout: ioTimeout}
	if small {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return errors.Join(err, serr)
		}
	}
	return d
}

// connect dials addr and waits for the server's '*'.
func connect(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c := dial(t, addr, false)
	expectAck(t, c)
	return c
}

// dial connects without waiting for the '*' (a sequential server sends it
// only when it gets round to this client). The test closes it at the end.
func dial(t testing.TB, addr string, small bool) *net.TCPConn {
	t.Helper()
	nc, err := dialer(small).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := nc.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	return c
}

func expectAck(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("waiting for '*': %v", err)
	}
	if b[0] != protocol.Ack {
		t.Fatalf("first byte %q, want '*'", b[0])
	}
}

// ackWithin reports whether the '*' arrives within d; false on a time-out,
// and the test fails on anything else.
func ackWithin(t testing.TB, c net.Conn, d time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, 1)
	_, err := io.ReadFull(c, b)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if err != nil {
		t.Fatalf("waiting for '*': %v", err)
	}
	if b[0] != protocol.Ack {
		t.Fatalf("first byte %q, want '*'", b[0])
	}
	return true
}

// readN reads exactly n bytes within ioTimeout.
func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if k, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: got %d (%q): %v", n, k, clip(b[:k]), err)
	}
	return b
}

// expectRead reads len(want) bytes and compares.
func expectRead(t testing.TB, c net.Conn, want []byte) {
	t.Helper()
	if got := readN(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("received %s", diff(got, want))
	}
}

// readToEOF reads until the server closes its side, within ioTimeout.
func readToEOF(c net.Conn) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	defer c.SetReadDeadline(time.Time{})
	return io.ReadAll(c)
}

// exchange is one whole conversation: connect, wait for '*', send each
// chunk in its own write while a reader collects the answers, half-close,
// and read until the server closes. It fails unless the server sent exactly
// what the protocol owes and then EOF.
func exchange(t testing.TB, addr string, chunks ...[]byte) {
	t.Helper()
	if err := converse(dialer(false), addr, chunks...); err != nil {
		t.Fatal(err)
	}
}

// converse is exchange, returning what went wrong instead of failing a
// test, for the fuzz target and the soak run.
func converse(d *net.Dialer, addr string, chunks ...[]byte) error {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	ack := make([]byte, 1)
	if _, err := io.ReadFull(c, ack); err != nil {
		return fmt.Errorf("waiting for '*': %w", err)
	}
	if ack[0] != protocol.Ack {
		return fmt.Errorf("first byte %q, want '*'", ack[0])
	}
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(c)
		got <- result{b, err}
	}()
	for _, ch := range chunks {
		if _, err := c.Write(ch); err != nil {
			c.Close()
			<-got
			return fmt.Errorf("write: %w", err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		c.Close()
		<-got
		return fmt.Errorf("shutdown(SHUT_WR): %w", err)
	}
	r := <-got
	if r.err != nil {
		return fmt.Errorf("reading to EOF after %d bytes: %w", len(r.b), r.err)
	}
	if want := answer(chunks...); !bytes.Equal(r.b, want) {
		return fmt.Errorf("received %s", diff(r.b, want))
	}
	return nil
}

// diff describes how got differs from want without dumping megabytes.
func diff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at offset %d: got %q, want %q",
		len(got), len(want), i, clip(got[i:]), clip(want[i:]))
}

func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// The server is a child process; what the suite knows of its insides comes
// from /proc. Goroutines are invisible from outside the process, so leaks
// are judged by open fds and OS threads.

// fdCount is how many file descriptors pid has open.
func fdCount(t testing.TB, pid int) int {
	steptest.NeedsLinux(t, "/proc/PID/fd")
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing fds: %v", err)
	}
	return len(ents)
}

// fdLimitFor is the RLIMIT_NOFILE under which pid can open exactly room
// more fds: a new fd takes the lowest free number, and EMFILE means that
// number is at or above the soft limit. Free numbers below the highest
// open fd (holes) count as room too.
func fdLimitFor(t testing.TB, pid, room int) uint64 {
	steptest.NeedsLinux(t, "/proc/PID/fd")
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing fds: %v", err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			open[n] = true
		}
	}
	fd := 0
	for free := 0; ; fd++ {
		if !open[fd] {
			if free == room {
				return uint64(fd)
			}
			free++
		}
	}
}

// status reads one numeric field of /proc/PID/status: "VmRSS" and "VmHWM"
// in KiB, "Threads" as a count.
func status(t testing.TB, pid int, field string) int {
	steptest.NeedsLinux(t, "/proc/PID/status")
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatalf("status %s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// cpuTime is the CPU time pid has used so far, user plus system.
func cpuTime(t testing.TB, pid int) time.Duration {
	steptest.NeedsLinux(t, "/proc/PID/stat")
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading stat: %v", err)
	}
	// The command name is in parentheses and may hold spaces: count
	// fields after the last ')'. utime and stime are fields 14 and 15,
	// so the 12th and 13th after it.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, err1 := strconv.Atoi(f[11])
	st, err2 := strconv.Atoi(f[12])
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("parsing stat: %v", err)
	}
	return time.Duration(ut+st) * time.Second / clockTick
}

// fdSet is what a server has open: every fd number with what it points to.
type fdSet map[string]string

func fds(t testing.TB, pid int) fdSet {
	steptest.NeedsLinux(t, "/proc/PID/fd")
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing fds: %v", err)
	}
	s := fdSet{}
	for _, e := range ents {
		s[e.Name()], _ = os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
	}
	return s
}

// extra is what s has open beyond base, leaving out the Go runtime's own
// netpoller (an epoll fd and an eventfd): the runtime creates it lazily, on
// a program's first timer or network fd, and a step on raw fds may first
// need it long after the warm-up, when a client is already connected. It
// also leaves out libuv's spare fd, which libuv opens on /dev/null and,
// after it has used it to shed load on EMFILE, opens again on "/".
func (s fdSet) extra(base fdSet) []string {
	var x []string
	runtime := 0
	for fd, link := range s {
		if base[fd] == link || base[fd] == "/dev/null" && link == "/" {
			continue
		}
		if (link == "anon_inode:[eventpoll]" || link == "anon_inode:[eventfd]") && runtime < 2 {
			runtime++
			continue
		}
		x = append(x, fd+" -> "+link)
	}
	return x
}

// waitFDs polls until pid has nothing open beyond base (but the runtime's
// netpoller), for up to a few seconds: a server closes a departed client's
// fd when it next looks at it.
func waitFDs(t testing.TB, srv *steptest.Server, base fdSet) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	x := fds(t, srv.PID()).extra(base)
	for len(x) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		x = fds(t, srv.PID()).extra(base)
	}
	if len(x) > 0 {
		t.Fatalf("server holds %d more fds 5s after its clients left (%d at the baseline); all it has open:\n%s",
			len(x), len(base), fdReport(srv.PID()))
	}
}

// tcpStates names the st column of /proc/net/tcp.
var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV",
	"04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}

// fdReport lists pid's fds, with the TCP state of each socket, so a leak
// report says what kind of fd is left (CLOSE_WAIT: the peer left and the
// server never closed its side).
func fdReport(pid int) string {
	state := map[string]string{} // socket inode -> state
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(line); len(fs) > 9 {
				state[fs[9]] = tcpStates[fs[3]] + " local " + fs[1] + " remote " + fs[2]
			}
		}
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var sb strings.Builder
	for _, e := range ents {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		fmt.Fprintf(&sb, "  fd %s -> %s", e.Name(), link)
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			fmt.Fprintf(&sb, " %s", state[strings.TrimSuffix(ino, "]")])
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// alive fails the test if the server process has exited.
func alive(t testing.TB, srv *steptest.Server) {
	t.Helper()
	if srv.Exited() {
		t.Fatalf("server exited:\n%s", srv.Log())
	}
}
