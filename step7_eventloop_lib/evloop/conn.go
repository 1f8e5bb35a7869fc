package evloop

import (
	"context"
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one connection. Its methods are for the goroutine of its loop,
// that is, for use inside callbacks, except AsyncWrite, Close, Wake and
// QueueWork, which any goroutine may call.
type Conn struct {
	l    *loop
	fd   int
	peer netip.AddrPort
	ctx  any

	in   []byte // what OnTraffic may consume: the shared buffer or rest
	rest []byte // input left unconsumed by the last OnTraffic; nil if none
	out  []byte // output the kernel did not take yet; nil if none

	active time.Time    // last read or write progress, for the idle sweep
	err    error        // a write failed: close after the callback returns
	jobs   atomic.Int32 // QueueWork jobs not yet done: answers still owed

	reading  bool // we still want input (false after FIN, Close or Stop)
	peerDone bool // the peer shut its write side
	closing  bool // close as soon as out is empty
	closed   bool
	regR     bool // what epoll is watching now, to skip useless epoll_ctl
	regW     bool
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.peer }

// Fd is the socket's file descriptor, for setsockopt and the like. Do not
// read, write or close it behind the loop's back.
func (c *Conn) Fd() int { return c.fd }

// Context returns the value stored with SetContext: the slot for a
// handler's per-connection state, such as a protocol machine.
func (c *Conn) Context() any { return c.ctx }

// SetContext stores v with the connection.
func (c *Conn) SetContext(v any) { c.ctx = v }

// InboundBuffered is how many input bytes are there to consume.
func (c *Conn) InboundBuffered() int { return len(c.in) }

// OutboundBuffered is how many output bytes wait for the peer to read.
func (c *Conn) OutboundBuffered() int { return len(c.out) }

// Peek returns the next n input bytes without consuming them (n <= 0: all
// of them). With fewer than n bytes there, it returns what there is and
// io.ErrShortBuffer. The bytes are valid only until the callback returns;
// until then the handler may also overwrite them (to build an answer in
// place, say).
func (c *Conn) Peek(n int) ([]byte, error) {
	if n <= 0 || n == len(c.in) {
		return c.in, nil
	}
	if n > len(c.in) {
		return c.in, io.ErrShortBuffer
	}
	return c.in[:n], nil
}

// Next is Peek that also consumes the bytes it returns.
func (c *Conn) Next(n int) ([]byte, error) {
	b, err := c.Peek(n)
	c.in = c.in[len(b):]
	return b, err
}

// Discard consumes n input bytes (n <= 0: all) and says how many it did.
func (c *Conn) Discard(n int) (int, error) {
	b, err := c.Next(n)
	return len(b), err
}

// Write sends p, or as much of it as the kernel takes now, and keeps the
// rest to send when the socket is writable again. It copies what it keeps,
// so p may be reused at once. It fails only on a closed or broken
// connection; the loop then closes it after the callback.
func (c *Conn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, ErrClosed
	}
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	if len(c.out) == 0 {
		// Nothing queued before us: try the socket. On loopback this
		// nearly always takes everything, and nothing is copied.
		w, err := write(c.fd, p)
		if err != nil && err != unix.EAGAIN {
			c.err = err // EPIPE, ECONNRESET: the peer is gone
			return 0, err
		}
		if w > 0 {
			c.l.nOut.Add(int64(w))
			c.active = c.l.now
			p = p[w:]
		}
	}
	if len(p) > 0 {
		c.out = append(c.out, p...)
		c.updateInterest()
	}
	return n, nil
}

// flush writes pending output when the socket is writable again.
func (c *Conn) flush() {
	w, err := write(c.fd, c.out)
	if err != nil && err != unix.EAGAIN {
		c.err = err
		return
	}
	if w > 0 {
		c.l.nOut.Add(int64(w))
		c.active = c.l.now
		if c.out = c.out[w:]; len(c.out) == 0 {
			c.out = nil // give the memory back: an idle conn holds none
		}
	}
	if c.closing && c.owesNothing() {
		c.l.closeConn(c, nil)
		return
	}
	c.updateInterest()
}

// owesNothing reports whether c may close now: no output pending and no
// job in the pool whose answer would be lost.
func (c *Conn) owesNothing() bool { return len(c.out) == 0 && c.jobs.Load() == 0 }

// updateInterest tells epoll what this connection waits for now. Writable
// only while output is pending: a socket is writable nearly all the time,
// and asking for it otherwise would wake the loop for nothing. Readable
// only while output is under the cap: that is the backpressure.
func (c *Conn) updateInterest() {
	if c.closed {
		return
	}
	r := c.reading && !c.l.draining && len(c.out) < c.l.eng.opts.writeCap
	w := len(c.out) > 0
	if r == c.regR && w == c.regW {
		return
	}
	if err := c.l.p.mod(c.fd, r, w); err != nil {
		c.err = err
		return
	}
	c.regR, c.regW = r, w
}

// AsyncWrite queues p to be written on the connection's loop; any goroutine
// may call it. p must not change until then. done, if not nil, runs on the
// loop afterwards with Write's error (ErrClosed if the connection closed
// first). A caller that writes a lot should wait for done before writing
// more: that is its backpressure.
func (c *Conn) AsyncWrite(p []byte, done func(c *Conn, err error)) error {
	return c.l.enqueue(task{c: c, fn: func(c *Conn) {
		var err error
		if c.closed {
			err = ErrClosed
		} else {
			_, err = c.Write(p)
			c.l.after(c, None)
		}
		if done != nil {
			done(c, err)
		}
	}})
}

// Close closes the connection on its loop, after its pending output is
// flushed; any goroutine may call it.
func (c *Conn) Close() error {
	return c.l.enqueue(task{c: c, fn: func(c *Conn) { c.l.after(c, Close) }})
}

// Wake makes the loop call OnTraffic for c even though nothing arrived, with
// whatever input is still buffered; any goroutine may call it.
func (c *Conn) Wake() error {
	return c.l.enqueue(task{c: c, fn: func(c *Conn) {
		if !c.closed {
			c.in = c.rest
			c.l.traffic(c)
		}
	}})
}

// QueueWork runs work on the engine's worker pool, off every loop, and then
// done on c's loop, where it may Write the result: libuv's uv_queue_work.
// Inside done, Peek, Next and Discard see the input still buffered, as in
// OnTraffic. work gets a context that ends when the engine stops, so long
// work can give up. done is skipped if c closed in the meantime. Any
// goroutine may call QueueWork; it returns ErrPoolFull when the queue is
// full.
//
// A job in flight is an answer still owed: a peer that half-closes, and
// the idle timeout, wait for it.
func (c *Conn) QueueWork(work func(ctx context.Context), done func(c *Conn)) error {
	c.jobs.Add(1)
	err := c.l.eng.pool.submit(func(ctx context.Context) {
		work(ctx)
		c.l.enqueue(task{c: c, fn: func(c *Conn) {
			c.jobs.Add(-1)
			if !c.closed {
				c.in = c.rest
				done(c)
				c.l.keepRest(c)
				c.l.after(c, None)
			}
		}})
	})
	if err != nil {
		c.jobs.Add(-1)
	}
	return err
}
