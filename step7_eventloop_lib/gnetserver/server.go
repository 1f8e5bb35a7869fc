package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/protocol"
	"concurrent-servers-go/internal/sock"
)

// server is step 7's server.go written against gnet: compare the two files
// callback by callback.
type server struct {
	gnet.BuiltinEventEngine
	ctx       context.Context
	log       *slog.Logger
	listening func(addr string) // told the bound address once gnet listens
}

// serve runs gnet until ctx ends. Like step 7's server it takes what it
// needs, not the command line's whole environment.
func serve(ctx context.Context, host string, port, loops int, log *slog.Logger, listening func(string)) error {
	addr := "tcp://" + net.JoinHostPort(host, strconv.Itoa(port))
	// Without WithReusePort gnet runs a main reactor that accepts and hands
	// connections to the sub-reactors (evloop picks SO_REUSEPORT instead).
	// That also keeps --port 0 simple: there is one listener to ask.
	err := gnet.Run(&server{ctx: ctx, log: log, listening: listening}, addr,
		gnet.WithMulticore(true), gnet.WithNumEventLoop(loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(slogger{log}))
	if err == nil && ctx.Err() == nil {
		// gnet v2.9.7 shuts the whole engine down when accept fails, even
		// for EMFILE, and Run then returns nil. Nobody asked us to stop:
		// say so, and exit 1 rather than look like a clean stop.
		err = errors.New("gnet engine stopped on its own (see its log lines above)")
	}
	return err
}

// OnBoot learns the bound address (gnet says it only through a duplicate of
// the listening fd) and ties the engine's Stop to the context.
func (s *server) OnBoot(eng gnet.Engine) gnet.Action {
	fd, err := eng.Dup()
	if err != nil {
		s.log.Error("dup listener", "err", err)
		return gnet.Shutdown
	}
	sa, err := unix.Getsockname(fd)
	unix.Close(fd)
	if err != nil {
		s.log.Error("getsockname", "err", os.NewSyscallError("getsockname", err))
		return gnet.Shutdown
	}
	s.listening(sock.AddrPort(sa).String())
	context.AfterFunc(s.ctx, func() { eng.Stop(context.Background()) })
	return gnet.None
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(new(protocol.Machine))
	return []byte{protocol.Ack}, gnet.None
}

// OnTraffic is evloop's, word for word: the answer is built in place over
// the consumed input, which gnet also lets a handler own until it returns.
func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	m := c.Context().(*protocol.Machine)
	in, _ := c.Next(-1)
	out := m.Feed(in[:0], in)
	if len(out) > 0 {
		c.Write(out)
	}
	return gnet.None
}

func (s *server) OnClose(c gnet.Conn, err error) gnet.Action {
	if err != nil {
		s.log.Debug("connection", "peer", c.RemoteAddr(), "err", err)
	}
	return gnet.None
}

// slogger sends gnet's printf-style log lines to the step's slog logger.
type slogger struct{ l *slog.Logger }

func (s slogger) Debugf(f string, a ...any) { s.l.Debug(fmt.Sprintf(f, a...)) }
func (s slogger) Infof(f string, a ...any)  { s.l.Info(fmt.Sprintf(f, a...)) }
func (s slogger) Warnf(f string, a ...any)  { s.l.Warn(fmt.Sprintf(f, a...)) }
func (s slogger) Errorf(f string, a ...any) { s.l.Error(fmt.Sprintf(f, a...)) }

// Fatalf is gnet's "cannot go on"; it exits as gnet's own logger would.
func (s slogger) Fatalf(f string, a ...any) {
	s.l.Error(fmt.Sprintf(f, a...))
	os.Exit(1)
}
