package main

import (
	"encoding/json"
	"testing"

	"concurrent-servers-go/internal/procstat"
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

// With --rate the run is open-loop: the messages due in the window are
// conns x rate x duration whatever the server does, and with --pid the
// server's CPU per message and messages per CPU-second are inverses.
//
// Not parallel: runClient shares package-level cli flags, and two
// parallel runs race on them.
func TestBenchOpenLoopJSON(t *testing.T) {
	srv := steptest.Start(t, step2)
	host, port := hostPort(t, srv.Addr)
	code, out, errs := runClient(t, "bench", "--json", "--conns", "3", "--size", "20", "--rate", "200",
		"--warmup", "100ms", "--duration", "500ms", "--pid", itoa(srv.PID()), host, port)
	if code != 0 {
		t.Fatalf("bench exit %d\n%s%s", code, out, errs)
	}
	var r struct {
		Rate          float64        `json:"rate_per_conn"`
		Msgs          uint64         `json:"msgs"`
		Errors        map[string]int `json:"errors"`
		BytesSent     uint64         `json:"bytes_sent"`
		BytesAnswered uint64         `json:"bytes_answered"`
		PerMsg        *float64       `json:"server_cpu_per_msg_s"`
		MsgsPerCPU    *float64       `json:"msgs_per_server_cpu_s"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	// 3 x 200/s x 0.5 s = 300 due in the window; one either side for
	// the schedule's phase.
	if r.Rate != 200 || len(r.Errors) != 0 || r.Msgs < 297 || r.Msgs > 303 || r.BytesSent != r.BytesAnswered {
		t.Fatalf("unexpected result: %+v", r)
	}
	// The server may use too little CPU in 0.5 s for the tick-based
	// counters to see; when it is seen, the two figures must agree.
	if r.PerMsg != nil {
		if r.MsgsPerCPU == nil || *r.PerMsg**r.MsgsPerCPU < 0.99 || *r.PerMsg**r.MsgsPerCPU > 1.01 {
			t.Fatalf("server CPU per message %v and messages per CPU-second %v are not inverses", r.PerMsg, r.MsgsPerCPU)
		}
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
		{"bench", "--rate", "-1", "127.0.0.1", "1"},
		{"bench", "--rate", "100", "--pipeline", "4", "127.0.0.1", "1"},
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
