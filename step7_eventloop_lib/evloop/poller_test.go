package evloop

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/steptest"
)

// The poller contract of poller.go, checked on a connected pair of
// sockets. Here it holds poller_linux.go to it; on macOS and FreeBSD the
// same test holds poller_kqueue.go.
func TestPollerContract(t *testing.T) {
	a, b := steptest.SocketPair(t)
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	// ready merges what wait reports per fd: the contract allows one fd in
	// two events of a batch (kqueue reports each filter apart).
	evs := make([]event, 0, maxEvents)
	ready := func(msec int) map[int]event {
		t.Helper()
		var err error
		if evs, err = p.wait(evs, msec); err != nil {
			t.Fatal(err)
		}
		got := map[int]event{}
		for _, ev := range evs {
			m := got[ev.fd]
			m.fd, m.read, m.write, m.hup = ev.fd, m.read || ev.read, m.write || ev.write, m.hup || ev.hup
			got[ev.fd] = m
		}
		return got
	}

	// Watched for reading with nothing to read: not reported, and a wait
	// of 0 returns at once.
	if err := p.add(a, true, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := ready(0); len(got) != 0 {
		t.Fatalf("nothing sent, yet wait reported %v", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("wait(0) took %v", d)
	}

	// A byte from b makes a readable, and only readable; level-triggered,
	// it is reported again while the byte stays unread.
	unix.Write(b, []byte("x"))
	for i := range 2 {
		if ev, ok := ready(1000)[a]; !ok || !ev.read || ev.write || ev.hup {
			t.Fatalf("wait %d after a write from the peer: %+v, reported %v", i, ev, ok)
		}
	}

	// mod to writing only: writable (the send buffer is empty), and the
	// unread byte no longer counts. Then to both.
	if err := p.mod(a, false, true); err != nil {
		t.Fatal(err)
	}
	if ev := ready(1000)[a]; !ev.write || ev.read {
		t.Fatalf("with write interest only: %+v", ev)
	}
	if err := p.mod(a, true, true); err != nil {
		t.Fatal(err)
	}
	if ev := ready(1000)[a]; !ev.write || !ev.read {
		t.Fatalf("with both: %+v", ev)
	}

	// mod to nothing, and del: not reported at all. del of an fd watched
	// for reading only must not fail for the write side it never had.
	if err := p.mod(a, false, false); err != nil {
		t.Fatal(err)
	}
	if got := ready(0); len(got) != 0 {
		t.Fatalf("with no interest: %v", got)
	}
	if err := p.mod(a, true, false); err != nil {
		t.Fatal(err)
	}
	if err := p.del(a); err != nil {
		t.Fatal(err)
	}
	if got := ready(0); len(got) != 0 {
		t.Fatalf("after del: %v", got)
	}

	// wake from another goroutine ends a long wait early, as an event for
	// wakeFD; after drainWake the next wait sees nothing.
	go func() {
		time.Sleep(50 * time.Millisecond)
		if err := p.wake(); err != nil {
			t.Error(err)
		}
	}()
	start = time.Now()
	if _, ok := ready(10000)[wakeFD]; !ok {
		t.Fatal("wait returned without the wake-up event")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the wake-up ended a 10 s wait only after %v", d)
	}
	p.drainWake()
	if got := ready(0); len(got) != 0 {
		t.Fatalf("after drainWake: %v", got)
	}

	// The peer shutting its write side is a read (end of file follows),
	// not a hang-up: bytes it sent before may still wait.
	if err := p.add(a, true, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	unix.Read(a, buf) // take the "x"
	unix.Shutdown(b, unix.SHUT_WR)
	if ev := ready(1000)[a]; !ev.read || ev.hup {
		t.Fatalf("after the peer's shutdown(SHUT_WR): %+v", ev)
	}
}
