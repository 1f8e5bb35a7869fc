package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"

	"concurrent-servers-go/step7_eventloop_lib/evloop"
)

// maxLine bounds a request line: 20 digits are enough for any uint64, and a
// client that sends an endless line must not make us buffer it.
const maxLine = 64

// server takes what it uses, as the protocol server does: the context
// (for the workers' jobs) and a callback that announces the bound address.
type server struct {
	evloop.BuiltinHandler
	ctx       context.Context
	listening func(addr string)
	offload   bool
}

// conn is a connection's state: whether its request is in the pool. While
// it is, further lines wait, unconsumed, in the connection's own buffer.
type conn struct{ busy bool }

func (s *server) OnBoot(eng *evloop.Engine) evloop.Action {
	s.listening(eng.Addr().String())
	return evloop.None
}

func (s *server) OnOpen(c *evloop.Conn) ([]byte, evloop.Action) {
	c.SetContext(new(conn))
	return nil, evloop.None
}

// OnTraffic answers every complete line, one at a time. Peek finds the
// newline without consuming; a partial line stays in the buffer until the
// rest arrives (the library keeps it for us).
func (s *server) OnTraffic(c *evloop.Conn) evloop.Action {
	st := c.Context().(*conn)
	for !st.busy {
		buf, _ := c.Peek(-1)
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > maxLine {
				c.Write([]byte("error: line too long\n"))
				return evloop.Close
			}
			return evloop.None
		}
		n, err := strconv.ParseUint(string(bytes.TrimSuffix(buf[:i], []byte("\r"))), 10, 64)
		c.Discard(i + 1)
		switch {
		case err != nil:
			c.Write([]byte("error: want a decimal number below 2^64\n"))
		case !s.offload:
			// On the loop: nothing else on this loop moves until the
			// check returns. That is the lesson.
			prime, err := isPrime(s.ctx, n)
			if err != nil {
				return evloop.Close // stopping
			}
			c.Write(answer(prime))
		default:
			s.queue(c, st, n)
		}
	}
	return evloop.None
}

// queue hands the check to the worker pool and returns to the loop at once.
// done runs back on the loop: it writes the answer and goes on with the
// lines that came in meanwhile, which done sees buffered as OnTraffic does.
func (s *server) queue(c *evloop.Conn, st *conn, n uint64) {
	var prime bool
	var err error
	work := func(ctx context.Context) { prime, err = isPrime(ctx, n) }
	done := func(c *evloop.Conn) {
		st.busy = false
		if err != nil {
			return // the engine is stopping
		}
		c.Write(answer(prime))
		if s.OnTraffic(c) == evloop.Close {
			c.Close()
		}
	}
	st.busy = true
	if qerr := c.QueueWork(work, done); qerr != nil {
		st.busy = false
		c.Write([]byte("error: server busy, try again\n"))
	}
}

func answer(prime bool) []byte {
	if prime {
		return []byte("prime\n")
	}
	return []byte("not prime\n")
}

// isPrime is trial division by 2, 3 and every 6k±1 up to the square root:
// deliberately slow: one to two seconds for 1000000000000000003 on the
// 2-core machine the chapter was measured on. It gives up when ctx ends.
func isPrime(ctx context.Context, n uint64) (bool, error) {
	if n < 2 {
		return false, nil
	}
	if n%2 == 0 || n%3 == 0 {
		return n == 2 || n == 3, nil
	}
	for i, k := uint64(5), 0; i <= n/i; i, k = i+6, k+1 {
		if n%i == 0 || n%(i+2) == 0 {
			return false, nil
		}
		if k&(1<<20-1) == 0 && ctx.Err() != nil {
			return false, errors.New("cancelled")
		}
	}
	return true, nil
}
