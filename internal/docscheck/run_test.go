//go:build unix

package docscheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docNames is README.md and every docs/*.md, relative to root.
func docNames(t *testing.T, root string) []string {
	t.Helper()
	names := []string{"README.md"}
	mds, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mds {
		names = append(names, "docs/"+filepath.Base(m))
	}
	return names
}

// TestRunMarkers checks the run, expect and skip markers of every chapter
// without running anything, so a misspelt marker fails even with -short.
func TestRunMarkers(t *testing.T) {
	root := repoRoot(t)
	for _, name := range docNames(t, root) {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		_, probs := runBlocks(name, string(b))
		for _, p := range probs {
			t.Error(p)
		}
	}
}

// TestChapterCommands runs every chapter's <!-- run --> blocks, in order,
// in a scratch copy of the repository per chapter. One chapter alone:
//
//	go test ./internal/docscheck/ -run 'TestChapterCommands/docs/05' -v
//
// DOCSCHECK_ROOT=/path/to/a/checkout runs that checkout's chapters instead
// of this one's (with this runner), to see whether an older or newer
// version of a chapter still runs as written. DOCSCHECK_TIMEOUT_SCALE=3
// multiplies every block's time limit, for a machine that other work
// keeps busy (the limits are set for a quiet one).
func TestChapterCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the chapters' commands build and run servers")
	}
	if raceEnabled {
		t.Skip("-race: the chapters' commands are separate programs, checked in the plain run")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash to run the chapters' commands with")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git to list the repository's files with")
	}
	root := repoRoot(t)
	if r := os.Getenv("DOCSCHECK_ROOT"); r != "" {
		root = r
	}
	env := append(os.Environ(), "CSG_SCALE=0.1")
	slow := 1.0
	if v := os.Getenv("DOCSCHECK_TIMEOUT_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("DOCSCHECK_TIMEOUT_SCALE=%q: want a factor above 0, such as 3", v)
		}
		slow = f
	}
	for _, name := range docNames(t, root) {
		src, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		blocks, _ := runBlocks(name, string(src)) // TestRunMarkers reports the problems
		if len(blocks) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			// Chapters run side by side (as many as -parallel, by default
			// GOMAXPROCS), each in its own copy and on its own ports: the
			// blocks of one chapter still run in order.
			t.Parallel()
			scratch := t.TempDir()
			if err := copyRepo(root, scratch); err != nil {
				t.Fatal(err)
			}
			failed := ""
			for _, b := range blocks {
				switch {
				case b.skip != "":
					t.Logf("%s:%d: skipped: %s", b.file, b.line, b.skip)
					continue
				case failed != "":
					t.Logf("%s:%d: not run, since the block at %s failed", b.file, b.line, failed)
					continue
				case b.missing() != "":
					t.Logf("%s:%d: skipped: needs %s, which is not installed here", b.file, b.line, b.missing())
					continue
				}
				start := time.Now()
				b.timeout = time.Duration(float64(b.timeout) * slow)
				r := runBlock(b, scratch, env)
				if why := b.failure(r); why != "" {
					failed = strconv.Itoa(b.line)
					t.Errorf("%s:%d: the ```sh block %s\n\tscript:\n\t| %s\n\toutput (last lines):\n%s",
						b.file, b.line, why, strings.ReplaceAll(strings.TrimSpace(b.script), "\n", "\n\t| "), tail(r.out, 30))
					continue
				}
				t.Logf("%s:%d: ok in %v", b.file, b.line, time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

func TestRunBlocksParse(t *testing.T) {
	md := strings.Join([]string{
		"# T",                              // 1
		"<!-- run -->",                     // 2
		"<!-- expect: ^hi$ -->",            // 3
		"<!-- expect: (?m)^b[a-z]+ -->",    // 4
		"```sh",                            // 5
		"echo hi",                          // 6
		"```",                              // 7
		"<!-- skip: runs for minutes -->",  // 8
		"```sh",                            // 9
		"sleep 600",                        // 10
		"```",                              // 11
		"```sh",                            // 12 no marker: not run
		"false",                            // 13
		"```",                              // 14
		"<!-- run timeout=2s needs=sh -->", // 15
		"```sh",                            // 16
		"true",                             // 17
		"```",                              // 18
	}, "\n")
	bs, probs := runBlocks("x.md", md)
	want(t, probs)
	if len(bs) != 3 {
		t.Fatalf("got %d blocks, want 3: %+v", len(bs), bs)
	}
	if b := bs[0]; b.line != 5 || b.script != "echo hi\n" || len(b.expects) != 2 || b.timeout != defaultTimeout {
		t.Errorf("block 1 = %+v", b)
	}
	if b := bs[1]; b.line != 9 || b.skip != "runs for minutes" {
		t.Errorf("block 2 = %+v", b)
	}
	if b := bs[2]; b.line != 16 || b.timeout != 2*time.Second || b.skip != "" || len(b.needs) != 1 || b.needs[0] != "sh" {
		t.Errorf("block 3 = %+v", b)
	}
}

func TestRunBlocksBadMarkers(t *testing.T) {
	for md, w := range map[string]at{
		"<!-- run -->\n\n```sh\ntrue\n```\n":                   {1, "not directly followed"},
		"<!-- run -->\n```console\n$ true\n```\n":              {1, "only ```sh blocks are run"},
		"<!-- run timeout=soon -->\n```sh\ntrue\n```\n":        {1, "not a duration"},
		"<!-- run -->\n<!-- expect: ( -->\n```sh\ntrue\n```\n": {2, "expect marker"},
		"text\n<!-- expect: x -->\n```sh\ntrue\n```\n":         {2, "must follow a run marker"},
		"<!-- run: now -->\n```sh\ntrue\n```\n":                {1, "malformed marker"},
		"<!-- skip: -->\n```sh\ntrue\n```\n":                   {1, "needs a reason"},
		"text\n<!-- run -->":                                   {2, "marks nothing"},
	} {
		_, probs := runBlocks("x.md", md)
		want(t, probs, w)
	}
}

// alive says whether pid is still a running process; it waits a little
// for one that was just killed to be reaped.
func alive(pid int) bool {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return false
		}
	}
	return true
}

func TestRunBlockOutcomes(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	env := append(os.Environ(), "CSG_SCALE=0.1")
	mk := func(script string, timeout time.Duration, expects ...string) block {
		md := "<!-- run timeout=" + timeout.String() + " -->\n"
		for _, e := range expects {
			md += "<!-- expect: " + e + " -->\n"
		}
		md += "```sh\n" + script + "\n```\n"
		bs, probs := runBlocks("x.md", md)
		if len(probs) != 0 || len(bs) != 1 {
			t.Fatalf("parse %q: %v %v", md, bs, probs)
		}
		return bs[0]
	}

	// Output from stdout and stderr is seen, and the env var is set.
	b := mk("echo out\necho err >&2\necho scale=$CSG_SCALE", 10*time.Second, "(?m)^out$", "(?m)^err$", `scale=0\.1`)
	if why := b.failure(runBlock(b, dir, env)); why != "" {
		t.Errorf("passing block: %s", why)
	}

	// A regexp that does not match fails, naming it.
	b = mk("echo hello", 10*time.Second, "^bye")
	if why := b.failure(runBlock(b, dir, env)); !strings.Contains(why, "expect: ^bye") {
		t.Errorf("expect mismatch: %q", why)
	}

	// -e and pipefail: a failing command in the middle of a pipe fails the block.
	b = mk("false | cat\necho never", 10*time.Second)
	r := runBlock(b, dir, env)
	if why := b.failure(r); !strings.Contains(why, "exit status 1") || strings.Contains(string(r.out), "never") {
		t.Errorf("pipefail: %q, output %q", why, r.out)
	}

	// The block runs in dir: a file written by one block is there for the next.
	b = mk("echo built > artefact", 10*time.Second)
	if why := b.failure(runBlock(b, dir, env)); why != "" {
		t.Fatal(why)
	}
	b = mk("cat artefact", 10*time.Second, "built")
	if why := b.failure(runBlock(b, dir, env)); why != "" {
		t.Errorf("shared dir: %s", why)
	}

	// A block that hangs is stopped at its timeout, background children too.
	b = mk("sleep 60 &\necho $! > bg.pid\nsleep 60", 500*time.Millisecond)
	start := time.Now()
	r = runBlock(b, dir, env)
	if why := b.failure(r); !strings.Contains(why, "did not finish within 500ms") {
		t.Errorf("timeout: %q", why)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("timeout of 500ms took %v", el)
	}
	checkGone(t, dir)

	// A block that leaves a server running fails, and the server is killed.
	b = mk("sleep 60 &\necho $! > bg.pid", 10*time.Second)
	if why := b.failure(runBlock(b, dir, env)); !strings.Contains(why, "kill $!") {
		t.Errorf("leftover: %q", why)
	}
	checkGone(t, dir)

	// One that stops its server passes.
	b = mk("sleep 60 &\necho $! > bg.pid\nkill $!", 10*time.Second)
	if why := b.failure(runBlock(b, dir, env)); why != "" {
		t.Errorf("block that kills its server: %s", why)
	}
	checkGone(t, dir)
}

// checkGone fails if the background process whose pid a block wrote to
// bg.pid is still alive.
func checkGone(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "bg.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("background process %d outlived its block", pid)
	}
}

func TestTail(t *testing.T) {
	got := tail([]byte("1\n2\n3\n4\n"), 2)
	if got != "\t| ... (2 lines before)\n\t| 3\n\t| 4" {
		t.Errorf("tail = %q", got)
	}
}

func TestCopyRepoCopiesTrackedAndNewFiles(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, s string) {
		t.Helper()
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	write(".gitignore", "/bin/\n")
	write("a/tracked.go", "old")
	write("gone.txt", "x")
	git("add", ".")
	git("commit", "-qm", "init")
	write("a/tracked.go", "edited") // uncommitted edit: copied as edited
	write("new.md", "new")          // untracked, not ignored: copied
	write("bin/tool", "binary")     // ignored: not copied
	os.Remove(filepath.Join(root, "gone.txt"))

	dst := t.TempDir()
	if err := copyRepo(root, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a/tracked.go": "edited", "new.md": "new", ".gitignore": "/bin/\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	for _, name := range []string{"bin/tool", "gone.txt", ".git"} {
		if _, err := os.Lstat(filepath.Join(dst, name)); err == nil {
			t.Errorf("%s was copied", name)
		}
	}
}

func TestNeedsNamesTheMissingCommand(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	if m := (block{needs: []string{"sh"}}).missing(); m != "" {
		t.Errorf("sh is installed, missing() = %q", m)
	}
	if m := (block{needs: []string{"sh", "no-such-command-docscheck"}}).missing(); m != "no-such-command-docscheck" {
		t.Errorf("missing() = %q, want no-such-command-docscheck", m)
	}
}
