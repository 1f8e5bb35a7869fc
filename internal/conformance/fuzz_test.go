package conformance

import (
	"flag"
	"strings"
	"testing"
)

var fuzzRows = flag.String("fuzz-rows", "step6,step6-edge,step6-loops2,step7,step7-gnet",
	"the rows FuzzLive talks to, comma-separated")

// FuzzLive sends a fuzzed byte stream, cut into fuzzed chunks (one write
// each), to live event-loop servers (step6 in both trigger modes and with
// two loops, step7 and its gnet reference), half-closes, and compares what
// comes back with the reference protocol.Machine. The seed corpus runs with
// every `go test`; to search for more, one worker per core:
//
//	go test ./internal/conformance -run '^$' -fuzz FuzzLive -fuzztime 2m
//	go test ./internal/conformance -run '^$' -fuzz FuzzLive -fuzz-rows step6-edge
//
// Every fuzz worker starts its own servers. When the fuzzer finds a new
// interesting input it spends up to -fuzzminimizetime (60 s by default)
// shrinking it, and the exec count stands still meanwhile; add
// -fuzzminimizetime 5s to keep it moving. (The machine itself is fuzzed
// against a plain reference in internal/protocol: FuzzMachine.)
func FuzzLive(f *testing.F) {
	var names, addrs []string
	for _, name := range strings.Split(*fuzzRows, ",") {
		if r := rowNamed(name); r.exists() && (r.csrc == "" || haveLibuv()) {
			names = append(names, name)
			addrs = append(addrs, r.start(f).Addr)
		}
	}
	if len(addrs) == 0 {
		f.Skip("neither step6_epoll nor step7_eventloop_lib is in this checkout yet")
	}
	for _, ex := range examples {
		f.Add([]byte(ex.send), []byte{0})
	}
	f.Add(allExamples(), []byte{2, 0, 7, 1})
	f.Add([]byte{'^', 0xff, '$', '^', 0, '^', '$'}, []byte{})
	f.Add([]byte("garbage before ^a message$ and after^"), []byte{5, 5, 5, 5, 5, 5})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		if len(data) > 64<<10 {
			data = data[:64<<10]
		}
		// Each cut byte is the next chunk's length minus one; what is
		// left after the cuts is the last chunk.
		var chunks [][]byte
		rest := data
		for _, c := range cuts {
			if len(rest) == 0 {
				break
			}
			n := min(int(c)+1, len(rest))
			chunks, rest = append(chunks, rest[:n]), rest[n:]
		}
		if len(rest) > 0 {
			chunks = append(chunks, rest)
		}
		for i, addr := range addrs {
			if err := converse(dialer(false), addr, chunks...); err != nil {
				t.Fatalf("%s, %d bytes in %d writes: %v", names[i], len(data), len(chunks), err)
			}
		}
	})
}
