package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// compare on the real steps 1 and 2: one row per step, every session
// correct, and the sequential step visibly slower than the concurrent one.
func TestCompareSteps1And2(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds two steps")
	}
	code, out, errs := runClient(t, "compare", "--steps", "2,1", "--with", "1 --log-level debug", "--n", "3", "--big-n", "0", "--scale", "0.1")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	rows := regexp.MustCompile(`(?m)^(step\d_\w+(?: --log-level debug)?)\s{2,}.*\s(\d+)\s+([\d.]+) s\s+(\d+)/(\d+)\s+([\d.]+) s\s+(\d+)\s+([\d.]+) MiB$`).FindAllStringSubmatch(out, -1)
	if len(rows) != 3 || rows[0][1] != "step1_sequential" || rows[1][1] != "step1_sequential --log-level debug" || rows[2][1] != "step2_thread_per_conn" {
		t.Fatalf("want rows for step1, step1 with --log-level debug, then step2, got:\n%s", out)
	}
	for _, r := range rows {
		if r[2] != "3" || r[4] != "3" || r[5] != "3" || r[7] == "0" {
			t.Fatalf("row %q: want N=3, 3/3 correct and some threads", r[0])
		}
		if cpu := atof(t, r[6]); cpu <= 0 || cpu > 5 {
			t.Fatalf("row %q: server CPU %v s, want some and far less than the run", r[0], cpu)
		}
	}
	// Three sessions of 0.22 s: about 0.66 s in turn, 0.22 s at once.
	if seq, conc := rows[0][3], rows[2][3]; !(atof(t, seq) > 1.8*atof(t, conc)) {
		t.Fatalf("sequential took %s s, concurrent %s s: want a clear gap", seq, conc)
	}
}

// A step that does not build and one that exits at once are one line each
// in the table, the other steps still run, and the exit status is 1.
func TestCompareBrokenSteps(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module fake\n\ngo 1.26\n")
	write("step8_exits/main.go", "// Step 8: a server that gives up.\npackage main\n\nimport \"os\"\n\nfunc main() { os.Stderr.WriteString(\"cannot start\\n\"); os.Exit(3) }\n")
	write("step9_broken/main.go", "// Step 9: a server that does not compile.\npackage main\n\nfunc main() { undefined() }\n")
	write("step5_empty/README", "not yet\n")
	code, out, errs := runClient(t, "compare", "--root", root, "--n", "1,2", "--scale", "0.1")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		`(?m)^step8_exits .*  start failed: exited before listening \(exit status 3\): cannot start$`,
		`(?m)^step9_broken .*  build failed: step9_broken/main.go:4:15: undefined: undefined$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %q:\n%s", want, out)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^step`).FindAllString(out, -1)); n != 2 || strings.Contains(out, "step5_empty") {
		t.Errorf("want one line each for step8 and step9, nothing for step5:\n%s", out)
	}
}

func TestCompareBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"compare", "--n", "0"},
		{"compare", "--n", "x"},
		{"compare", "--scale", "-1"},
		{"compare", "--chart", "out.gif"},
		{"compare", "--steps", "42", "--root", ".."},
		{"compare", "--what"},
		{"compare", "--with", "2", "--root", ".."},
		{"compare", "--with", "9 --x", "--root", ".."},
	} {
		code, _, errs := runClient(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		oneLine(t, errs, "client compare: ")
	}
}

func atof(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if _, err := fmt.Sscan(s, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// The big N comes after --n's, at the smaller of the two scales, once.
func TestPlanRuns(t *testing.T) {
	got, err := planRuns([]int{5}, 1100, 1, 0.5)
	if err != nil || len(got) != 2 || got[0] != (plannedRun{5, 1}) || got[1] != (plannedRun{1100, 0.5}) {
		t.Fatalf("planRuns(5, big 1100) = %v, %v", got, err)
	}
	if got, _ := planRuns([]int{5}, 1100, 0.1, 0.5); got[1].scale != 0.1 {
		t.Errorf("--scale 0.1 is smaller than --big-scale: big N at %v", got[1].scale)
	}
	if got, _ := planRuns([]int{5, 1100}, 1100, 1, 0.5); len(got) != 2 {
		t.Errorf("a big N already in --n is not run twice: %v", got)
	}
	if got, _ := planRuns([]int{5}, 0, 1, 0.5); len(got) != 1 {
		t.Errorf("--big-n 0 adds nothing: %v", got)
	}
	for _, bad := range [][2]float64{{-1, 0.5}, {1100, 0}, {6000, 0.5}} {
		if _, err := planRuns([]int{5}, int(bad[0]), 1, bad[1]); err == nil {
			t.Errorf("big-n %v big-scale %v: want an error", bad[0], bad[1])
		}
	}
	lines := paceLines([]plannedRun{{5, 1}, {1100, 0.5}})
	if len(lines) != 2 || !strings.Contains(lines[1], "N=1100: one classic session takes 1.1s alone (--scale 0.5), shortened") {
		t.Errorf("pace lines do not say the big N is shortened: %q", lines)
	}
}

// A run where some sessions failed says FAIL in its cell and is a cross
// on the chart, labelled with its score, never a point on the step's line;
// a step with one run keeps its point.
func TestChartMarksFailedRuns(t *testing.T) {
	ok := func(name string, n int, el float64) row {
		return row{step: step{name: name}, n: n, correct: n, elapsed: time.Duration(el * float64(time.Second)), scale: 1}
	}
	bad := ok("step5_select", 1100, 1.4)
	bad.correct, bad.scale = 1012, 0.5
	rows := []row{
		ok("step1_sequential", 5, 11), {step: step{name: "step1_sequential"}, n: 1100, note: "skipped: ..."},
		ok("step5_select", 5, 2.2), bad,
	}
	if c := bad.cells(); c[4] != "1012/1100 FAIL" {
		t.Errorf("failed run's CORRECT cell = %q", c[4])
	}
	ss := chartSeries(rows)
	if len(ss) != 2 || len(ss[0].ok) != 1 || len(ss[1].ok) != 1 || len(ss[1].failed) != 1 || ss[1].labels[0] != "1012/1100" {
		t.Fatalf("series: %+v %+v", ss[0], ss[1])
	}
	if y := ss[1].failed[0].Y; y < 1.25 || y > 1.3 {
		t.Errorf("1.4 s at scale 0.5 (1.1 s a session) drawn at %v sessions, want 1.4/1.1", y)
	}
	if !spansDecades([]float64{5, 1100}) || spansDecades([]float64{1, 5}) {
		t.Error("spansDecades: want true for 5..1100, false for 1..5")
	}
	svg := filepath.Join(t.TempDir(), "c.svg")
	if err := drawChart(svg, rows); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"step5 1012/1100", "some sessions failed", "step1_sequential", "Elapsed / one session alone"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("chart has no %q", want)
		}
	}
	if err := drawChart(filepath.Join(t.TempDir(), "c.png"), rows); err != nil {
		t.Errorf("png: %v", err)
	}
}

// By default step 3 also runs with --threads, as its own row; --steps or
// --with turn that off.
func TestCompareDefaultAddsStep3Threads(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":              "module fake\n\ngo 1.26\n",
		"step3_exits/main.go": "// Step 3: a server that gives up.\npackage main\n\nimport \"os\"\n\nfunc main() { os.Exit(3) }\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, out, _ := runClient(t, "compare", "--root", root, "--scale", "0.1")
	for _, want := range []string{`(?m)^step3_exits  `, `(?m)^step3_exits --threads  `} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("default run: no %q in\n%s", want, out)
		}
	}
	_, out, _ = runClient(t, "compare", "--root", root, "--scale", "0.1", "--steps", "3", "--big-n", "0")
	if strings.Contains(out, "--threads") {
		t.Errorf("--steps 3: want no --threads variant:\n%s", out)
	}
}
