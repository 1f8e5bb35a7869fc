package docscheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestDocs is the CI check: README.md and every docs/*.md against the
// repository as it is now.
func TestDocs(t *testing.T) {
	root := repoRoot(t)
	names := []string{"README.md"}
	mds, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mds {
		rel, err := filepath.Rel(root, m)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.ToSlash(rel))
	}
	for _, p := range check(os.DirFS(root), names) {
		t.Error(p)
	}
}

// repoRoot walks up from the test's directory to the one holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = up
	}
}

const serverGo = "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n\tfmt.Println(\"bye\")\n}\n"

// run checks one in-memory Markdown file, docs/x.md, next to serverGo.
func run(md string, extra fstest.MapFS) []problem {
	fsys := fstest.MapFS{
		"step/server.go": {Data: []byte(serverGo)},
		"docs/x.md":      {Data: []byte(md)},
	}
	for k, v := range extra {
		fsys[k] = v
	}
	return check(fsys, []string{"docs/x.md"})
}

// want fails unless the problems are exactly one per entry of wants, at
// that line and mentioning that text; no wants means no problems.
func want(t *testing.T, got []problem, wants ...struct {
	line int
	text string
}) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(wants), got)
	}
	for i, w := range wants {
		if got[i].line != w.line || !strings.Contains(got[i].msg, w.text) {
			t.Errorf("problem %d = %v; want line %d mentioning %q", i, got[i], w.line, w.text)
		}
	}
}

type at = struct {
	line int
	text string
}

func TestExcerptVerbatimPasses(t *testing.T) {
	md := "# T\n\n<!-- from: step/server.go -->\n```go\nfunc main() {\n\tfmt.Println(\"hi\")\n```\n"
	want(t, run(md, nil))
}

func TestExcerptMismatchIsReportedAtTheLine(t *testing.T) {
	// Line 6 has spaces where the file has a tab.
	md := "# T\n\n<!-- from: step/server.go -->\n```go\nfunc main() {\n    fmt.Println(\"hi\")\n```\n"
	want(t, run(md, nil), at{6, `step/server.go:6 is "\tfmt.Println(\"hi\")"`})
}

func TestExcerptMustBeContiguous(t *testing.T) {
	// Skipping the "hi" line between two quoted lines is not allowed.
	md := "<!-- from: step/server.go -->\n```go\nfunc main() {\n\tfmt.Println(\"bye\")\n```\n"
	want(t, run(md, nil), at{4, "stops matching"})
}

func TestExcerptFirstLineMissing(t *testing.T) {
	md := "<!-- from: step/server.go -->\n```go\nfunc other() {\n```\n"
	want(t, run(md, nil), at{3, "is not a line of that file"})
}

func TestExcerptMissingFile(t *testing.T) {
	md := "<!-- from: step/gone.go -->\n```go\nfunc main() {\n```\n"
	want(t, run(md, nil), at{1, "cannot be read"})
}

func TestMarkerMustTouchTheFence(t *testing.T) {
	md := "<!-- from: step/server.go -->\n\n```go\nfunc main() {\n```\n"
	want(t, run(md, nil), at{1, "not directly followed"})
}

func TestExcerptFromUnformattedFile(t *testing.T) {
	md := "<!-- from: step/ugly.go -->\n```go\nfunc  main() {}\n```\n"
	want(t, run(md, fstest.MapFS{"step/ugly.go": {Data: []byte("package main\n\nfunc  main() {}\n")}}),
		at{1, "gofmt -w step/ugly.go"})
}

func TestCompleteListingMustBeGofmtClean(t *testing.T) {
	good := "```go\n" + serverGo + "```\n"
	want(t, run(good, nil))
	bad := "```go\npackage main\n\nfunc main() {\n  println()\n}\n```\n"
	want(t, run(bad, nil), at{5, "not gofmt-clean"})
	broken := "```go\npackage main\n\nfunc main() {\n```\n"
	want(t, run(broken, nil), at{1, "does not parse"})
	// A fragment without a marker is neither a file nor an excerpt.
	fragment := "```go\nx :=   1\n```\n"
	want(t, run(fragment, nil))
}

func TestUnclosedFence(t *testing.T) {
	want(t, run("text\n```console\n$ go run ./client\n", nil), at{2, "never closed"})
}

func TestLinks(t *testing.T) {
	extra := fstest.MapFS{
		"docs/other.md": {Data: []byte("# Run and measure\n\n## What breaks, and why?\n\n## Run and measure\n")},
		"README.md":     {Data: []byte("# top\n")},
	}
	md := strings.Join([]string{
		"# Title", // 1
		"[ok](other.md) [dir](../step/) [up](../README.md)", // 2
		"[anchor](other.md#what-breaks-and-why)",            // 3
		"[dup](other.md#run-and-measure-1)",                 // 4
		"[self](#title) [web](https://go.dev/x.md)",         // 5
		"[code](../step/server.go#L5-L7)",                   // 6
		"`[not a link](nowhere.md)`",                        // 7
		"```text",                                           // 8
		"[in a fence](nowhere.md)",                          // 9
		"```",                                               // 10
		"[gone](missing.md)",                                // 11
		"[bad anchor](other.md#nope)",                       // 12
		"[out](../../etc/passwd)",                           // 13
		"[ref]: ./missing-ref.md",                           // 14
		"[title](other.md \"a title\")",                     // 15
	}, "\n")
	want(t, run(md, extra),
		at{11, "docs/missing.md does not exist"},
		at{12, "no heading with anchor #nope"},
		at{13, "outside the repository"},
		at{14, "docs/missing-ref.md does not exist"},
	)
}

func TestSlug(t *testing.T) {
	for in, out := range map[string]string{
		"Run and measure":                  "run-and-measure",
		"What breaks, and why?":            "what-breaks-and-why",
		"The diff: `step1` → `step2`":      "the-diff-step1--step2",
		"GOMAXPROCS on a 2-core machine":   "gomaxprocs-on-a-2-core-machine",
		"[Step 2](02-thread-per-conn.md)":  "step-2",
		"step2_thread_per_conn ##":         "step2_thread_per_conn",
		"C10K/C1M: limits & `ulimit -n`":   "c10kc1m-limits--ulimit--n",
		"Memory per connection (RSS, KiB)": "memory-per-connection-rss-kib",
	} {
		if got := slug(in); got != out {
			t.Errorf("slug(%q) = %q, want %q", in, got, out)
		}
	}
}

// An excerpt inside a list item is indented with the item; the indentation
// of the fence is not part of the quoted code.
func TestIndentedExcerptInList(t *testing.T) {
	md := "1. Look:\n   <!-- from: step/server.go -->\n   ```go\n   func main() {\n   \tfmt.Println(\"hi\")\n   ```\n"
	want(t, run(md, nil))
}
