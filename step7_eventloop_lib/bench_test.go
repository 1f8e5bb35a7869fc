package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"concurrent-servers-go/internal/procstat"
	"concurrent-servers-go/internal/sock"
	"concurrent-servers-go/internal/steptest"
)

// The benchmarks compare this step's server with the same server on gnet,
// side by side in one run. They are measurements, not tests: run them on
// purpose, with the load generator on the other core, and compare the
// medians with benchstat:
//
//	for i in 1 2 3 4 5 6; do taskset -c 1 go test -run '^$' -bench . -benchtime 1x -count 1 ./step7_eventloop_lib -args -gnet-first=$((i % 2)); done | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /server bench.txt
//
// (A loop of -count 1 runs rather than -count 6, so that every round
// measures both servers back to back and the machine's noise hits both;
// -gnet-first swaps the pair every other round, so that neither server
// always runs right after the other one stopped.)
//
// Each server is started pinned to core 0 with taskset, so both run one
// event loop (runtime.NumCPU() is 1 inside that affinity mask).

var servers = []struct{ name, pkg string }{
	{"evloop", "concurrent-servers-go/step7_eventloop_lib"},
	{"gnet", "concurrent-servers-go/step7_eventloop_lib/gnetserver"},
}

var gnetFirst = flag.Bool("gnet-first", false, "run gnet before evloop in every pair")

// pair is servers in the order this round runs them.
func pair() []struct{ name, pkg string } {
	if *gnetFirst {
		return []struct{ name, pkg string }{servers[1], servers[0]}
	}
	return servers
}

// startPinned runs a server on core 0.
func startPinned(b *testing.B, pkg string) *steptest.Server {
	return steptest.StartCmd(b, exec.Command("taskset", "-c", "0", steptest.Build(b, pkg), "--port", "0"))
}

// benchResult is the part of `client bench --json` reported here.
type benchResult struct {
	MsgsPerS float64 `json:"msgs_per_s"`
	Latency  struct {
		P50, P99 float64
	} `json:"latency_s"`
	ServerCPU float64           `json:"server_cpu_cores"`
	ClientCPU float64           `json:"client_cpu_cores"`
	Errors    map[string]uint64 `json:"errors"`
}

// BenchmarkEcho drives each server with `client bench`: 64-byte messages,
// 100 and 1000 connections, one message in flight per connection or 16
// (pipelined). Every answer byte is verified by the client.
func BenchmarkEcho(b *testing.B) {
	steptest.NeedsLinux(b, "taskset(1) pins the servers and the client")
	client := steptest.Build(b, "concurrent-servers-go/client")
	for _, conns := range []int{100, 1000} {
		for _, pipe := range []int{1, 16} {
			for _, s := range pair() {
				b.Run(fmt.Sprintf("conns=%d/pipeline=%d/server=%s", conns, pipe, s.name), func(b *testing.B) {
					srv := startPinned(b, s.pkg)
					host, port, _ := net.SplitHostPort(srv.Addr)
					out, err := exec.Command("taskset", "-c", "1", client, "bench", "--json",
						"--conns", fmt.Sprint(conns), "--size", "64", "--pipeline", fmt.Sprint(pipe),
						"--duration", "5s", "--pid", fmt.Sprint(srv.PID()), host, port).Output()
					if err != nil {
						b.Fatalf("client bench: %v\n%s", err, out)
					}
					var r benchResult
					if err := json.Unmarshal(out, &r); err != nil {
						b.Fatalf("client bench output: %v\n%s", err, out)
					}
					if len(r.Errors) > 0 {
						b.Fatalf("client bench saw errors: %v", r.Errors)
					}
					b.ReportMetric(r.MsgsPerS, "msgs/s")
					b.ReportMetric(r.Latency.P50*1e6, "p50-µs")
					b.ReportMetric(r.Latency.P99*1e6, "p99-µs")
					b.ReportMetric(r.ServerCPU, "server-cores")
					// The load generator's own CPU: near 1 core, it is the
					// bottleneck, and the throughput says more about the
					// client than about the server.
					b.ReportMetric(r.ClientCPU, "client-cores")
					// The server's CPU time per message: what the library
					// costs, even when the load generator, not the
					// server, limits the throughput.
					if r.MsgsPerS > 0 {
						b.ReportMetric(r.ServerCPU/r.MsgsPerS*1e6, "server-µs/msg")
					}
				})
			}
		}
	}
}

// BenchmarkIdleMemory holds 10000 connections open on each server, idle
// after the '*' ack, and reports how much the server's resident memory grew
// per connection (VmRSS from /proc/PID/status, before and after). Kernel
// socket buffers are not in RSS: this is what the server itself keeps.
func BenchmarkIdleMemory(b *testing.B) {
	const n = 10000
	steptest.NeedsLinux(b, "taskset(1) and /proc/PID/status")
	if _, err := sock.RaiseNofile(); err != nil {
		b.Skipf("open-file limit: %v", err)
	}
	for _, s := range pair() {
		b.Run("server="+s.name, func(b *testing.B) {
			srv := startPinned(b, s.pkg)
			time.Sleep(200 * time.Millisecond)
			before, err := procstat.ReadStatus(srv.PID())
			if err != nil {
				b.Fatal(err)
			}
			conns := hold(b, srv.Addr, n)
			defer func() {
				for _, c := range conns {
					if c != nil {
						c.Close()
					}
				}
			}()
			time.Sleep(time.Second) // let the server settle
			after, err := procstat.ReadStatus(srv.PID())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(after.RSS-before.RSS)/n, "B/conn")
			b.ReportMetric(float64(after.RSS)/(1<<20), "MiB-rss")
		})
	}
}

// hold opens n connections to addr, 50 at a time, and waits for each one's
// ack, so every one has really been accepted.
func hold(b *testing.B, addr string, n int) []net.Conn {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	next := make(chan int)
	for range 50 {
		wg.Go(func() {
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, err = c.Read(make([]byte, 1))
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				}
				conns[i] = c
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		b.Fatalf("%d of %d connections failed, first: %s", len(errs), n, strings.Join(errs[:1], ""))
	}
	return conns
}
