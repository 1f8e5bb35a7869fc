package main

import (
	"os"
	"testing"

	"concurrent-servers-go/internal/steptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	steptest.Cleanup()
	os.Exit(code)
}

// Three clients at once, each on its own goroutine: every session is
// correct and together they take about one session's time. 2 (halfway to the 3 a sequential server takes) leaves room
// for a busy machine; step 1 takes about 3.
func TestConcurrentServesAllAtOnce(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step2_thread_per_conn")
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r > 2 {
		t.Fatalf("3 sessions took %v = %.2f sessions; a concurrent server needs about 1", rep.Elapsed, r)
	}
}

// Many more clients than cores still overlap.
func TestManyClients(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step2_thread_per_conn")
	rep := steptest.Sessions(t, srv.Addr, 200)
	if r := steptest.Ratio(rep); r > 3 {
		t.Fatalf("200 sessions took %v = %.2f sessions", rep.Elapsed, r)
	}
}
