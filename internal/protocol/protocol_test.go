package protocol

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// The examples of docs/protocol.md, fed in order through one connection's machine,
// since the third continues the state the second left behind.
func TestProtocolExamples(t *testing.T) {
	type step struct{ in, want string }
	cases := []struct {
		name  string
		steps []step
	}{
		{"classic session", []step{
			{"^abc$de^abte$f", "bcdbcuf"},
			{"xyz^123", "234"},
			{"25$^ab0000$abab", "36bc1111"},
		}},
		{"three messages", []step{{"^ab$^kl$^80$50", "bclm91"}}},
		{"empty messages", []step{{"^$^$$foo^$$", ""}}},
		{"caret inside a message", []step{{"^a^b$", "b_c"}}},
		{"wraps at 0xFF", []step{{"^\xff\x00\xfe", "\x00\x01\xff"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m Machine
			for _, s := range tc.steps {
				got := m.Feed(nil, []byte(s.in))
				if string(got) != s.want {
					t.Errorf("Feed(%q) = %q, want %q", s.in, got, s.want)
				}
			}
		})
	}
}

// A stream must give the same answer however the network chops it up.
func TestProtocolSplitAnywhere(t *testing.T) {
	in := []byte("^abc$de^abte$fxyz^12325$^ab0000$abab")
	var whole Machine
	want := whole.Feed(nil, in)
	for cut := 0; cut <= len(in); cut++ {
		var m Machine
		got := m.Feed(nil, in[:cut])
		got = m.Feed(got, in[cut:])
		if !bytes.Equal(got, want) {
			t.Fatalf("split at %d: got %q, want %q", cut, got, want)
		}
	}
}

func TestProtocolState(t *testing.T) {
	var m Machine
	if m.State != WaitForMsg || m.State.String() != "WAIT_FOR_MSG" {
		t.Fatalf("zero Machine is in %v, want WAIT_FOR_MSG", m.State)
	}
	m.Feed(nil, []byte("xyz^123"))
	if m.State != InMsg || m.State.String() != "IN_MSG" {
		t.Fatalf("after an open message the state is %v, want IN_MSG", m.State)
	}
}

// Every one of the 256 byte values is answered with its successor inside a
// message, except '$', which ends it.
func TestProtocolAllBytes(t *testing.T) {
	var m Machine
	m.Feed(nil, []byte{'^'})
	for i := 0; i < 256; i++ {
		b := byte(i)
		got := m.Feed(nil, []byte{b})
		if b == '$' {
			if len(got) != 0 || m.State != WaitForMsg {
				t.Fatalf("'$' answered %q and left state %v", got, m.State)
			}
			m.Feed(nil, []byte{'^'})
			continue
		}
		if len(got) != 1 || got[0] != b+1 {
			t.Fatalf("byte %#02x answered %q, want %#02x", b, got, b+1)
		}
	}
}

// addOne, eight bytes at a time, gives every byte value its successor at
// every position of a word and in the tail after the last whole word, both
// into another buffer and in place.
func TestAddOneEveryByte(t *testing.T) {
	for n := range 20 {
		for v := range 256 {
			for at := range n {
				src := bytes.Repeat([]byte{0x7F}, n)
				src[at] = byte(v)
				want := make([]byte, n)
				for k, c := range src {
					want[k] = c + 1
				}
				dst := make([]byte, n)
				addOne(dst, src)
				if !bytes.Equal(dst, want) {
					t.Fatalf("n=%d byte %#02x at %d: got % x, want % x", n, v, at, dst, want)
				}
				addOne(src, src)
				if !bytes.Equal(src, want) {
					t.Fatalf("in place, n=%d byte %#02x at %d: got % x, want % x", n, v, at, src, want)
				}
			}
		}
	}
}

// Feeding in place, over the input's own buffer, gives the same answer.
func TestFeedInPlace(t *testing.T) {
	in := []byte("^abc$de^abte$fxyz^12325$^ab0000$abab")
	var a, b Machine
	want := a.Feed(nil, in)
	buf := append([]byte(nil), in...)
	if got := b.Feed(buf[:0], buf); !bytes.Equal(got, want) {
		t.Fatalf("in place: %q, want %q", got, want)
	}
}

func TestFeedDoesNotAllocate(t *testing.T) {
	in := bytes.Repeat([]byte("^abc$de^abte$f"), 64)
	buf := make([]byte, 0, len(in))
	var m Machine
	allocs := testing.AllocsPerRun(100, func() {
		buf = m.Feed(buf[:0], in)
	})
	if allocs != 0 {
		t.Fatalf("Feed allocated %.1f times per call with a reused buffer", allocs)
	}
}

// reference is the protocol written as plainly as possible, one byte and one
// branch at a time, for the fuzzer to compare the real machine against.
func reference(in []byte) (out []byte, inMsg bool) {
	for _, b := range in {
		if !inMsg {
			if b == '^' {
				inMsg = true
			}
			continue
		}
		if b == '$' {
			inMsg = false
			continue
		}
		out = append(out, byte((int(b)+1)%256))
	}
	return out, inMsg
}

// FuzzMachine checks the machine against reference for any input, split at
// any point into two reads.
func FuzzMachine(f *testing.F) {
	f.Add([]byte("^abc$de^abte$f"), uint16(3))
	f.Add([]byte("xyz^123"), uint16(0))
	f.Add([]byte("^$^$$foo^$$"), uint16(5))
	f.Add([]byte{'^', 0xff, '$', '^', 0}, uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		c := int(cut) % (len(in) + 1)
		var m Machine
		got := m.Feed(nil, in[:c])
		got = m.Feed(got, in[c:])
		want, inMsg := reference(in)
		if !bytes.Equal(got, want) {
			t.Fatalf("Feed(%q) split at %d = %q, reference says %q", in, c, got, want)
		}
		if (m.State == InMsg) != inMsg {
			t.Fatalf("state after %q is %v, reference says inMsg=%v", in, m.State, inMsg)
		}
	})
}

// bytewise is Feed as it was first written, one byte and one append at a
// time: the reference the faster Feed must match byte for byte and state for
// state.
func bytewise(st State, dst, in []byte) ([]byte, State) {
	for _, b := range in {
		switch {
		case st == WaitForMsg:
			if b == '^' {
				st = InMsg
			}
		case b == '$':
			st = WaitForMsg
		default:
			dst = append(dst, b+1)
		}
	}
	return dst, st
}

// checkChunks feeds in through one Machine in the chunks that cuts (sorted
// offsets into in) make, three ways: into a fresh dst, appending after a
// prefix already in dst, and in place over a copy of the chunk. After every
// chunk each must equal bytewise's answer and state.
func checkChunks(t *testing.T, in []byte, cuts []int) {
	t.Helper()
	var m, p, q Machine
	st := WaitForMsg
	prefix := []byte("prefix")
	from := 0
	for _, to := range append(cuts, len(in)) {
		chunk := in[from:to]
		var want []byte
		want, st = bytewise(st, nil, chunk)
		got := m.Feed(nil, chunk)
		after := p.Feed(append([]byte(nil), prefix...), chunk)
		buf := append([]byte(nil), chunk...)
		inPlace := q.Feed(buf[:0], buf)
		switch {
		case !bytes.Equal(got, want):
			t.Fatalf("Feed(%q) of %q = %q, bytewise says %q", chunk, in, got, want)
		case !bytes.Equal(after, append(append([]byte(nil), prefix...), want...)):
			t.Fatalf("Feed(%q, %q) of %q = %q, want the prefix then %q", prefix, chunk, in, after, want)
		case !bytes.Equal(inPlace, want):
			t.Fatalf("Feed in place over %q of %q = %q, bytewise says %q", chunk, in, inPlace, want)
		case m.State != st || p.State != st || q.State != st:
			t.Fatalf("after %q of %q the states are %v %v %v, bytewise says %v", chunk, in, m.State, p.State, q.State, st)
		}
		from = to
	}
}

// randomStream is n bytes drawn mostly from the bytes that matter to the
// machine ('^', '$', 0xFF, 0x00) and a few letters, so that random inputs
// have short and long messages, long noise and every edge, not the
// '^'-less noise that uniform bytes would be.
func randomStream(r *rand.Rand, n int) []byte {
	alphabet := []byte{'^', '$', 0xff, 0x00, 'a', 'b', '#', '_'}
	in := make([]byte, n)
	// A per-stream weight for the two delimiters, from frequent (short
	// messages) to rare (messages far longer than Feed's short cut).
	w := 2 + r.IntN(60)
	for i := range in {
		if r.IntN(w) == 0 {
			in[i] = alphabet[r.IntN(2)]
		} else {
			in[i] = alphabet[2+r.IntN(len(alphabet)-2)]
		}
	}
	return in
}

// randomCuts is up to k sorted offsets into a stream of n bytes.
func randomCuts(r *rand.Rand, n, k int) []int {
	cuts := make([]int, r.IntN(k+1))
	for i := range cuts {
		cuts[i] = r.IntN(n + 1)
	}
	slices.Sort(cuts)
	return cuts
}

// Feed against bytewise on a few thousand random streams, each split at
// random points into reads.
func TestFeedMatchesBytewise(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for range 3000 {
		in := randomStream(r, r.IntN(300))
		checkChunks(t, in, randomCuts(r, len(in), 6))
	}
}

// FuzzFeedChunks does the same for the fuzzer's inputs, seed picking where
// they are cut.
func FuzzFeedChunks(f *testing.F) {
	f.Add([]byte("^abc$de^abte$fxyz^12325$^ab0000$abab"), uint64(1))
	f.Add(append([]byte("^"), bytes.Repeat([]byte{0xff}, 40)...), uint64(2))
	f.Add([]byte("noise^0123456789abcdefghij$more^x"), uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		r := rand.New(rand.NewPCG(seed, seed>>32))
		checkChunks(t, in, randomCuts(r, len(in), 4))
	})
}

// The inputs of the benchmarks below, about 4 KiB each, the size of one
// server read under load.
var (
	// Short messages with noise between them: two to six bytes inside,
	// zero to four outside, from a fixed generator so every run feeds the
	// same bytes. The worst case for a loop that scans ahead for '$'.
	benchShort = func() []byte {
		r := rand.New(rand.NewPCG(1, 2))
		var in []byte
		for len(in) < 4096 {
			in = append(in, '^')
			for range 2 + r.IntN(5) {
				in = append(in, 'a'+byte(r.IntN(26)))
			}
			in = append(in, '$')
			for range r.IntN(5) {
				in = append(in, 'x')
			}
		}
		return in
	}()
	// The classic client session of docs/protocol.md, repeated.
	benchClassic = bytes.Repeat([]byte("^abc$de^abte$fxyz^12325$^ab0000$abab"), 4096/36)
	// One long message, what `client bench` sends: one '^', then only
	// message bytes.
	benchLong = append([]byte{'^'}, bytes.Repeat([]byte("0123456789abcdef"), 4096/16)...)
)

func benchFeed(b *testing.B, in []byte) {
	buf := make([]byte, 0, len(in))
	b.SetBytes(int64(len(in)))
	var m Machine
	for b.Loop() {
		m.State = WaitForMsg
		buf = m.Feed(buf[:0], in)
	}
}

func BenchmarkFeedShort(b *testing.B)   { benchFeed(b, benchShort) }
func BenchmarkFeedClassic(b *testing.B) { benchFeed(b, benchClassic) }
func BenchmarkFeedLong(b *testing.B)    { benchFeed(b, benchLong) }
