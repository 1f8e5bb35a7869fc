// Package session is the classic simple-client session, as a library: every
// step's test, the client command and the comparison tools drive servers
// through this one harness.
//
// One session connects, waits for the server's '*', then sends three pieces
// of protocol with pauses between them while a reader logs whatever arrives:
//
//	^abc$de^abte$f   sleep 1.0 s   -> bcdbcuf
//	xyz^123          sleep 1.0 s   -> 234
//	25$^ab0000$abab  sleep 0.2 s   -> 36bc1111
//
// A session therefore takes about 2.2 s on its own. N sessions run at once
// take about 2.2 s against a server that serves them concurrently and about
// N x 2.2 s against one that serves them in turn: the whole point of the
// series is to make that difference visible.
//
// Unlike the original Python script, Run checks every byte each session
// received and classifies what went wrong, so it doubles as a test harness.
package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Step is one piece of the session script.
type Step struct {
	Send  string
	Sleep time.Duration // after sending, before the next step
	Want  string        // what the server owes for Send
}

// Script is the classic session, byte for byte.
var Script = []Step{
	{Send: "^abc$de^abte$f", Sleep: 1000 * time.Millisecond, Want: "bcdbcuf"},
	{Send: "xyz^123", Sleep: 1000 * time.Millisecond, Want: "234"},
	{Send: "25$^ab0000$abab", Sleep: 200 * time.Millisecond, Want: "36bc1111"},
}

// Want is everything one session must receive after the '*', in order.
func Want() string {
	var b strings.Builder
	for _, s := range Script {
		b.WriteString(s.Want)
	}
	return b.String()
}

// Duration is how long one session takes on an idle, concurrent server at
// the given time scale: the sum of its sleeps.
func Duration(scale float64) time.Duration {
	var d time.Duration
	for _, s := range Script {
		d += s.Sleep
	}
	return time.Duration(float64(d) * scale)
}

// Options configures Run.
type Options struct {
	Addr string // host:port of the server
	N    int    // sessions run concurrently; 0 means 1
	// Scale multiplies every sleep of the script: 1 is the original timing,
	// 0.1 runs a session in 0.22 s. 0 means 1.
	Scale float64
	// Timeout bounds each session, from its start to its end. 0 picks a
	// generous one that even a sequential server serving all N sessions in
	// turn stays well inside.
	Timeout time.Duration
	// Log receives the original client's log lines; nil logs nothing.
	Log io.Writer
	// LocalIPs, when set, are the source addresses sessions connect from,
	// in turn. Each (source, destination) address pair has its own ~28k
	// ephemeral ports, so spreading over 127.0.0.x passes that limit.
	LocalIPs []net.IP
	// MaxDialing bounds how many connect() calls are in flight at once, so
	// a burst of thousands does not overflow the server's accept queue (a
	// dropped SYN costs its client a one-second retransmit). 0 means 256.
	MaxDialing int
	// OnDone, if set, is called as each session ends (from its goroutine).
	OnDone func(Result)
}

// Kind classifies how a session failed.
type Kind string

const (
	OK          Kind = ""
	Refused     Kind = "refused"      // nothing listens there: connect() got ECONNREFUSED
	ConnectErr  Kind = "connect"      // connect() failed otherwise
	NoAck       Kind = "no-ack"       // the first byte was not '*', or never came
	WrongBytes  Kind = "wrong-bytes"  // the answers differ from the protocol's
	ClosedEarly Kind = "closed-early" // the server closed before sending all it owed
	Reset       Kind = "reset"        // the server reset the connection
	Timeout     Kind = "timeout"      // the session ran past its time-out
	IOErr       Kind = "io"           // any other read or write error
)

// Result is one session's outcome.
type Result struct {
	Name      string
	Kind      Kind
	Err       error  // what went wrong, or nil
	Got       []byte // every byte received after the '*'
	Connected time.Duration
	Elapsed   time.Duration
}

// Report is the outcome of a run.
type Report struct {
	N        int
	Elapsed  time.Duration
	Sessions []Result
}

// Failed counts the sessions that did not get exactly what they were owed.
func (r *Report) Failed() int {
	n := 0
	for _, s := range r.Sessions {
		if s.Kind != OK {
			n++
		}
	}
	return n
}

// Summary is one line per kind of failure, most frequent first, each with
// one example; empty when every session was correct.
func (r *Report) Summary() []string {
	byKind := map[Kind][]Result{}
	for _, s := range r.Sessions {
		if s.Kind != OK {
			byKind[s.Kind] = append(byKind[s.Kind], s)
		}
	}
	kinds := make([]Kind, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if len(byKind[kinds[i]]) != len(byKind[kinds[j]]) {
			return len(byKind[kinds[i]]) > len(byKind[kinds[j]])
		}
		return kinds[i] < kinds[j]
	})
	var lines []string
	for _, k := range kinds {
		ex := byKind[k][0]
		lines = append(lines, fmt.Sprintf("%s: %d of %d sessions (first: %s: %v)",
			k, len(byKind[k]), len(r.Sessions), ex.Name, ex.Err))
	}
	return lines
}

// Run runs N sessions at once against opts.Addr and waits for all of them.
// It never fails as a whole: every problem is reported per session.
func Run(ctx context.Context, opts Options) *Report {
	n := max(opts.N, 1)
	scale := opts.Scale
	if scale <= 0 {
		scale = 1
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		// Enough for a server that serves the sessions one after another,
		// twice over, plus time to connect thousands.
		timeout = 2*time.Duration(n)*Duration(scale) + 30*time.Second
	}
	dialing := make(chan struct{}, orDefault(opts.MaxDialing, 256))
	lg := &logger{w: opts.Log}

	rep := &Report{N: n, Sessions: make([]Result, n)}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := &session{
				name: fmt.Sprintf("conn%d", i), addr: opts.Addr, scale: scale,
				log: lg, dialing: dialing, start: start,
			}
			if len(opts.LocalIPs) > 0 {
				s.local = &net.TCPAddr{IP: opts.LocalIPs[i%len(opts.LocalIPs)]}
			}
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res := s.run(sctx)
			rep.Sessions[i] = res
			if opts.OnDone != nil {
				opts.OnDone(res)
			}
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	return rep
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

type session struct {
	name    string
	addr    string
	local   *net.TCPAddr
	scale   float64
	log     *logger
	dialing chan struct{}
	start   time.Time
}

func (s *session) run(ctx context.Context) (res Result) {
	res.Name = s.name
	defer func() { res.Elapsed = time.Since(s.start) }()
	fail := func(k Kind, err error) Result {
		res.Kind, res.Err = k, err
		if k == Timeout {
			res.Err = fmt.Errorf("no result after %v: %w", time.Since(s.start).Round(time.Millisecond), err)
		}
		return res
	}

	select {
	case s.dialing <- struct{}{}:
	case <-ctx.Done():
		return fail(Timeout, errors.New("waiting for a dial slot"))
	}
	var d net.Dialer
	if s.local != nil {
		d.LocalAddr = s.local
	}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	<-s.dialing
	if err != nil {
		return fail(classify(ctx, err, ConnectErr), err)
	}
	defer conn.Close()
	// Whatever blocks below (waiting for '*', for an answer, for the kernel
	// to take our bytes) ends when the session's time is up.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	ack := make([]byte, 1)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fail(classify(ctx, err, NoAck), fmt.Errorf("waiting for '*': %w", err))
	}
	if ack[0] != '*' {
		return fail(NoAck, fmt.Errorf("first byte is %s, want b'*'", PyBytes(ack)))
	}
	res.Connected = time.Since(s.start)
	s.log.printf("%s connected...", s.name)

	// The reader runs beside the writer, as in the original, so answers are
	// logged as they arrive, interleaved with the sends.
	want := Want()
	got := make(chan readResult, 1)
	go func() { got <- s.read(conn, len(want)) }()

	var werr error
	for _, st := range Script {
		s.log.printf("%s sending %s", s.name, PyBytes([]byte(st.Send)))
		if _, werr = conn.Write([]byte(st.Send)); werr != nil {
			break
		}
		if !sleep(ctx, time.Duration(float64(st.Sleep)*s.scale)) {
			break
		}
	}
	r := <-got
	res.Got = r.data
	conn.Close()
	s.log.printf("%s disconnecting", s.name)

	switch {
	case string(r.data) == want:
		return res
	case !strings.HasPrefix(want, string(r.data)):
		return fail(WrongBytes, fmt.Errorf("received %s, want %s", PyBytes(r.data), PyBytes([]byte(want))))
	case r.err != nil:
		return fail(classify(ctx, r.err, IOErr), fmt.Errorf("after %s: %w", PyBytes(r.data), r.err))
	case werr != nil:
		return fail(classify(ctx, werr, IOErr), fmt.Errorf("sending: %w", werr))
	default:
		return fail(Timeout, ctx.Err())
	}
}

type readResult struct {
	data []byte
	err  error
}

// read logs and collects what the server sends until it has n bytes (the
// original stops at the first "1111", the last thing a correct server
// sends), the server closes, or the session's deadline fires.
func (s *session) read(conn net.Conn, n int) readResult {
	var all []byte
	buf := make([]byte, 8*1024)
	for len(all) < n {
		k, err := conn.Read(buf)
		if k > 0 {
			s.log.printf("%s received %s", s.name, PyBytes(buf[:k]))
			all = append(all, buf[:k]...)
		}
		if err != nil {
			if err == io.EOF {
				err = errClosedEarly
			}
			return readResult{all, err}
		}
	}
	return readResult{all, nil}
}

var errClosedEarly = errors.New("server closed the connection early")

// classify names an error; def is the kind when nothing more specific fits.
func classify(ctx context.Context, err error, def Kind) Kind {
	var ne net.Error
	switch {
	case ctx.Err() != nil, errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, errClosedEarly), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if def == NoAck {
			return NoAck
		}
		return ClosedEarly
	}
	return def
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// logger writes the original client's log lines, as Python's logging
// module formats them with
// '%(levelname)s:%(asctime)s:%(message)s':
// INFO:2025-03-26 17:34:15,783:conn0 connected...
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, args ...any) {
	if l.w == nil {
		return
	}
	line := "INFO:" + time.Now().Format("2006-01-02 15:04:05,000") + ":" + fmt.Sprintf(format, args...) + "\n"
	l.mu.Lock()
	io.WriteString(l.w, line)
	l.mu.Unlock()
}

// PyBytes formats b as Python's repr() of a bytes object does, so our log
// lines read exactly like the original client's: b'bcdbcuf', b'\x00\n',
// b"it's".
func PyBytes(b []byte) string {
	quote := byte('\'')
	if bytes.IndexByte(b, '\'') >= 0 && bytes.IndexByte(b, '"') < 0 {
		quote = '"'
	}
	var sb strings.Builder
	sb.Grow(len(b) + 3)
	sb.WriteByte('b')
	sb.WriteByte(quote)
	for _, c := range b {
		switch {
		case c == quote || c == '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, c)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte(quote)
	return sb.String()
}

// IsRefused reports whether every session was refused: nothing listens at
// the address. The client turns that into one clear line.
func (r *Report) IsRefused() bool {
	for _, s := range r.Sessions {
		if s.Kind != Refused {
			return false
		}
	}
	return len(r.Sessions) > 0
}
