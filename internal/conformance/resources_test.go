package conformance

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

// floodSize is what the slow reader sends inside one message, never reading
// the answers.
const floodSize = 8 << 20

// slowReaderBound is how much a server's RSS may grow, over its warmed-up
// baseline, while one client floods it without reading: 3 MiB. The
// flooder's receive buffer is 4 KiB, and the kernel's buffers on both sides
// absorb 5-7 MiB of the flood on loopback; a server that keeps reading and
// queues every answer it cannot send holds the rest and more (gnet's
// reference server: +6 MiB), one that caps pending output and stops
// reading holds kilobytes (every bounded step: under 0.6 MiB when this was
// written). The race detector's shadow memory multiplies every allocation,
// hence 6 MiB then (bounded steps: up to 2 MiB; gnet: +10 MiB).
func slowReaderBound() int {
	if steptest.RaceEnabled {
		return 6 << 10 // KiB
	}
	return 3 << 10 // KiB
}

// A client sends '^' and 8 MiB and never reads. Its writes stall once the
// kernel buffers and whatever the server keeps are full. Meanwhile the
// server's RSS is sampled, and another client must be served promptly
// (concurrent rows) or must wait for the flooder (sequential rows: the
// server is parked in write(), which is also why its memory stays flat).
func testSlowReader(t *testing.T, r row, srv *steptest.Server) {
	pid := srv.PID()
	base := status(t, pid, "VmRSS")
	var peak atomic.Int64
	peak.Store(int64(base))
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			if v := int64(status(t, pid, "VmRSS")); v > peak.Load() {
				peak.Store(v)
			}
		}
	})
	stopSampling := sync.OnceFunc(func() { close(stop); sampler.Wait() })
	defer stopSampling()

	f := dial(t, srv.Addr, true)
	defer f.Close()
	expectAck(t, f)
	wrote := make(chan int, 1)
	go func() {
		// The write ends when all is sent or, with backpressure, at the
		// deadline; either is fine, the memory is what counts.
		f.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, _ := f.Write(append([]byte{'^'}, bytes.Repeat([]byte{'a'}, floodSize)...))
		wrote <- n
	}()
	time.Sleep(300 * time.Millisecond) // let the flood fill the buffers

	var b *net.TCPConn
	if r.concurrent {
		rep := steptest.Sessions(t, srv.Addr, 1)
		if ratio := steptest.Ratio(rep); ratio > slow {
			t.Errorf("while a client floods without reading, one session took %v = %.1f sessions", rep.Elapsed, ratio)
		}
	} else {
		b = dial(t, srv.Addr, false)
		defer b.Close()
		if ackWithin(t, b, 500*time.Millisecond) {
			t.Fatalf("%s: expected the second client to wait while the server is stuck writing to the flooder (%s), but it got its '*'", r.name, r.seqNote)
		}
	}
	n := <-wrote
	time.Sleep(200 * time.Millisecond) // the server may still be reading
	stopSampling()
	growth := int(peak.Load()) - base
	t.Logf("flooder got %d of %d bytes in; server RSS %d KiB, peak %d KiB (+%d KiB)", n, floodSize+1, base, peak.Load(), growth)
	if r.boundedSlowReader && growth > slowReaderBound() {
		t.Errorf("server RSS grew by %d KiB while a client flooded without reading; bound %d KiB", growth, slowReaderBound())
	}
	if !r.boundedSlowReader {
		t.Logf("no memory bound asserted: %s", r.slowNote)
	}
	f.SetLinger(0)
	f.Close()
	if b != nil {
		expectAck(t, b)
		b.Write([]byte("^b"))
		expectRead(t, b, []byte("c"))
	}
}

// Fifty sessions at once (three for a sequential server) come and go; the
// server must give back every fd and not keep the threads they cost.
// Goroutines are invisible from outside the process: OS threads are the
// proxy, since a goroutine stuck in a blocking syscall holds a thread.
func testFDsThreads(t *testing.T, r row, srv *steptest.Server) {
	pid := srv.PID()
	base, threads := fds(t, pid), status(t, pid, "Threads")
	n := 50
	if !r.concurrent {
		n = 3
	}
	steptest.Sessions(t, srv.Addr, n)
	waitFDs(t, srv, base)
	after := status(t, pid, "Threads")
	t.Logf("%d fds before and after %d sessions; threads %d before, %d after", len(base), n, threads, after)
	// The Go runtime keeps a few idle threads for reuse; a server that
	// leaks one per client would have dozens more.
	if after > threads+threadSlack {
		t.Errorf("server has %d threads after %d sessions left, %d before", after, n, threads)
	}
}

// threadSlack is how many more OS threads than before a server may keep
// once its clients have gone: the Go runtime parks idle threads instead of
// ending them, up to about one per core plus a few for syscalls.
const threadSlack = 8
