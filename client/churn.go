package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/client/load"
	"concurrent-servers-go/internal/procstat"
)

func churnCommand() *cli.Command {
	return &cli.Command{
		Name:      "churn",
		Usage:     "open short connections at a bounded rate: connect, '*', one message, close",
		ArgsUsage: "HOST PORT",
		Description: "Each connection waits for '*', sends '^' and one message of --size bytes, checks the\n" +
			"answer and closes. Connection i starts at i/--rate seconds, with at most --concurrency in\n" +
			"progress; the run ends after --count connections or --duration, whichever comes first.\n\n" +
			"   go run ./client churn --rate 2000 --count 10000 127.0.0.1 8080",
		Flags: []cli.Flag{
			&cli.Float64Flag{Name: "rate", Aliases: []string{"r"}, Value: 500, Usage: "connections started per second, at most"},
			countFlag("count", 1000, "connections in all"),
			durationFlag(10*time.Minute, "stop starting connections after this long, even if --count are not done"),
			concurrencyFlag("concurrency", 32, "connections in progress at once, at most"),
			sizeFlag(16, "bytes in each connection's message"),
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "give up on a connection after this long"},
			sourcesFlag(),
			allowRemoteFlag(),
		},
		OnUsageError: onUsageError("churn"),
		Action:       churn,
	}
}

func churn(c *cli.Context) error {
	const cmd = "churn"
	r, err := newLoadRun(c, cmd)
	if err != nil {
		return err
	}
	defer r.stop()
	o := load.ChurnOptions{
		Addr: r.addr, LocalIPs: r.locals,
		Rate: c.Float64("rate"), Count: c.Int("count"), Duration: c.Duration("duration"),
		Concurrency: c.Int("concurrency"), Size: c.Int("size"), Timeout: c.Duration("timeout"),
	}
	switch {
	case o.Rate <= 0 || o.Rate > 100000:
		return usageErr(cmd, "--rate %v: want above 0 and at most 100000 per second", o.Rate)
	case o.Count < 1 || o.Count > 10_000_000:
		return usageErr(cmd, "--count %d: want 1 to 10000000", o.Count)
	case o.Duration <= 0 || o.Duration > 24*time.Hour:
		return usageErr(cmd, "--duration %v: want above 0 and at most 24h", o.Duration)
	case o.Concurrency < 1 || o.Concurrency > 10000:
		return usageErr(cmd, "--concurrency %d: want 1 to 10000", o.Concurrency)
	case o.Size < 1 || o.Size > 1<<20:
		return usageErr(cmd, "--size %d: want 1 to 1048576", o.Size)
	case o.Timeout <= 0:
		return usageErr(cmd, "--timeout must be above 0")
	}
	if err := load.Probe(r.ctx, o.Addr, o.Timeout); err != nil {
		return failErr(cmd, "%v", err)
	}

	// The expected length decides the progress bar.
	expect := min(time.Duration(float64(o.Count)/o.Rate*float64(time.Second)), o.Duration)
	if bar := r.bar(c, expect, int64(o.Count), "conns"); bar != nil {
		o.Progress = func(n int) { bar.set(int64(n)) }
		defer bar.done()
	}
	u0, s0, _ := procstat.Rusage()
	res := load.Churn(r.ctx, o)
	u1, s1, _ := procstat.Rusage()
	if o.Progress != nil {
		o.Progress(res.Started) // so the bar ends where the run did
	}

	w := c.App.Writer
	fmt.Fprintf(w, "churn %s: up to %g connections/s, %d at once, one %d-byte message each\n",
		o.Addr, o.Rate, o.Concurrency, o.Size)
	fmt.Fprintf(w, "  done       %d connections in %s: %.0f connections/s, %d correct, %d failed\n",
		res.Started, human(res.Elapsed), float64(res.Started)/res.Elapsed.Seconds(), res.OK, res.Errors.Total())
	h := &res.Latency
	fmt.Fprintf(w, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s (connect to verified answer)\n",
		human(h.Quantile(0.5)), human(h.Quantile(0.9)), human(h.Quantile(0.99)), human(h.Quantile(0.999)), human(h.Max()))
	fmt.Fprintf(w, "  client CPU %.0f%% of one core\n", 100*(u1-u0+s1-s0).Seconds()/res.Elapsed.Seconds())
	return r.end(c, &res.Errors)
}
