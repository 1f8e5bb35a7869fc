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

import (
	"bytes"
	"encoding/binary"
	"slices"
)

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
//
// Three things make it fast. The answer is stored through an index into
// dst, grown once, where append would check capacity and update the length
// per byte. A message that runs past a few bytes has the rest of it found
// with bytes.IndexByte, which looks for the '$' with vector instructions.
// And that rest is answered by addOne, eight bytes at a time. A message's
// first bytes go one by one, because for a short one the call and setup of
// IndexByte cost more than they save.
func (m *Machine) Feed(dst, in []byte) []byte {
	st := m.State
	if st == WaitForMsg {
		// Skip the noise before the first message at vector speed, and
		// when there is no message at all return before growing dst.
		i := bytes.IndexByte(in, '^')
		if i < 0 {
			return dst
		}
		in, st = in[i+1:], InMsg
	}
	dst = slices.Grow(dst, len(in)) // the answer is never longer than in
	out := dst[len(dst):cap(dst)]
	n := 0   // answer bytes stored in out
	run := 0 // bytes of the current message answered one by one
	for i := 0; i < len(in); i++ {
		b := in[i]
		switch {
		case st == WaitForMsg:
			if b == '^' {
				st, run = InMsg, 0
			}
		case b == '$':
			st = WaitForMsg
		default:
			// Byte arithmetic wraps, so 0xFF is answered with 0x00.
			out[n] = b + 1
			n++
			if run++; run < short {
				continue
			}
			// A long message: answer the rest of it, up to its '$' or the
			// end of in, at once.
			rest := in[i+1:]
			if end := bytes.IndexByte(rest, '$'); end >= 0 {
				rest = rest[:end]
			}
			addOne(out[n:n+len(rest)], rest)
			n += len(rest)
			i += len(rest)
			run = 0
		}
	}
	m.State = st
	return dst[:len(dst)+n]
}

// short is how many bytes of a message Feed answers one by one before it
// looks for the message's end with bytes.IndexByte.
const short = 16

// addOne stores src[k]+1 in dst[k] for every k of src; dst is at least as
// long, and may be src itself. Go compiles a byte loop to one byte per
// step, so this adds eight at a time in a uint64 ("SIMD within a
// register"). Adding one to each byte's low seven bits cannot carry into
// the next byte, since 0x7F+1 still fits in eight bits; XOR with the top
// bits then puts each back, flipped where the low bits ran over into it,
// which is what +1 does to a top bit. So 0x41 becomes 0x42, 0x7F becomes
// 0x80 and 0xFF becomes 0x00, as b+1 would make them. The byte order does
// not matter, since no carry crosses a byte.
func addOne(dst, src []byte) {
	const low7, one = 0x7F7F7F7F7F7F7F7F, 0x0101010101010101
	for len(src) >= 8 {
		x := binary.LittleEndian.Uint64(src)
		binary.LittleEndian.PutUint64(dst, (x&low7+one)^(x&^low7))
		dst, src = dst[8:], src[8:]
	}
	for k, c := range src {
		dst[k] = c + 1
	}
}
