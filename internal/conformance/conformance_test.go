package conformance

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The cases spend most of their time waiting on a server (a session's
	// pauses, a 2 s CPU sample, a 500 ms "must not be served" window), not
	// on the CPU, so they overlap well beyond -parallel's default of one
	// per core. An explicit -parallel wins, and so does fuzzing, where
	// -parallel is the number of worker processes (each starts its own
	// servers).
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" || f.Name == "test.fuzz" })
	if !set {
		flag.Set("test.parallel", "16")
	}
	// A race-enabled program sleeps a second at exit (atexit_sleep_ms, so
	// other threads can still report races); every case stops a server,
	// so that second would cost the suite minutes. The servers still
	// report races; GORACE set by the caller wins.
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	code := m.Run()
	steptest.Cleanup()
	cleanupC()
	os.Exit(code)
}

// A case runs against a fresh server of one row, so cases cannot disturb
// each other and a sequential server never has a leftover client queued.
// Unless it manages the server's life itself (own), the case is wrapped:
// one warm-up conversation first (so fds a server opens once, lazily, are
// in the baseline), then the case, then the server must still be running
// and its open fds must come back to that baseline once the case's clients
// have gone. steptest stops every server with SIGTERM at the end and fails
// the test unless it exits 0.
type kase struct {
	name string
	own  bool
	run  func(t *testing.T, r row, srv *steptest.Server)
}

var cases = []kase{
	{name: "examples", run: testExamples},
	{name: "byte-by-byte", run: testByteByByte},
	{name: "many-in-one-write", run: testManyInOneWrite},
	{name: "all-256-bytes", run: testAllBytes},
	{name: "stream-1MiB", run: testStream},
	{name: "half-close", run: testHalfClose},
	{name: "reset", run: testReset},
	{name: "garbage", run: testGarbage},
	{name: "idle-client", run: testIdle},
	{name: "slow-reader", run: testSlowReader},
	{name: "fds-threads", run: testFDsThreads},
	{name: "sigterm", own: true, run: testSigterm},
	{name: "emfile", run: testEMFILE},
}

// TestConformance runs every case against every row, in parallel: each
// case has its own server process.
func TestConformance(t *testing.T) {
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			r.present(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					srv := r.start(t)
					if c.own {
						c.run(t, r, srv)
						return
					}
					exchange(t, srv.Addr, []byte("^warm-up$"))
					base := fds(t, srv.PID())
					c.run(t, r, srv)
					if t.Failed() || r.emfileDies != "" && srv.Exited() {
						return
					}
					alive(t, srv)
					waitFDs(t, srv, base)
				})
			}
		})
	}
}

// The examples of docs/protocol.md, with the answers it gives. The first three
// run on one connection, each answer read before the next line is sent:
// answers are streamed, never held until a message ends ("xyz^123" is
// answered while the message is still open).
var examples = []struct{ send, want string }{
	{"^abc$de^abte$f", "bcdbcuf"},
	{"xyz^123", "234"},
	{"25$^ab0000$abab", "36bc1111"},
	{"^ab$^kl$^80$50", "bclm91"}, // from here on, each on a fresh connection
	{"^$^$$foo^$$", ""},
}

func testExamples(t *testing.T, r row, srv *steptest.Server) {
	c := connect(t, srv.Addr)
	defer c.Close()
	for _, ex := range examples[:3] {
		if _, err := c.Write([]byte(ex.send)); err != nil {
			t.Fatal(err)
		}
		expectRead(t, c, []byte(ex.want))
	}
	c.CloseWrite()
	if rest, err := readToEOF(c); err != nil || len(rest) > 0 {
		t.Fatalf("after the session: %q, %v; want nothing more, then EOF", rest, err)
	}
	for _, ex := range examples[3:] {
		if got := string(answer([]byte(ex.send))); got != ex.want {
			t.Fatalf("the reference machine answers %q with %q, docs/protocol.md says %q", ex.send, got, ex.want)
		}
		exchange(t, srv.Addr, []byte(ex.send))
	}
}

// allExamples is every example's input as one stream.
func allExamples() []byte {
	var b []byte
	for _, ex := range examples {
		b = append(b, ex.send...)
	}
	return b
}

// Every byte in its own write (TCP_NODELAY is on, so mostly its own
// segment): the server must carry the state across reads.
func testByteByByte(t *testing.T, r row, srv *steptest.Server) {
	var chunks [][]byte
	for _, b := range allExamples() {
		chunks = append(chunks, []byte{b})
	}
	exchange(t, srv.Addr, chunks...)
}

// A thousand messages, with noise between them, in a single write.
func testManyInOneWrite(t *testing.T, r row, srv *steptest.Server) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b []byte
	for i := range 1000 {
		b = append(b, "noise"[:i%6]...)
		b = append(b, '^')
		for range 1 + rng.IntN(20) {
			b = append(b, byte('a'+rng.IntN(26)))
		}
		b = append(b, '$')
	}
	exchange(t, srv.Addr, b)
}

// Every byte value inside a message: 0xFF wraps to 0x00, '^' is answered
// with '_', and '$' ends the message (so it is followed by '^' to reopen).
func testAllBytes(t *testing.T, r row, srv *steptest.Server) {
	msg := []byte{'^'}
	for i := range 256 {
		msg = append(msg, byte(i))
		if i == '$' {
			msg = append(msg, '^')
		}
	}
	want := answer(msg)
	if len(want) != 255 || !bytes.Contains(want, []byte{0}) || !bytes.Contains(want, []byte{'_'}) {
		t.Fatalf("reference answer to all 256 bytes looks wrong: %d bytes", len(want))
	}
	exchange(t, srv.Addr, msg, msg)
}

// One 1 MiB message, written by one goroutine while this one reads: the
// whole answer must arrive while the message is still open and the client
// still connected, so the server streams instead of buffering the message.
func testStream(t *testing.T, r row, srv *steptest.Server) {
	const size = 1 << 20
	rng := rand.New(rand.NewPCG(3, 4))
	msg := make([]byte, 1+size)
	msg[0] = '^'
	for i := 1; i < len(msg); i++ {
		if msg[i] = byte(rng.Uint32()); msg[i] == '$' {
			msg[i] = '#'
		}
	}
	c := connect(t, srv.Addr)
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		var err error
		for p := msg; len(p) > 0 && err == nil; {
			n := min(len(p), 64*1024)
			_, err = c.Write(p[:n])
			p = p[n:]
		}
		werr <- err
	}()
	expectRead(t, c, answer(msg))
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	c.CloseWrite()
	if rest, err := readToEOF(c); err != nil || len(rest) > 0 {
		t.Fatalf("after the message: %d more bytes, %v; want EOF", len(rest), err)
	}
}

// The client sends, shuts its write side at once, and only then starts
// reading: every byte owed must still come, then EOF. 64 KiB fits in the
// kernel's buffers, so the client's writes cannot block on its own
// unread answers.
func testHalfClose(t *testing.T, r row, srv *steptest.Server) {
	c := connect(t, srv.Addr)
	defer c.Close()
	msg := append([]byte{'^'}, bytes.Repeat([]byte("half-close "), 64*1024/11)...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := readToEOF(c)
	if err != nil {
		t.Fatalf("after %d bytes: %v", len(got), err)
	}
	if want := answer(msg); !bytes.Equal(got, want) {
		t.Fatalf("received %s", diff(got, want))
	}
}

// A client resets its connection (SO_LINGER 0, then close: the kernel
// sends RST) mid-message, and another one while the server is still
// writing a large answer to it. Neither may cost the server anything: the
// next client is served correctly.
func testReset(t *testing.T, r row, srv *steptest.Server) {
	a := connect(t, srv.Addr)
	a.Write([]byte("^abc"))
	expectRead(t, a, []byte("bcd"))
	a.SetLinger(0)
	a.Close()

	b := connect(t, srv.Addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.SetWriteDeadline(time.Now().Add(ioTimeout))
		b.Write(append([]byte{'^'}, make([]byte, 1<<20)...)) // fails once reset
	}()
	time.Sleep(100 * time.Millisecond)
	b.SetLinger(0)
	b.Close()
	<-done

	exchange(t, srv.Addr, []byte("^after the resets$"))
	steptest.Sessions(t, srv.Addr, 1)
}

// Fifty clients send random bytes and leave without reading, half of them
// with a reset, all at once.
func testGarbage(t *testing.T, r row, srv *steptest.Server) {
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 5))
			b := make([]byte, 1+rng.IntN(32*1024))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			c, err := dialer(false).Dial("tcp", srv.Addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			c.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := c.Write(b); err != nil {
				t.Errorf("write: %v", err)
			}
			if i%2 == 1 {
				c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
		})
	}
	wg.Wait()
	exchange(t, srv.Addr, []byte("^after the garbage$"))
	steptest.Sessions(t, srv.Addr, 1)
}

// slow is how long a concurrent server may take to serve one classic
// session while another client idles or floods, in sessions: 20, which is
// 4.4 s. Generous on purpose, since a busy 2-core machine running the race
// detector has stretched a session five-fold; the limit still separates
// the models, because the other client stays for the whole check, so a
// server that waits for it never serves the session at all.
const slow = 20.0

// A client sits mid-message without sending. A concurrent server serves
// another client meanwhile; a sequential one cannot, and that is its
// lesson: the second client gets its '*' only once the first leaves.
func testIdle(t *testing.T, r row, srv *steptest.Server) {
	a := connect(t, srv.Addr)
	defer a.Close()
	a.Write([]byte("^a"))
	expectRead(t, a, []byte("b"))
	if r.concurrent {
		rep := steptest.Sessions(t, srv.Addr, 1)
		if ratio := steptest.Ratio(rep); ratio > slow {
			t.Fatalf("with an idle client connected, one session took %v = %.1f sessions", rep.Elapsed, ratio)
		}
		a.Write([]byte("b$"))
		expectRead(t, a, []byte("c"))
		return
	}
	b := dial(t, srv.Addr, false)
	defer b.Close()
	if ackWithin(t, b, 500*time.Millisecond) {
		t.Fatalf("%s: expected the second client to wait for the idle first one (%s), but it got its '*'", r.name, r.seqNote)
	}
	a.Close()
	expectAck(t, b)
	b.Write([]byte("^b"))
	expectRead(t, b, []byte("c"))
}

// sigterm: mid-conversation clients are connected (for a sequential server
// one is served and one waits in the accept queue); SIGTERM must end the
// server with exit status 0 within a second, closing the listener.
func testSigterm(t *testing.T, r row, srv *steptest.Server) {
	a := connect(t, srv.Addr)
	defer a.Close()
	a.Write([]byte("^ab"))
	expectRead(t, a, []byte("bc"))
	b := dial(t, srv.Addr, false)
	defer b.Close()
	if r.concurrent {
		expectAck(t, b)
		b.Write([]byte("^xy"))
		expectRead(t, b, []byte("yz"))
	}
	grace := time.Second
	if steptest.RaceEnabled {
		grace = 2 * time.Second // the race runtime's exit work on a busy machine
	}
	start := time.Now()
	if err := srv.Stop(grace); err != nil {
		t.Fatalf("SIGTERM with clients connected: %v (after %v)\n%s", err, time.Since(start), srv.Log())
	}
	t.Logf("exited 0 after SIGTERM in %v", time.Since(start).Round(time.Millisecond))
	if c, err := net.DialTimeout("tcp", srv.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the server exited", srv.Addr)
	}
}
