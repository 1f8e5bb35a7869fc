package load

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// stallServer answers the protocol in its simplest form (every byte after
// the first '^' with its successor: bench never sends '$') and, once,
// stops answering every connection for the stall duration.
type stallServer struct {
	ln              net.Listener
	stallAt, resume time.Time
	wg              sync.WaitGroup
}

func startStallServer(t *testing.T, stallAt time.Time, stall time.Duration) *stallServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stallServer{ln: ln, stallAt: stallAt, resume: stallAt.Add(stall)}
	s.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(conn) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *stallServer) serve(conn net.Conn) {
	defer conn.Close()
	if _, err := conn.Write([]byte{'*'}); err != nil {
		return
	}
	buf := make([]byte, 4096)
	inMsg := false
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		if now := time.Now(); now.After(s.stallAt) && now.Before(s.resume) {
			time.Sleep(s.resume.Sub(now))
		}
		out := buf[:0]
		for _, b := range buf[:n] {
			if inMsg {
				out = append(out, b+1)
			} else if b == '^' {
				inMsg = true
			}
		}
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// A server that stalls for 500 ms once is caught by the open loop, whose
// latency runs from when each message was due: the messages due during the
// stall are several percent of the run, so p99 is about the stall. The
// closed loop sees only one slow message per connection (its max shows
// the stall) and its p99 hides it.
func TestBenchOpenLoopSeesAStall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two benches of about 3 s")
	}
	const stall = 500 * time.Millisecond
	run := func(rate float64) *BenchResult {
		o := BenchOptions{Conns: 4, Size: 16, Pipeline: 1, Rate: rate,
			Warmup: 300 * time.Millisecond, Duration: 2500 * time.Millisecond}
		// The stall starts one second into the measured window.
		srv := startStallServer(t, time.Now().Add(o.Warmup+time.Second), stall)
		o.Addr = srv.ln.Addr().String()
		r, err := Bench(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors.Total() > 0 || r.Msgs == 0 || r.Sent != r.Answered {
			t.Fatalf("rate %v: %d messages, sent %d answered %d, errors %v", rate, r.Msgs, r.Sent, r.Answered, r.Errors.Lines())
		}
		return r
	}
	closed, open := run(0), run(200)
	cp99, cmax, op99 := closed.Latency.Quantile(0.99), closed.Latency.Max(), open.Latency.Quantile(0.99)
	t.Logf("closed loop: %d msgs, p99 %v, max %v; open loop at 200/s/conn: %d msgs, p99 %v",
		closed.Msgs, cp99, cmax, open.Msgs, op99)
	if cmax < stall*6/10 {
		t.Errorf("closed loop max %v: the stall did not happen (want >= %v)", cmax, stall*6/10)
	}
	// 4 conns x 200/s x 2.5 s = 2000 messages due, about 400 of them
	// during the stall: the top 1% waited nearly the whole 500 ms.
	if op99 < stall*6/10 {
		t.Errorf("open loop p99 %v: want >= %v, the stall", op99, stall*6/10)
	}
	// The closed loop answered far more messages; one per connection
	// stalled, so its p99 stays well below the stall, unless the
	// machine is so loaded that it sent fewer than a few hundred.
	if closed.Msgs >= 1000 && cp99 >= op99/2 {
		t.Errorf("closed loop p99 %v (of %d msgs) should hide the stall that open loop's %v shows", cp99, closed.Msgs, op99)
	}
	if open.Msgs < 1500 || open.Msgs > 2100 {
		t.Errorf("open loop answered %d messages due in the window; the schedule says 2000", open.Msgs)
	}
}
