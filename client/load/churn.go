package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ChurnOptions configures Churn.
type ChurnOptions struct {
	Addr        string
	Rate        float64       // connections started per second, at most
	Count       int           // connections in all
	Duration    time.Duration // stop starting new ones after this long; 0: no limit
	Concurrency int           // connections in progress at once, at most
	Size        int           // bytes of the one message each sends
	Timeout     time.Duration // bounds each connection, start to close
	LocalIPs    []net.IP
	Progress    func(done int) // called as connections finish, if set
}

// ChurnResult is what a churn run measured.
type ChurnResult struct {
	Started, OK int
	Elapsed     time.Duration
	Latency     Hist // connect to verified answer, successful connections only
	Errors      Errors
}

// Churn opens short connections at a bounded rate: each connects, waits
// for '*', sends '^' and one message, checks the answer, and closes. It is
// the load of a web server's clients rather than a chat server's: accept
// and close dominate, not reads and writes.
func Churn(ctx context.Context, o ChurnOptions) *ChurnResult {
	res := &ChurnResult{}
	msg, answer := patRing(o.Size)
	msg = append([]byte{'^'}, msg[:o.Size]...)
	answer = answer[:o.Size]

	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range max(o.Concurrency, 1) {
		wg.Go(func() {
			var h Hist
			var errs Errors
			ok := 0
			buf := make([]byte, o.Size)
			for i := range jobs {
				var local net.IP
				if len(o.LocalIPs) > 0 {
					local = o.LocalIPs[i%len(o.LocalIPs)]
				}
				t0 := time.Now()
				if err := churnOne(ctx, local, o.Addr, o.Timeout, msg, answer, buf); err != nil {
					errs.add(err)
				} else {
					h.Record(time.Since(t0))
					ok++
				}
				if o.Progress != nil {
					mu.Lock()
					done++
					n := done
					mu.Unlock()
					o.Progress(n)
				}
			}
			mu.Lock()
			res.Latency.Merge(&h)
			res.Errors.merge(&errs)
			res.OK += ok
			mu.Unlock()
		})
	}

	// Start connection i at start + i/Rate: a schedule rather than a
	// sleep between connections, so slow connections do not lower the
	// rate as long as Concurrency has room.
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
loop:
	for i := range o.Count {
		at := time.Duration(float64(i) / o.Rate * float64(time.Second))
		if o.Duration > 0 && at >= o.Duration {
			break
		}
		if wait := at - time.Since(start); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case jobs <- i:
			res.Started++
		case <-ctx.Done():
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// churnOne is one short connection.
func churnOne(ctx context.Context, local net.IP, addr string, timeout time.Duration, msg, answer, buf []byte) error {
	conn, err := dialAck(ctx, local, addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if !bytes.Equal(buf, answer) {
		return fmt.Errorf("%w: got %q, want %q", ErrWrongBytes, buf, answer)
	}
	return nil
}
