package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The libuv reference server is C, so no go command builds it: the row
// builds it with the system's C compiler against libuv, found through
// pkg-config, the way its source's opening comment says. Where libuv's
// development files are missing (CI, a fresh laptop) the row skips with
// one line; nothing else in the repository needs libuv.

var (
	libuvOnce sync.Once
	libuvOK   bool

	cMu    sync.Mutex
	cDir   string
	cBuilt = map[string]string{} // source -> binary
)

// haveLibuv reports whether pkg-config knows libuv (and so a cc can build
// against it).
func haveLibuv() bool {
	libuvOnce.Do(func() {
		_, err := exec.LookPath("cc")
		libuvOK = err == nil && exec.Command("pkg-config", "--exists", "libuv").Run() == nil
	})
	return libuvOK
}

// buildC compiles the C server src once per test process, with -O2 as the
// benchmark builds it, and returns the binary's path.
func buildC(t testing.TB, src string) string {
	t.Helper()
	cMu.Lock()
	defer cMu.Unlock()
	if bin, ok := cBuilt[src]; ok {
		return bin
	}
	if cDir == "" {
		d, err := os.MkdirTemp("", "cserver-")
		if err != nil {
			t.Fatal(err)
		}
		cDir = d
	}
	flags, err := exec.Command("pkg-config", "--cflags", "--libs", "libuv").Output()
	if err != nil {
		t.Fatalf("pkg-config --cflags --libs libuv: %v", err)
	}
	bin := filepath.Join(cDir, strings.TrimSuffix(filepath.Base(filepath.Dir(src)), "/"))
	args := append([]string{"-O2", "-Wall", "-o", bin, src}, strings.Fields(string(flags))...)
	if out, err := exec.Command("cc", args...).CombinedOutput(); err != nil {
		t.Fatalf("cc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	cBuilt[src] = bin
	return bin
}

// cleanupC removes the binaries buildC made; TestMain calls it.
func cleanupC() {
	cMu.Lock()
	defer cMu.Unlock()
	if cDir != "" {
		os.RemoveAll(cDir)
	}
}
