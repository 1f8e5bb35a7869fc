package main

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/steptest"
)

// The poller contract of poll.go, checked on a connected pair of sockets:
// what server.go relies on, whichever kernel interface is underneath.
func TestPollerContract(t *testing.T) {
	a, b := steptest.SocketPair(t)
	p, err := newPoller(false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	ready := func(d time.Duration) map[int]event {
		t.Helper()
		evs, err := p.wait(d)
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		got := map[int]event{}
		for _, ev := range evs {
			got[ev.fd] = ev
		}
		return got
	}

	// Added for reading, a with nothing to read is not reported, and a
	// wait of 0 returns at once instead of sleeping.
	if err := p.set(a, interest{}, interest{read: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := ready(0); len(got) != 0 {
		t.Fatalf("nothing sent, yet wait reported %v", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("wait(0) took %v", d)
	}

	// Bytes from b make a readable, and only for reading.
	unix.Write(b, []byte("x"))
	if ev, ok := ready(time.Second)[a]; !ok || !ev.read || ev.write || ev.err != nil {
		t.Fatalf("after a write from the peer: %+v, reported %v", ev, ok)
	}

	// Changed to writing only, a is reported writable (its send buffer is
	// empty), and its unread byte no longer counts.
	if err := p.set(a, interest{read: true}, interest{write: true}); err != nil {
		t.Fatal(err)
	}
	if ev := ready(time.Second)[a]; !ev.write || ev.read {
		t.Fatalf("with write interest only: %+v", ev)
	}

	// Removed, a is not reported at all.
	if err := p.set(a, interest{write: true}, interest{}); err != nil {
		t.Fatal(err)
	}
	if got := ready(0); len(got) != 0 {
		t.Fatalf("after removing a: %v", got)
	}

	// The peer shutting its write side is reported as readable, not as an
	// error: its last bytes may still wait to be read.
	if err := p.set(a, interest{}, interest{read: true}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	unix.Read(a, buf) // take the "x"
	unix.Shutdown(b, unix.SHUT_WR)
	if ev := ready(time.Second)[a]; !ev.read || ev.err != nil {
		t.Fatalf("after the peer's shutdown(SHUT_WR): %+v", ev)
	}
}
