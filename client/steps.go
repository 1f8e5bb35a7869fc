package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"concurrent-servers-go/internal/stepproc"
)

// A step as compare finds it: a directory step<digit>_* at the module root
// holding a main package, whose package doc names its model.
type step struct {
	num   int      // 1 for step1_sequential
	name  string   // "step1_sequential"
	pkg   string   // import path
	model string   // "a sequential server", from "Step 1: a sequential server."
	err   error    // go list's complaint, if the package is broken
	args  []string // extra server flags, for a variant such as step3 --threads
}

// title names the step in tables and charts, with its flags if any.
func (s step) title() string {
	return strings.Join(append([]string{s.name}, s.args...), " ")
}

// moduleRoot is the directory of the go.mod that `go` sees from here.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v (is the go command installed?)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run compare from the concurrent-servers-go checkout, or pass --root")
	}
	return filepath.Dir(gomod), nil
}

var stepDir = regexp.MustCompile(`^step([0-9])_\w+$`)

// findSteps lists the steps under root with `go list`, which reads each
// package's name and doc without building it.
func findSteps(ctx context.Context, root string) ([]step, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && stepDir.MatchString(e.Name()) {
			dirs = append(dirs, "./"+e.Name())
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no step[0-9]_* directories in %s", root)
	}
	// -e reports a broken package in .Error instead of failing the list.
	args := append([]string{"list", "-e", "-f", "{{.Dir}}\t{{.ImportPath}}\t{{.Name}}\t{{.Doc}}\t{{with .Error}}{{.Err}}{{end}}"}, dirs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("go list: %v: %s", err, firstLine(stderr.String()))
	}
	var steps []step
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 5)
		if len(f) < 5 {
			continue
		}
		name := filepath.Base(f[0])
		m := stepDir.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		s := step{name: name, pkg: f[1], model: model(f[3])}
		s.num, _ = strconv.Atoi(m[1])
		switch {
		case strings.Contains(f[4], "no Go files"):
			continue // a directory someone is still creating
		case f[4] != "":
			s.err = errors.New(firstLine(f[4]))
		case f[2] != "main":
			continue // a library, not a server
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// model turns "Step 1: a sequential server." into "a sequential server".
func model(doc string) string {
	if _, rest, ok := strings.Cut(doc, ": "); ok && strings.HasPrefix(doc, "Step ") {
		doc = rest
	}
	return strings.TrimSuffix(strings.TrimSpace(doc), ".")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// build compiles a step into dir and returns the binary's path.
func (s step) build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, s.name)
	if err := stepproc.Build(ctx, root, s.pkg, bin, false); err != nil {
		var be *stepproc.BuildError
		if errors.As(err, &be) {
			return "", fmt.Errorf("build failed: %s", be.FirstError())
		}
		return "", err
	}
	return bin, nil
}

// server is a step binary we started.
type server struct {
	*stepproc.Proc

	mu  sync.Mutex
	log []string // last lines of its stderr, for error messages
}

// startServer runs bin on a free port and waits for the line that says
// where it listens.
func startServer(ctx context.Context, bin string, args ...string) (*server, error) {
	cmd := exec.Command(bin, append([]string{"--port", "0"}, args...)...)
	cmd.Stdout = io.Discard
	dieWithParent(cmd)
	s := &server{}
	p, err := stepproc.Start(ctx, cmd, 10*time.Second, func(line string) {
		s.mu.Lock()
		s.log = append(s.log, line)
		if len(s.log) > 20 {
			s.log = s.log[1:]
		}
		s.mu.Unlock()
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%v: %s", err, s.lastLog())
	}
	s.Proc = p
	return s, nil
}

func (s *server) lastLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return "no output"
	}
	return s.log[len(s.log)-1]
}

// stop asks the server to stop (SIGTERM, which every step handles), and
// kills it if it is still there after a grace period.
func (s *server) stop() { s.Stop(3 * time.Second) }
