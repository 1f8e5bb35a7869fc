// Package protocol is the toy protocol every step speaks, as a pure state
// machine: bytes in, answer bytes out, no I/O. Each server model in this
// repository differs only in *how* it gets bytes to and from a socket; what it
// does with them lives here, once, so the steps cannot drift apart.
//
// The rules (docs/protocol.md has them in full, with examples and the
// classic client session):
//
//   - On accept the server sends Ack ('*') before anything else.
//   - A connection starts in WaitForMsg, where every byte is ignored except
//     '^', which opens a message (InMsg).
//   - In InMsg, '$' closes the message; any other byte b is answered at once
//     with b+1 (mod 256).
//
// Answers are produced byte for byte as input arrives, never held back until
// a message ends, so a message may be of any length and the server needs no
// buffer that grows with it.
package protocol

// Ack is the byte a server sends as soon as it has accepted a connection. A
// client's connect() returns once the kernel has queued the connection, long
// before a busy server calls accept(); waiting for Ack makes the client's
// clock measure the server model rather than the kernel's backlog.
const Ack = '*'

// State is where a connection stands in the protocol.
type State uint8

const (
	// WaitForMsg ignores every byte except '^'.
	WaitForMsg State = iota
	// InMsg answers every byte with its successor, until '$'.
	InMsg
)

func (s State) String() string {
	if s == InMsg {
		return "IN_MSG"
	}
	return "WAIT_FOR_MSG"
}

// Machine is one connection's protocol state. The zero value is a fresh
// connection, in WaitForMsg. It is a single byte, so a server can keep one per
// connection in a table of thousands at no real cost.
type Machine struct {
	State State
}

// Feed runs the received bytes in through the machine and appends the answer
// bytes to dst, returning the extended slice (like append). It never
// allocates when dst has room for len(in) more bytes, which a caller gets by
// reusing one buffer: the answer is never longer than the input.
//
// dst may be in[:0]: answer byte k is written only after input byte k has
// been read, so a server can answer in place, over its read buffer.
func (m *Machine) Feed(dst, in []byte) []byte {
	st := m.State
	for _, b := range in {
		switch {
		case st == WaitForMsg:
			if b == '^' {
				st = InMsg
			}
		case b == '$':
			st = WaitForMsg
		default:
			// Byte arithmetic wraps, so 0xFF is answered with 0x00.
			dst = append(dst, b+1)
		}
	}
	m.State = st
	return dst
}
