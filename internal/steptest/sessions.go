package steptest

import (
	"context"
	"testing"
	"time"

	"concurrent-servers-go/internal/session"
)

// Scale is the time scale end-to-end tests run the classic session at: one
// session takes 0.22 s instead of 2.2 s. Long enough that a sequential
// server's queueing dwarfs connection set-up even under -race on a busy
// 2-core machine, short enough for a fast suite.
const Scale = 0.1

// Sessions runs n classic sessions at once against addr on the Scale clock,
// fails the test unless every one of them received exactly what it was
// owed, and returns the report for timing assertions.
func Sessions(t testing.TB, addr string, n int) *session.Report {
	t.Helper()
	rep := session.Run(context.Background(), session.Options{Addr: addr, N: n, Scale: Scale})
	if rep.Failed() > 0 {
		t.Fatalf("%d of %d sessions failed against %s:\n%v", rep.Failed(), n, addr, rep.Summary())
	}
	return rep
}

// Ratio is how many single sessions a run lasted: about 1 when the server
// served the sessions together, about n when it served them one by one.
func Ratio(rep *session.Report) float64 {
	return float64(rep.Elapsed) / float64(session.Duration(Scale))
}

// SessionTime is one session's length on the Scale clock.
func SessionTime() time.Duration { return session.Duration(Scale) }
