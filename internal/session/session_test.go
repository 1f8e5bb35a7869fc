package session

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"concurrent-servers-go/internal/protocol"
)

// serve runs a small concurrent server of the protocol for the harness to
// be tested against; handle may bend it to misbehave.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(c) })
		}
	})
	return ln.Addr().String()
}

func correct(c net.Conn) {
	c.Write([]byte{protocol.Ack})
	var m protocol.Machine
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if out := m.Feed(nil, buf[:n]); len(out) > 0 {
			c.Write(out)
		}
	}
}

func TestRunCorrectServer(t *testing.T) {
	addr := serve(t, correct)
	var log strings.Builder
	rep := Run(context.Background(), Options{Addr: addr, N: 3, Scale: 0.05, Log: &syncWriter{w: &log}})
	if rep.Failed() != 0 {
		t.Fatalf("failures: %v", rep.Summary())
	}
	for _, s := range rep.Sessions {
		if string(s.Got) != "bcdbcuf23436bc1111" {
			t.Fatalf("%s got %q", s.Name, s.Got)
		}
	}
	out := log.String()
	for _, want := range []string{
		"conn0 connected...", "conn2 sending b'^abc$de^abte$f'", "conn1 sending b'25$^ab0000$abab'",
		"conn1 disconnecting", "received b'",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	first := strings.SplitN(out, "\n", 2)[0]
	if _, err := time.Parse("INFO:2006-01-02 15:04:05,000:", first[:len("INFO:2006-01-02 15:04:05,000:")]); err != nil {
		t.Errorf("log line %q is not in the Python logging format: %v", first, err)
	}
	if min := Duration(0.05); rep.Elapsed < min {
		t.Errorf("3 concurrent sessions took %v, less than one session's sleeps %v", rep.Elapsed, min)
	}
}

func TestRunFailureKinds(t *testing.T) {
	// A port nothing listens on: reserve one, then free it.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()

	cases := []struct {
		name string
		addr string
		want Kind
	}{
		{"refused", dead, Refused},
		{"no ack", serve(t, func(c net.Conn) { c.Write([]byte("hello")) }), NoAck},
		{"closes at once", serve(t, func(c net.Conn) {}), NoAck},
		{"wrong bytes", serve(t, func(c net.Conn) {
			c.Write([]byte("*"))
			buf := make([]byte, 64)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				c.Write(buf[:n]) // a plain echo server is not this protocol
			}
		}), WrongBytes},
		{"closes early", serve(t, func(c net.Conn) {
			c.Write([]byte("*bcd"))
			buf := make([]byte, 64)
			c.Read(buf)
		}), ClosedEarly},
		{"silent", serve(t, func(c net.Conn) {
			c.Write([]byte("*"))
			time.Sleep(2 * time.Second)
		}), Timeout},
		{"resets", serve(t, func(c net.Conn) {
			c.Write([]byte("*"))
			buf := make([]byte, 64)
			c.Read(buf)
			c.(*net.TCPConn).SetLinger(0)
		}), Reset},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := Run(context.Background(), Options{Addr: tc.addr, N: 2, Scale: 0.05, Timeout: 500 * time.Millisecond})
			if rep.Failed() != 2 {
				t.Fatalf("%d of 2 sessions failed, want both: %v", rep.Failed(), rep.Summary())
			}
			for _, s := range rep.Sessions {
				if s.Kind != tc.want {
					t.Fatalf("%s failed as %q (%v), want %q", s.Name, s.Kind, s.Err, tc.want)
				}
			}
			sum := rep.Summary()
			if len(sum) != 1 || !strings.HasPrefix(sum[0], string(tc.want)+": 2 of 2 sessions") {
				t.Fatalf("summary %q", sum)
			}
			if (tc.want == Refused) != rep.IsRefused() {
				t.Fatalf("IsRefused = %v", rep.IsRefused())
			}
		})
	}
}

func TestLocalIPs(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	addr := serve(t, func(c net.Conn) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		mu.Lock()
		seen[host] = true
		mu.Unlock()
		correct(c)
	})
	rep := Run(context.Background(), Options{Addr: addr, N: 4, Scale: 0.01,
		LocalIPs: []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")}})
	if rep.Failed() != 0 {
		t.Fatal(rep.Summary())
	}
	if !seen["127.0.0.2"] || !seen["127.0.0.3"] || len(seen) != 2 {
		t.Fatalf("server saw sources %v", seen)
	}
}

func TestPyBytes(t *testing.T) {
	for in, want := range map[string]string{
		"bcdbcuf":        `b'bcdbcuf'`,
		"":               `b''`,
		"it's":           `b"it's"`,
		`say "it's"`:     `b'say "it\'s"'`,
		"a\\b":           `b'a\\b'`,
		"\x00\t\n\r\x7f": `b'\x00\t\n\r\x7f'`,
		"\xff ~":         `b'\xff ~'`,
	} {
		if got := PyBytes([]byte(in)); got != want {
			t.Errorf("PyBytes(%q) = %s, want %s", in, got, want)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
