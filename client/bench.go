package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/client/load"
)

// maxInFlight bounds pipeline x size, the bytes a connection may have
// unanswered. Each connection's single goroutine writes then reads; that
// cannot deadlock as long as everything in flight fits in the socket
// buffers (at least 128 KiB each way on Linux loopback).
const maxInFlight = 64 * 1024

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure echo throughput and latency against a protocol server",
		ArgsUsage: "HOST PORT",
		Description: "Each connection sends '^' once, then messages of --size bytes drawn from 'a'..'y', keeping\n" +
			"--pipeline of them in flight. The server answers every byte with its successor; bench\n" +
			"verifies every answer byte and reports messages per second, MB/s each way, latency\n" +
			"percentiles (send to last answer byte) and its own CPU use, to show it was not the bottleneck.\n\n" +
			"That is a closed loop: a connection sends again only when answered, so a server that stalls\n" +
			"makes the client send less, and only the few messages in flight see the stall (coordinated\n" +
			"omission). --rate R makes it open-loop: each connection sends R messages per second on a fixed\n" +
			"schedule whatever the answers do, and latency runs from the time each message was due, not\n" +
			"when it was sent, so every message that arrived during a stall carries it (--pipeline unused).\n\n" +
			"With --pid it also reports the server's CPU time per message and messages per server CPU-second.\n\n" +
			"   taskset -c 0 go run ./step2_thread_per_conn &\n" +
			"   taskset -c 1 go run ./client bench --conns 50 --duration 10s --pid $(pgrep -n step2) 127.0.0.1 8080",
		Flags: []cli.Flag{
			concurrencyFlag("conns", 50, "concurrent connections"),
			sizeFlag(64, "bytes per message"),
			&cli.IntFlag{Name: "pipeline", Aliases: []string{"p"}, Value: 1, Usage: "messages in flight per connection"},
			&cli.Float64Flag{Name: "rate", Usage: "open loop: messages per connection per second, latency timed from each message's due time"},
			durationFlag(10*time.Second, "how long to measure"),
			&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "run this long before measuring"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 5 * time.Second, Usage: "give up on a connection whose '*' takes longer"},
			&cli.IntFlag{Name: "pid", Usage: "the server's process id: also report its CPU use (Linux)"},
			sourcesFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the result as a Markdown table row (with its header)"},
			allowRemoteFlag(),
		},
		OnUsageError: onUsageError("bench"),
		Action:       bench,
	}
}

func bench(c *cli.Context) error {
	const cmd = "bench"
	r, err := newLoadRun(c, cmd)
	if err != nil {
		return err
	}
	defer r.stop()
	o := load.BenchOptions{
		Addr: r.addr, LocalIPs: r.locals,
		Conns: c.Int("conns"), Size: c.Int("size"), Pipeline: c.Int("pipeline"),
		Duration: c.Duration("duration"), Warmup: c.Duration("warmup"),
		ConnectTimeout: c.Duration("connect-timeout"), ServerPID: c.Int("pid"),
		Rate: c.Float64("rate"),
	}
	switch {
	case o.Conns < 1 || o.Conns > 15000:
		return usageErr(cmd, "--conns %d: want 1 to 15000 (one process may open 20000 files)", o.Conns)
	case o.Size < 1 || o.Pipeline < 1:
		return usageErr(cmd, "--size and --pipeline must be at least 1")
	case o.Rate < 0 || o.Rate > 1e6:
		return usageErr(cmd, "--rate %v: want 0 (closed loop) to 1000000 messages per connection per second", o.Rate)
	case o.Rate > 0 && c.IsSet("pipeline"):
		return usageErr(cmd, "--rate and --pipeline: an open loop has no fixed number in flight; pick one")
	case o.Size*o.Pipeline > maxInFlight:
		return usageErr(cmd, "--size x --pipeline = %d bytes in flight per connection; keep it under %d", o.Size*o.Pipeline, maxInFlight)
	case o.Duration <= 0 || o.Duration > time.Hour:
		return usageErr(cmd, "--duration %v: want above 0 and at most 1h", o.Duration)
	case o.Warmup < 0 || o.Warmup > time.Hour:
		return usageErr(cmd, "--warmup %v: want 0 to 1h", o.Warmup)
	case o.ConnectTimeout <= 0:
		return usageErr(cmd, "--connect-timeout must be above 0")
	case c.Bool("json") && c.Bool("markdown"):
		return usageErr(cmd, "--json and --markdown: pick one")
	}

	total := o.Warmup + o.Duration
	bar := r.bar(c, total, int64(total/time.Millisecond), "ms")
	if bar != nil {
		o.Progress = func(el time.Duration, _ uint64) { bar.set(int64(el / time.Millisecond)) }
	}
	res, err := load.Bench(r.ctx, o)
	if bar != nil {
		bar.done()
	}
	if err != nil {
		return failErr(cmd, "%v", err)
	}
	w := c.App.Writer
	switch {
	case c.Bool("json"):
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(benchJSON(o, res)); err != nil {
			return err
		}
	case c.Bool("markdown"):
		printBenchMarkdown(w, o, res)
	default:
		printBenchText(w, o, res)
	}
	return r.end(c, &res.Errors)
}

// benchFigures are the derived numbers every output format prints.
type benchFigures struct {
	msgsPerSec, mbPerSec   float64
	clientCPU, serverCPU   float64       // in cores: 1.0 = one core busy all the time
	serverPerMsg           time.Duration // server CPU time per message (0: unknown)
	msgsPerServerCPUSec    float64       // its inverse: messages per server CPU-second
	user, sys              float64
	p50, p90, p99, p999, m time.Duration
}

func figures(o load.BenchOptions, r *load.BenchResult) benchFigures {
	f := benchFigures{
		msgsPerSec: r.MsgsPerSec(),
		mbPerSec:   float64(r.Msgs) * float64(o.Size) / r.Window.Seconds() / 1e6,
		p50:        r.Latency.Quantile(0.50), p90: r.Latency.Quantile(0.90),
		p99: r.Latency.Quantile(0.99), p999: r.Latency.Quantile(0.999), m: r.Latency.Max(),
	}
	if r.CPUWall > 0 {
		f.user = r.CPUUser.Seconds() / r.CPUWall.Seconds()
		f.sys = r.CPUSys.Seconds() / r.CPUWall.Seconds()
		f.clientCPU = f.user + f.sys
		f.serverCPU = r.Server.Seconds() / r.CPUWall.Seconds()
	}
	if r.ServerOK && f.msgsPerSec > 0 && f.serverCPU > 0 {
		f.serverPerMsg = time.Duration(f.serverCPU / f.msgsPerSec * 1e9)
		f.msgsPerServerCPUSec = f.msgsPerSec / f.serverCPU
	}
	return f
}

func printBenchText(w io.Writer, o load.BenchOptions, r *load.BenchResult) {
	f := figures(o, r)
	mode := fmt.Sprintf("pipeline %d", o.Pipeline)
	if o.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g msgs/s per connection", o.Rate)
	}
	fmt.Fprintf(w, "bench %s: %s, %d-byte messages, %s, %v warm-up + %v measured\n",
		o.Addr, plural(r.Conns, "connection"), o.Size, mode, o.Warmup, r.Window)
	fmt.Fprintf(w, "  throughput  %.0f msgs/s, %.2f MB/s each way (%d messages answered and verified)\n",
		f.msgsPerSec, f.mbPerSec, r.Msgs)
	from := "send"
	if o.Rate > 0 {
		from = "due time"
	}
	fmt.Fprintf(w, "  latency     (from %s) p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		from, human(f.p50), human(f.p90), human(f.p99), human(f.p999), human(f.m))
	fmt.Fprintf(w, "  errors      %d\n", r.Errors.Total())
	// CPU per message says who would win on equal cores: the side that
	// spends less per message can drive the other past its limit.
	perMsg := func(cores float64) string {
		if f.msgsPerSec == 0 {
			return "n/a"
		}
		return human(time.Duration(cores / f.msgsPerSec * 1e9))
	}
	fmt.Fprintf(w, "  client CPU  %.0f%% of one core (user %.0f%%, system %.0f%%), %s per message\n",
		100*f.clientCPU, 100*f.user, 100*f.sys, perMsg(f.clientCPU))
	if r.ServerOK {
		fmt.Fprintf(w, "  server CPU  %.0f%% of one core (pid %d), %s per message, %.0f msgs per server CPU-second\n",
			100*f.serverCPU, o.ServerPID, perMsg(f.serverCPU), f.msgsPerServerCPUSec)
	}
}

func printBenchMarkdown(w io.Writer, o load.BenchOptions, r *load.BenchResult) {
	f := figures(o, r)
	srv := "n/a"
	if r.ServerOK {
		srv = fmt.Sprintf("%.0f%%", 100*f.serverCPU)
	}
	fmt.Fprintln(w, machineLine(os.Args[1:]))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| conns | size | pipeline | msgs/s | MB/s | p50 | p90 | p99 | p99.9 | errors | client CPU | server CPU |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | %d | %d | %.0f | %.2f | %s | %s | %s | %s | %d | %.0f%% | %s |\n",
		r.Conns, o.Size, o.Pipeline, f.msgsPerSec, f.mbPerSec,
		human(f.p50), human(f.p90), human(f.p99), human(f.p999), r.Errors.Total(), 100*f.clientCPU, srv)
}

// benchJSON is the --json form: plain numbers in fixed units (seconds for
// durations, fractions of one core for CPU) so scripts need no parsing.
func benchJSON(o load.BenchOptions, r *load.BenchResult) any {
	f := figures(o, r)
	type latency struct {
		P50  float64 `json:"p50"`
		P90  float64 `json:"p90"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
		Max  float64 `json:"max"`
		Mean float64 `json:"mean"`
	}
	out := struct {
		Addr          string         `json:"addr"`
		Conns         int            `json:"conns"`
		Size          int            `json:"size"`
		Pipeline      int            `json:"pipeline"`
		Rate          float64        `json:"rate_per_conn,omitempty"`
		WarmupSec     float64        `json:"warmup_s"`
		WindowSec     float64        `json:"window_s"`
		Msgs          uint64         `json:"msgs"`
		MsgsPerSec    float64        `json:"msgs_per_s"`
		MBPerSec      float64        `json:"mb_per_s"`
		LatencySec    latency        `json:"latency_s"`
		Errors        map[string]int `json:"errors"`
		ClientCPU     float64        `json:"client_cpu_cores"`
		ClientUser    float64        `json:"client_user_cores"`
		ClientSys     float64        `json:"client_sys_cores"`
		ServerCPU     *float64       `json:"server_cpu_cores,omitempty"`
		ServerPerMsg  *float64       `json:"server_cpu_per_msg_s,omitempty"`
		ServerMsgsCPU *float64       `json:"msgs_per_server_cpu_s,omitempty"`
		BytesSent     uint64         `json:"bytes_sent"`
		BytesAnswered uint64         `json:"bytes_answered"`
	}{
		Addr: o.Addr, Conns: r.Conns, Size: o.Size, Pipeline: o.Pipeline, Rate: o.Rate,
		WarmupSec: o.Warmup.Seconds(), WindowSec: r.Window.Seconds(),
		Msgs: r.Msgs, MsgsPerSec: f.msgsPerSec, MBPerSec: f.mbPerSec,
		LatencySec: latency{f.p50.Seconds(), f.p90.Seconds(), f.p99.Seconds(), f.p999.Seconds(), f.m.Seconds(), r.Latency.Mean().Seconds()},
		Errors:     r.Errors.Count, ClientCPU: f.clientCPU, ClientUser: f.user, ClientSys: f.sys,
		BytesSent: r.Sent, BytesAnswered: r.Answered,
	}
	if out.Errors == nil {
		out.Errors = map[string]int{}
	}
	if r.ServerOK {
		out.ServerCPU = &f.serverCPU
		if f.serverPerMsg > 0 {
			perMsg := f.serverPerMsg.Seconds()
			out.ServerPerMsg, out.ServerMsgsCPU = &perMsg, &f.msgsPerServerCPUSec
		}
	}
	return out
}
