package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

const (
	bigPrime = "100000000000000003" // about 0.7 s of trial division
	small    = "7"
)

// ask sends one line on a new connection and returns the answer and how
// long it took.
func ask(t *testing.T, addr, line string) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return "", 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Error(err)
		return "", 0
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Errorf("%s: %v", line, err)
	}
	return got, time.Since(start)
}

func TestAnswers(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib/isprime")
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Several lines in one write, CRLF, garbage, and a line split across
	// two writes (kept by the library in between), too big once joined.
	c.Write([]byte("0\n1\n2\n9\r\n1000003\nx\n18446744073709551557"))
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("0\n"))
	want := []string{"not prime", "not prime", "prime", "not prime", "prime", "error: want a decimal number below 2^64", "error: want a decimal number below 2^64"}
	r := bufio.NewReader(c)
	for _, w := range want {
		got, err := r.ReadString('\n')
		if err != nil || strings.TrimSuffix(got, "\n") != w {
			t.Fatalf("got %q, %v; want %q", got, err, w)
		}
	}
}

// A client that sends its numbers and half-closes at once (printf | nc
// does) still gets every answer: a check in the pool is an answer owed,
// and the server waits for it before closing.
func TestHalfCloseWaitsForOwedAnswers(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib/isprime", "--offload")
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte("10000000000000061\n4\n7\n"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "prime\nnot prime\nprime\n" {
		t.Fatalf("got %q, %v; want three answers, then EOF", got, err)
	}
}

// slowdown runs the experiment: one client asks about a big prime, a
// second asks about 7 a moment later, and it returns the second's latency
// divided by the first's.
func slowdown(t *testing.T, args ...string) float64 {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib/isprime", args...)
	big := make(chan time.Duration, 1)
	go func() {
		got, d := ask(t, srv.Addr, bigPrime)
		if got != "prime\n" {
			t.Errorf("%s: got %q", bigPrime, got)
		}
		big <- d
	}()
	time.Sleep(50 * time.Millisecond)
	got, d := ask(t, srv.Addr, small)
	if got != "prime\n" {
		t.Errorf("7: got %q", got)
	}
	bigD := <-big
	t.Logf("%v: big prime answered in %v, 7 in %v", args, bigD, d)
	return float64(d) / float64(bigD)
}

// On the loop, the check of the big prime holds up the small one: it is
// answered only after the big one, so the ratio is near 1. In the pool the
// loop stays free and 7 comes back in a blink. The thresholds are far
// apart from both outcomes on purpose.
func TestOffloadKeepsOthersFast(t *testing.T) {
	if r := slowdown(t, "--offload"); r > 0.25 {
		t.Errorf("with --offload a second client took %.2f of the big check's time; want well under 0.25", r)
	}
}

func TestOnLoopStallsOthers(t *testing.T) {
	if r := slowdown(t); r < 0.5 {
		t.Errorf("without --offload a second client took only %.2f of the big check's time; the loop should have stalled it", r)
	}
}

// Stopping while a check runs in the pool ends promptly: the check sees the
// engine's context end and gives up (steptest's cleanup fails the test if
// the server does not exit 0 in time).
func TestStopDuringOffloadedWork(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step7_eventloop_lib/isprime", "--offload")
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("18446744073709551557\n")) // minutes of work
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := srv.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(start))
}
