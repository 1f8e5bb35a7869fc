package main

import (
	"errors"
	"log/slog"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/step7_eventloop_lib/evloop"
)

// server is the whole protocol server: step 6's loop, its fd table, its
// buffers and its EPOLLOUT bookkeeping now live in evloop, and what is left
// is what this server does differently from any other. Like the servers of
// steps 1 to 5 it takes only what it uses: a logger, and a callback that
// announces the bound address (with --port 0 that line is how a test or a
// user learns the port).
type server struct {
	evloop.BuiltinHandler
	log       *slog.Logger
	listening func(addr string)
	eng       *evloop.Engine // for its counters, once Run returns
}

func (s *server) OnBoot(eng *evloop.Engine) evloop.Action {
	s.eng = eng
	s.listening(eng.Addr().String())
	s.log.Debug("engine up", "loops", eng.Loops())
	return evloop.None
}

// OnOpen sends the ack and gives the connection its protocol machine, kept
// in the context slot: one byte of state per connection, owned by its loop.
func (s *server) OnOpen(c *evloop.Conn) ([]byte, evloop.Action) {
	s.log.Debug("peer connected", "peer", c.RemoteAddr())
	c.SetContext(new(protocol.Machine))
	return []byte{protocol.Ack}, evloop.None
}

// OnTraffic feeds everything that arrived through the machine and writes
// the answer. Next(-1) consumes it all, straight from the loop's shared
// read buffer. The answer is built in place over the input (in[:0]): an
// answer is never longer than its input and byte i of it is written only
// after input byte i was read, so no buffer is needed at all. Write copies
// only what the kernel refuses.
func (s *server) OnTraffic(c *evloop.Conn) evloop.Action {
	m := c.Context().(*protocol.Machine)
	in, _ := c.Next(-1)
	out := m.Feed(in[:0], in)
	if len(out) > 0 {
		c.Write(out)
	}
	return evloop.None
}

// OnClose logs why a connection ended; a reset costs that connection only.
func (s *server) OnClose(c *evloop.Conn, err error) evloop.Action {
	switch {
	case err == nil:
		s.log.Debug("peer done", "peer", c.RemoteAddr())
	case errors.Is(err, evloop.ErrIdle):
		s.log.Debug("idle, closed", "peer", c.RemoteAddr())
	default:
		s.log.Info("connection", "peer", c.RemoteAddr(), "err", err)
	}
	return evloop.None
}
