package app_test

import (
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"concurrent-servers-go/internal/steptest"
)

// With --stats a real server prints its clients and threads once a
// second: under step 3 --threads the threads follow the clients, under
// step 5 they do not.
func TestStatsOnSteps(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("threads and connections are read from /proc")
	}
	if testing.Short() {
		t.Skip("builds two steps")
	}
	const n = 20
	for _, tc := range []struct {
		pkg        string
		args       []string
		minThreads int // with n clients held
		maxThreads int
	}{
		{"concurrent-servers-go/step3_blocking", []string{"--threads"}, n, 1000},
		{"concurrent-servers-go/step5_select", nil, 1, n / 2},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			srv := steptest.Start(t, tc.pkg, append([]string{"--stats"}, tc.args...)...)
			for range n {
				steptest.DialAck(t, srv.Addr)
			}
			re := regexp.MustCompile(`(?m)^stats: conns=` + strconv.Itoa(n) + ` threads=(\d+) goroutines=\d+ rss=[\d.]+MiB cpu=[\d.]+s \(\d+% of a core\)$`)
			if !srv.WaitLog(re, 10*time.Second) {
				t.Fatalf("no stats line with conns=%d within 10 s:\n%s", n, srv.Log())
			}
			m := re.FindStringSubmatch(srv.Log())
			if th, _ := strconv.Atoi(m[1]); th < tc.minThreads || th > tc.maxThreads {
				t.Errorf("%d clients held: threads=%d, want %d..%d", n, th, tc.minThreads, tc.maxThreads)
			}
		})
	}
}
