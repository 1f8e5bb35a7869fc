package app

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The test process holds a listener and both ends of one connection: two
// connected sockets, and the listener is not counted.
func TestCountConns(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("connections are n/a here")
	}
	before := take().conns
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := take().conns; got != before {
		t.Errorf("a listener changed conns from %d to %d", before, got)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := take().conns; got != before+2 {
		t.Errorf("with one connection (both ends here) conns = %d, want %d", got, before+2)
	}
	c.Close()
	s.Close()
	if got := take().conns; got != before {
		t.Errorf("after closing, conns = %d, want %d", got, before)
	}
}

func TestStatsLine(t *testing.T) {
	prev := sample{conns: 3, threads: 7, gor: 5, rss: 7 << 20, cpu: time.Second}
	now := prev
	now.cpu += 500 * time.Millisecond
	if got, want := now.line(prev, time.Second), "stats: conns=3 threads=7 goroutines=5 rss=7.0MiB cpu=1.50s (50% of a core)"; got != want {
		t.Errorf("line = %q, want %q", got, want)
	}
	unknown := sample{conns: -1, threads: -1, gor: 2, rss: -1, cpu: -1}
	if got := unknown.line(unknown, time.Second); got != "stats: conns=n/a threads=n/a goroutines=2 rss=n/a cpu=n/a (n/a of a core)" {
		t.Errorf("an OS that cannot tell prints n/a, got %q", got)
	}
	if s := take(); s.gor < 1 || s.cpu <= 0 || (runtime.GOOS == "linux" && (s.threads < 1 || s.rss <= 0)) {
		t.Errorf("take() = %+v", s)
	}
	if !strings.HasPrefix(take().line(take(), time.Second), "stats: conns=") {
		t.Error("line shape")
	}
}
