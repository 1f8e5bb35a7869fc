//go:build linux

package main

// Edge-triggered mode (--edge). Level-triggered, epoll reports an fd on
// every wait for as long as it is ready, so handle reads once and trusts the
// next wait to say if more is left. Edge-triggered, epoll reports a change
// (new bytes arrived, the queue got a client) once: stop reading with bytes
// left and no new edge will ever come for them. So every wake-up reads, or
// accepts, until EAGAIN. But "until EAGAIN" is unbounded when a client sends
// as fast as we read, so a cap ends each drain, and what the cap left is
// queued in s.again for the loop to serve after everyone else's events.
//
// Writes need no such loop: the kernel takes what fits, and a short write
// means the send buffer filled up, which is itself what makes a new
// EPOLLOUT edge come when it drains.

import "golang.org/x/sys/unix"

const (
	// maxReads caps the reads one wake-up gives one connection (64 KiB),
	// and maxAccepts the clients one wake-up takes from the listener: a
	// client that sends as fast as we read must not keep the loop from
	// everyone else.
	maxReads   = 16
	maxAccepts = 64
)

// edgeState is what edge-triggered mode adds to a server.
type edgeState struct {
	edge         bool    // --edge: register every fd with EPOLLET
	again, spare []*conn // connections the read cap left unread
	acceptAgain  bool    // the accept cap left clients queued
}

// trigger is the flag every registration carries: EPOLLET asks for edges.
func (p *poller) trigger() uint32 {
	if p.edge {
		return unix.EPOLLET
	}
	return 0
}

// handleEdge serves one event for c and keeps reading until EAGAIN says
// the socket is drained, up to maxReads. (handle stops reading on its own
// when c owes too much: watch then takes EPOLLIN out, and putting it back
// later with EPOLL_CTL_MOD makes the kernel look at the socket again and
// report bytes already waiting, edge or no edge.)
func (s *server) handleEdge(c *conn, readable bool) {
	for range maxReads {
		if !s.handle(c, readable) || s.conns[c.fd] != c || !c.wantRead() {
			return // drained (EAGAIN), closed, at EOF, or held back
		}
		readable = true
	}
	// The cap, not EAGAIN, ended the drain: no edge will announce what
	// is left, so we must remember it.
	if !c.more {
		c.more = true
		s.again = append(s.again, c)
	}
}

// acceptEdge accepts until the listener's queue is empty, up to maxAccepts.
func (s *server) acceptEdge() {
	for range maxAccepts {
		if !s.accept() {
			return
		}
	}
	s.acceptAgain = true
}

// serveAgain gives what the caps left one more turn, after every event of
// this round. A connection the cap stops again waits for the next round;
// while any waits, serve's epoll_wait only looks, without sleeping.
func (s *server) serveAgain() {
	again := s.again
	s.again = s.spare[:0]
	for _, c := range again {
		c.more = false
		// Still ours? It may have been closed meanwhile, and its fd
		// number given to a new client.
		if s.conns[c.fd] == c && c.wantRead() {
			s.handleEdge(c, true)
		}
	}
	clear(again)
	s.spare = again[:0]
	if s.acceptAgain && !s.paused {
		s.acceptAgain = false
		s.acceptEdge()
	}
}
