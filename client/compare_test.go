package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// compare on the real steps 1 and 2: one row per step, every session
// correct, and the sequential step visibly slower than the concurrent one.
func TestCompareSteps1And2(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds two steps")
	}
	code, out, errs := runClient(t, "compare", "--steps", "2,1", "--with", "1 --log-level debug", "--n", "3", "--scale", "0.1")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	rows := regexp.MustCompile(`(?m)^(step\d_\w+(?: --log-level debug)?)\s{2,}.*\s(\d+)\s+([\d.]+) s\s+(\d+)/(\d+)\s+(\d+)\s+([\d.]+) MiB$`).FindAllStringSubmatch(out, -1)
	if len(rows) != 3 || rows[0][1] != "step1_sequential" || rows[1][1] != "step1_sequential --log-level debug" || rows[2][1] != "step2_thread_per_conn" {
		t.Fatalf("want rows for step1, step1 with --log-level debug, then step2, got:\n%s", out)
	}
	for _, r := range rows {
		if r[2] != "3" || r[4] != "3" || r[5] != "3" || r[6] == "0" {
			t.Fatalf("row %q: want N=3, 3/3 correct and some threads", r[0])
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
