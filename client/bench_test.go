package main

import (
	"encoding/json"
	"testing"

	"concurrent-servers-go/client/procstat"
	"concurrent-servers-go/internal/steptest"
)

// Bench's count of verified answer bytes is exactly what the server wrote:
// /proc/PID/io counts the bytes the server passed to write(), and besides
// the answers it wrote only one '*' per connection.
func TestBenchCountsWhatTheServerAnswered(t *testing.T) {
	t.Parallel()
	srv := steptest.Start(t, step2)
	before, err := procstat.WrittenBytes(srv.PID())
	if err != nil {
		t.Skipf("cannot read the server's /proc/PID/io: %v", err)
	}
	host, port := hostPort(t, srv.Addr)
	code, out, errs := runClient(t, "bench", "--json", "--conns", "3", "--size", "50", "--pipeline", "4",
		"--warmup", "100ms", "--duration", "300ms", "--pid", itoa(srv.PID()), host, port)
	if code != 0 {
		t.Fatalf("bench exit %d\n%s%s", code, out, errs)
	}
	var r struct {
		Conns         int            `json:"conns"`
		Msgs          uint64         `json:"msgs"`
		MsgsPerSec    float64        `json:"msgs_per_s"`
		Errors        map[string]int `json:"errors"`
		BytesSent     uint64         `json:"bytes_sent"`
		BytesAnswered uint64         `json:"bytes_answered"`
		Latency       struct {
			P50, P99 float64
		} `json:"latency_s"`
		ServerCPU *float64 `json:"server_cpu_cores"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	after, err := procstat.WrittenBytes(srv.PID())
	if err != nil {
		t.Fatal(err)
	}
	if r.Conns != 3 || len(r.Errors) != 0 || r.Msgs == 0 || r.MsgsPerSec <= 0 {
		t.Fatalf("unexpected result: %+v", r)
	}
	if r.BytesAnswered != r.BytesSent || r.BytesAnswered%50 != 0 || r.Msgs*50 > r.BytesAnswered {
		t.Fatalf("sent %d bytes, answered %d, %d messages of 50 in the window", r.BytesSent, r.BytesAnswered, r.Msgs)
	}
	if got, want := after-before, int64(r.BytesAnswered+3); !wroteExactly(got, want) {
		t.Fatalf("server wrote %d bytes; bench verified %d answer bytes + 3 acks = %d", got, r.BytesAnswered, want)
	}
	if r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 || r.ServerCPU == nil {
		t.Fatalf("latency %+v, server CPU %v", r.Latency, r.ServerCPU)
	}
}

func TestBenchRefused(t *testing.T) {
	host, port := closedPort(t)
	code, out, errs := runClient(t, "bench", "--duration", "100ms", host, port)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	oneLine(t, errs, "connection refused")
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--conns", "0", "127.0.0.1", "1"},
		{"bench", "--nope", "127.0.0.1", "1"},
		{"bench", "--size", "65536", "--pipeline", "2", "127.0.0.1", "1"},
		{"bench", "192.0.2.1", "1"},
		{"bench", "127.0.0.1"},
	} {
		code, _, errs := runClient(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		oneLine(t, errs, "client bench: ")
	}
}

// wroteExactly compares a server's /proc/PID/io wchar growth with the bytes
// it owed its clients. wchar counts every write(2) of the process, and the
// Go runtime writes an 8-byte counter to its own eventfd to wake its poller
// (netpollBreak), now and then: a surplus of a few whole 8-byte writes is
// the runtime, any other difference is a miscount.
func wroteExactly(got, want int64) bool {
	extra := got - want
	return extra >= 0 && extra%8 == 0 && extra <= 8*16
}
