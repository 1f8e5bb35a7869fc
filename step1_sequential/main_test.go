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

// Three clients at once against a sequential server: every session is
// correct, and they take about three sessions' time, because each waits
// for the one before it to finish. The ratio is generous (2.5 of 3) so a
// busy machine cannot make the test flaky; a concurrent server scores ~1.
func TestSequentialServesOneAtATime(t *testing.T) {
	srv := steptest.Start(t, "concurrent-servers-go/step1_sequential")
	rep := steptest.Sessions(t, srv.Addr, 3)
	if r := steptest.Ratio(rep); r < 2.5 {
		t.Fatalf("3 sessions took %v = %.2f sessions; a sequential server needs about 3", rep.Elapsed, r)
	}
	// They finished one after another: about two sessions apart from the
	// first to the last (served together, they would end together). The
	// spread, not the first end time, is what a loaded machine cannot
	// fake: a late start delays every session alike.
	first, last := rep.Sessions[0].Elapsed, rep.Sessions[0].Elapsed
	for _, s := range rep.Sessions {
		first, last = min(first, s.Elapsed), max(last, s.Elapsed)
	}
	one := steptest.SessionTime()
	if last-first < one*3/2 {
		t.Fatalf("sessions ended between %v and %v, within %v of each other; one session is %v", first, last, last-first, one)
	}
}
