package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/procstat"
	"concurrent-servers-go/internal/session"
)

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:  "compare",
		Usage: "build every step, run the classic session against each, and print a table",
		Description: "For each step (directories step[0-9]_* of this module) and each N, compare builds the\n" +
			"server, starts it on a free port, runs N classic sessions at once against it, and\n" +
			"reports Elapsed, how many sessions were correct, the server's CPU time, and its peak OS\n" +
			"threads and memory. Every server it started is stopped at the end, also on Ctrl-C.\n\n" +
			"By default it also runs step 3 with --threads, and one big N (--big-n, 1100: past select's\n" +
			"FD_SETSIZE of 1024) at a shorter session (--big-scale), where the models part: select\n" +
			"refuses clients, threads follow N under --threads, the poller's CPU grows.\n\n" +
			"   go run ./client compare                      # every step, N=5 and 1100, about 50 s\n" +
			"   go run ./client compare --steps 1,2 --n 1,5,20 --big-n 0 --scale 0.5 --chart elapsed.svg",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "steps", Usage: "which steps, by number or name: 1,2,6 (default: all)"},
			&cli.StringSliceFlag{Name: "with",
				Usage: "also run a step with extra server flags, as its own rows: --with '3 --threads' --with '6 --edge'"},
			&cli.StringFlag{Name: "n", Value: "5", Usage: "session counts to run, comma-separated: 1,5,50"},
			&cli.IntFlag{Name: "big-n", Value: 1100,
				Usage: "also run this many sessions at once, where the models part (0: do not)"},
			&cli.Float64Flag{Name: "big-scale", Value: 0.5,
				Usage: "time scale of the --big-n run (or --scale, if smaller), to keep the default run under a minute"},
			&cli.Float64Flag{Name: "scale", Value: 1, EnvVars: []string{"CSG_SCALE"},
				Usage: "time scale of the session: 1 is the original 2.2 s session, 0.1 makes it 0.22 s"},
			&cli.DurationFlag{Name: "budget", Value: 60 * time.Second,
				Usage: "longest a single run may take; a run predicted to take longer (a sequential step at large N) is skipped"},
			&cli.BoolFlag{Name: "force", Usage: "run even the runs predicted to exceed --budget (each is still cut off at 2x its prediction)"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the table in Markdown, for the docs"},
			&cli.StringFlag{Name: "chart", Usage: "also draw Elapsed against N per step into this file (.svg or .png)"},
			&cli.StringFlag{Name: "root", Usage: "the module's root directory (default: the one the go command finds from here)"},
		},
		OnUsageError: onUsageError("compare"),
		Action:       compare,
	}
}

// row is one line of the table: one step at one N.
type row struct {
	step    step
	n       int
	elapsed time.Duration
	correct int
	threads int
	rss     int64
	cpu     time.Duration // the server's user + system time, start to exit
	scale   float64       // the session's time scale in this run
	note    string        // why there are no numbers: build failure, skipped, ...

	startFailed bool
}

// compare runs in four phases: read the flags, choose the steps, run
// every (step, N), report.
func compare(c *cli.Context) error {
	const cmd = "compare"
	opts, err := compareFlags(c)
	if err != nil {
		return usageErr(cmd, "%v", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root := c.String("root")
	if root == "" {
		if root, err = moduleRoot(ctx); err != nil {
			return failErr(cmd, "%v", err)
		}
	}
	steps, err := chooseSteps(ctx, c, root)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return usageErr(cmd, "%v", err)
		}
		return failErr(cmd, "%v", err)
	}
	dir, err := os.MkdirTemp("", "client-compare-")
	if err != nil {
		return failErr(cmd, "%v", err)
	}
	defer os.RemoveAll(dir)

	rows, failed := runSteps(ctx, c.App.ErrWriter, root, dir, steps, opts)

	if opts.markdown {
		printCompareMarkdown(c.App.Writer, rows, opts.runs, os.Args[1:])
	} else {
		printCompareText(c.App.Writer, rows, opts.runs)
	}
	if opts.chart != "" && ctx.Err() == nil {
		if err := drawChart(opts.chart, rows); err != nil {
			return failErr(cmd, "chart: %v", err)
		}
		fmt.Fprintf(c.App.ErrWriter, "chart written to %s\n", opts.chart)
	}
	if ctx.Err() != nil {
		return cli.Exit("client compare: interrupted; every server it started has been stopped", 130)
	}
	if failed {
		return cli.Exit("", 1)
	}
	return nil
}

// compareOpts is what the flags ask for, checked.
type compareOpts struct {
	runs     []plannedRun
	budget   time.Duration
	force    bool
	markdown bool
	chart    string
}

func compareFlags(c *cli.Context) (compareOpts, error) {
	ns, err := parseInts(c.String("n"))
	if err != nil || len(ns) == 0 {
		return compareOpts{}, fmt.Errorf("--n %q: want positive counts such as 1,5,50", c.String("n"))
	}
	o := compareOpts{budget: c.Duration("budget"), force: c.Bool("force"), markdown: c.Bool("markdown"), chart: c.String("chart")}
	scale := c.Float64("scale")
	if scale <= 0 || scale > 10 {
		return o, fmt.Errorf("--scale %v: want above 0 and at most 10", scale)
	}
	if o.runs, err = planRuns(ns, c.Int("big-n"), scale, c.Float64("big-scale")); err != nil {
		return o, err
	}
	if o.budget <= 0 {
		return o, errors.New("--budget must be above 0")
	}
	if ext := strings.ToLower(filepath.Ext(o.chart)); o.chart != "" && ext != ".svg" && ext != ".png" {
		return o, fmt.Errorf("--chart %q: the file name must end in .svg or .png", o.chart)
	}
	return o, nil
}

// usageError marks a mistake in the flags (exit 2) among chooseSteps'
// errors, the others being failures to read the module (exit 1).
type usageError struct{ error }

// chooseSteps lists the module's steps, keeps those --steps names and adds
// the --with variants; by default step 3 also runs with --threads, the one
// model that costs an OS thread per client.
func chooseSteps(ctx context.Context, c *cli.Context, root string) ([]step, error) {
	all, err := findSteps(ctx, root)
	if err != nil {
		return nil, err
	}
	steps, err := pickSteps(all, c.String("steps"))
	if err != nil {
		return nil, usageError{err}
	}
	with := c.StringSlice("with")
	if !c.IsSet("with") && !c.IsSet("steps") && slices.ContainsFunc(all, func(s step) bool { return s.num == 3 }) {
		with = []string{"3 --threads"}
	}
	if steps, err = addVariants(all, steps, with); err != nil {
		return nil, usageError{err}
	}
	return steps, nil
}

// runSteps builds every step, then runs each planned N against each step
// in turn, with a progress bar on w counted in sessions. failed says
// whether any row is a failure (a build, a start or a session).
func runSteps(ctx context.Context, w io.Writer, root, dir string, steps []step, o compareOpts) ([]row, bool) {
	perStep := 0
	for _, r := range o.runs {
		perStep += r.n
	}
	bar := newProgress(w, "compare", int64(perStep*len(steps)), "sessions")
	defer bar.done()
	var done atomic.Int64

	var rows []row
	failed := false
	bins := buildAll(ctx, root, dir, steps)
	for _, s := range steps {
		if ctx.Err() != nil {
			break
		}
		b := bins[s.name]
		if s.err == nil {
			s.err = b.err
		}
		if s.err != nil {
			// One line for the step, whatever the Ns: it cannot run at all.
			if ctx.Err() == nil {
				rows = append(rows, row{step: s, note: s.err.Error()})
				failed = true
			}
			bar.set(done.Add(int64(perStep)))
			continue
		}
		rs, f := runStep(ctx, s, b.bin, o, func(n int) { bar.set(done.Add(int64(n))) })
		rows, failed = append(rows, rs...), failed || f
	}
	return rows, failed
}

// runStep runs every planned N against one built step. progress is told of
// each session that ends, and of the sessions a skipped run will not have.
func runStep(ctx context.Context, s step, bin string, o compareOpts, progress func(n int)) ([]row, bool) {
	var rows []row
	failed := false
	m := &seriality{known: strings.Contains(strings.ToLower(s.model), "sequential")}
	m.serial = m.known
	for _, run := range o.runs {
		if ctx.Err() != nil {
			break
		}
		if !m.known && time.Duration(run.n)*session.Duration(run.scale) > o.budget && !o.force {
			// Would this run blow the budget? Only if the step serves
			// one client at a time: two sessions tell, in at most two
			// sessions' time.
			m.learn(runOne(ctx, s, bin, 2, run.scale, o.budget, false, true, func() {}), run.scale)
		}
		r := runOne(ctx, s, bin, run.n, run.scale, o.budget, m.serial, o.force, func() { progress(1) })
		if r.startFailed {
			// It will not start for the next N either: one line.
			r.n = 0
			return append(rows, r), true
		}
		m.learn(r, r.scale)
		failed = failed || r.failed()
		if r.elapsed == 0 {
			progress(run.n) // nothing ran: skip its share
		}
		rows = append(rows, r)
	}
	return rows, failed
}

type built struct {
	bin string
	err error
}

// buildAll builds every step once, as many at a time as there are CPUs:
// the go command's cache makes most of a build a link, which uses one.
func buildAll(ctx context.Context, root, dir string, steps []step) map[string]built {
	out := map[string]built{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, runtime.NumCPU())
	seen := map[string]bool{} // this goroutine's own: out is shared with the builds
	for _, s := range steps {
		if seen[s.name] || s.err != nil {
			continue
		}
		seen[s.name] = true
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			bin, err := s.build(ctx, root, dir)
			mu.Lock()
			out[s.name] = built{bin, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// plannedRun is one N of the table and the session pace it runs at.
type plannedRun struct {
	n     int
	scale float64
}

// planRuns is the Ns of --n at --scale, then the big N (if any and not
// already asked for) at the smaller of --big-scale and --scale.
func planRuns(ns []int, bigN int, scale, bigScale float64) ([]plannedRun, error) {
	if bigN < 0 {
		return nil, fmt.Errorf("--big-n %d: want 0 (none) or a session count", bigN)
	}
	if bigScale <= 0 || bigScale > 10 {
		return nil, fmt.Errorf("--big-scale %v: want above 0 and at most 10", bigScale)
	}
	var out []plannedRun
	for _, n := range ns {
		out = append(out, plannedRun{n, scale})
	}
	if bigN > 0 && !slices.Contains(ns, bigN) {
		out = append(out, plannedRun{bigN, min(scale, bigScale)})
	}
	for _, r := range out {
		if r.n > 5000 {
			return nil, fmt.Errorf("%d sessions: at most 5000 sessions per run (one process may open 20000 files)", r.n)
		}
	}
	return out, nil
}

// seriality is what compare knows of whether a step serves one client at a
// time, so that N sessions take N sessions' time.
type seriality struct {
	known, serial bool
}

// learn reads a run of N >= 2 sessions: about N sessions' time means one
// client at a time, whatever the step's name says.
func (m *seriality) learn(r row, scale float64) {
	if r.n < 2 || r.elapsed == 0 || r.correct < r.n {
		return
	}
	m.known = true
	m.serial = r.elapsed > time.Duration(float64(r.n)*0.7*float64(session.Duration(scale)))
}

// failed is a row that could not run or got wrong answers; a skipped run
// is not a failure.
func (r row) failed() bool {
	return r.correct < r.n && !strings.HasPrefix(r.note, "skipped")
}

// runOne starts a fresh server for one (step, N) so that its peak threads
// and memory belong to this run alone, runs the sessions, and stops it.
// serial says the step serves one client at a time, so that N sessions
// take N sessions' time; a step that does so unannounced is still cut off
// by the time-out below.
func runOne(ctx context.Context, s step, bin string, n int, scale float64, budget time.Duration, serial, force bool, onDone func()) row {
	r := row{step: s, n: n, scale: scale}
	one := session.Duration(scale)
	predicted := one
	if serial {
		predicted = time.Duration(n) * one
	}
	if predicted > budget && !force {
		r.note = fmt.Sprintf("skipped: one client at a time, would take about %v > --budget %v (add --force)",
			predicted.Round(time.Second), budget)
		return r
	}
	srv, err := startServer(ctx, bin, s.args...)
	if err != nil {
		r.note, r.startFailed = "start failed: "+err.Error(), ctx.Err() == nil
		return r
	}
	defer srv.stop()
	peak := procstat.Sample(srv.PID(), 50*time.Millisecond)
	rep := session.Run(ctx, session.Options{
		Addr: srv.Addr, N: n, Scale: scale,
		Timeout: max(2*predicted, predicted+10*time.Second),
		OnDone:  func(session.Result) { onDone() },
	})
	// Without /proc (macOS) there are no peaks to show: -1 prints "n/a".
	var perr error
	if r.threads, r.rss, perr = peak.Stop(); perr != nil {
		r.threads, r.rss = -1, -1
	}
	// Stopped now, not by the defer, so that its CPU time is final: the
	// kernel's account of the child it has waited for.
	srv.stop()
	r.cpu = srv.CPU()
	r.elapsed = rep.Elapsed
	r.correct = n - rep.Failed()
	if lines := rep.Summary(); len(lines) > 0 {
		r.note = lines[0]
	}
	if ctx.Err() != nil {
		r.note = "interrupted (Ctrl-C): sessions cut short"
	}
	return r
}

// pickSteps keeps the steps named in spec (numbers or names).
func pickSteps(all []step, spec string) ([]step, error) {
	if strings.TrimSpace(spec) == "" {
		return all, nil
	}
	var out []step
	for w := range strings.SplitSeq(spec, ",") {
		w = strings.TrimSpace(w)
		i := slices.IndexFunc(all, func(s step) bool { return strconv.Itoa(s.num) == w || s.name == w })
		if i < 0 {
			var have []string
			for _, s := range all {
				have = append(have, s.name)
			}
			return nil, fmt.Errorf("--steps: no step %q here (have %s)", w, strings.Join(have, ", "))
		}
		if !slices.ContainsFunc(out, func(s step) bool { return s.name == all[i].name }) {
			out = append(out, all[i])
		}
	}
	slices.SortFunc(out, func(a, b step) int { return a.num - b.num })
	return out, nil
}

// addVariants adds, after each step's own entry, the variants --with asks
// for: the same binary started with extra flags.
func addVariants(all, steps []step, with []string) ([]step, error) {
	for _, w := range with {
		f := strings.Fields(w)
		if len(f) < 2 {
			return nil, fmt.Errorf("--with %q: want a step and its flags, such as '3 --threads'", w)
		}
		picked, err := pickSteps(all, f[0])
		if err != nil {
			return nil, err
		}
		v := picked[0]
		v.args = f[1:]
		i := len(steps)
		for j, s := range steps {
			if s.num > v.num {
				i = j
				break
			}
		}
		steps = slices.Insert(steps, i, v)
	}
	return steps, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for w := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad count %q", w)
		}
		out = append(out, n)
	}
	return out, nil
}

func (r row) cells() []string {
	if r.n == 0 {
		// The step could not run at all: say why after its empty cells.
		// As the line's last cell the note does not widen any column.
		return []string{r.step.title(), r.step.model, "-", "-", "-", "-", "-", "-", r.note}
	}
	if r.elapsed == 0 {
		return []string{r.step.title(), r.step.model, strconv.Itoa(r.n), "-", "-", "-", "-", "-"}
	}
	correct := fmt.Sprintf("%d/%d", r.correct, r.n)
	if r.correct < r.n {
		correct += " FAIL" // never mistaken for a run that went well
	}
	return []string{r.step.title(), r.step.model, strconv.Itoa(r.n),
		strconv.FormatFloat(r.elapsed.Seconds(), 'f', 2, 64) + " s",
		correct,
		strconv.FormatFloat(r.cpu.Seconds(), 'f', 2, 64) + " s",
		orNA(r.threads >= 0, strconv.Itoa(r.threads)),
		orNA(r.rss >= 0, fmt.Sprintf("%.1f MiB", float64(r.rss)/(1<<20))),
	}
}

func orNA(ok bool, s string) string {
	if ok {
		return s
	}
	return "n/a"
}

var compareHeader = []string{"STEP", "MODEL", "N", "ELAPSED", "CORRECT", "CPU", "THREADS", "PEAK RSS"}

// paceLines say how long one session takes alone at each N's scale, so
// that a shortened big-N run is never read as a faster server.
func paceLines(runs []plannedRun) []string {
	var out []string
	for i, r := range runs {
		if i > 0 && r.scale == runs[0].scale {
			continue
		}
		which := "N=" + strconv.Itoa(r.n)
		if i == 0 {
			which = "each N"
		}
		out = append(out, fmt.Sprintf("%s: one classic session takes %v alone (--scale %v)", which, session.Duration(r.scale), r.scale))
		if i > 0 {
			out[len(out)-1] += ", shortened to keep the default run under a minute"
		}
	}
	return out
}

func printCompareText(w io.Writer, rows []row, runs []plannedRun) {
	for _, l := range paceLines(runs) {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w, "CPU is the server's user+system time from start to exit; THREADS and PEAK RSS are its peaks")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(compareHeader, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	tw.Flush()
	for _, r := range rows {
		if r.note != "" && r.n > 0 {
			fmt.Fprintf(w, "%s N=%d: %s\n", r.step.title(), r.n, r.note)
		}
	}
}

func printCompareMarkdown(w io.Writer, rows []row, runs []plannedRun, args []string) {
	fmt.Fprintln(w, machineLine(args))
	fmt.Fprintf(w, "%s. CPU is the server's user+system time from start to exit; threads and RSS are its peaks.\n\n",
		strings.Join(paceLines(runs), "; "))
	h := []string{"step", "model", "N", "Elapsed", "correct", "server CPU", "OS threads", "peak RSS"}
	fmt.Fprintln(w, "| "+strings.Join(h, " | ")+" |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		cells := r.cells()
		switch {
		case r.n == 0:
			cells = []string{r.step.title(), r.step.model, "", r.note, "", "", "", ""}
		case r.note != "" && r.elapsed == 0:
			cells[3] = r.note
		}
		fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
	}
}
