package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"concurrent-servers-go/internal/sock"
	"concurrent-servers-go/internal/stepproc"
)

// serveEnv makes the test binary, run again by a test, the server below
// instead of the tests: a prefork group re-runs its own executable, and
// here that executable is the test binary.
const serveEnv = "APP_GROUP_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		Main(pidServer)
	}
	os.Exit(m.Run())
}

// pidServer answers every connection with its process id and closes it,
// so a client can tell which process of a group served it. It listens
// with sock.ListenFD, as a one-loop step does: in a group that listener
// must share the port too.
var pidServer = Server{
	Name:  "pidserver",
	Group: true,
	Run: func(ctx context.Context, env *Env) error {
		lfd, ap, err := sock.ListenFD(env.Host, env.Port)
		if err != nil {
			return err
		}
		ln, err := net.FileListener(os.NewFile(uintptr(lfd), "listener"))
		if err != nil {
			return err
		}
		env.Listening(ap.String())
		context.AfterFunc(ctx, func() { ln.Close() })
		served := 0
		for {
			conn, err := ln.Accept()
			if err != nil {
				break
			}
			served++
			conn.Write([]byte(strconv.Itoa(os.Getpid()) + "\n"))
			conn.Close()
		}
		env.Log.Info("loop stopped", "served", served)
		return nil
	},
}

// startPidServer runs the test binary as pidServer with args and returns
// it with its first stderr line that matches want.
func startPidServer(t *testing.T, want *regexp.Regexp, args ...string) (*exec.Cmd, *lockedLog, []string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	log := &lockedLog{}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
			if m := want.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
		close(found)
	}()
	select {
	case m, ok := <-found:
		if !ok {
			return cmd, log, nil
		}
		return cmd, log, m
	case <-time.After(30 * time.Second):
		t.Fatalf("no line matching %q within 30 s", want)
	}
	return nil, nil, nil
}

// A group of three processes shares one port: clients are served by all
// three, a second server on that port is refused, the parent's totals are
// the children's sums, and SIGTERM to the parent leaves no child behind.
func TestGroupOfThree(t *testing.T) {
	started := regexp.MustCompile(`msg="group started" pids=(\S+)`)
	parent, log, m := startPidServer(t, started, "--procs", "3", "--port", "0")
	if m == nil {
		t.Fatalf("the group did not start:\n%s", log)
	}
	pids := strings.Split(m[1], ",")
	if len(pids) != 3 {
		t.Fatalf("pids %q, want three", m[1])
	}
	var addr string
	for _, line := range strings.Split(log.String(), "\n") {
		if a, ok := stepproc.ListeningAddr(line); ok {
			if addr != "" {
				t.Fatalf("two listening lines:\n%s", log)
			}
			addr = a
		}
	}
	if addr == "" {
		t.Fatalf("no listening line before the group started:\n%s", log)
	}

	// SO_REUSEPORT spreads connections by a hash of the client's
	// address and port: 300 connections reach each of three processes
	// with near certainty (a process missing out has odds (2/3)^300).
	served := map[string]int{}
	const conns = 300
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		served[strings.TrimSpace(string(b))]++
	}
	for _, pid := range pids {
		if served[pid] == 0 {
			t.Errorf("child pid %s served none of %d connections: %v", pid, conns, served)
		}
	}
	if len(served) != 3 {
		t.Errorf("served by %v, want exactly the group's pids %v", served, pids)
	}

	// A second server started by mistake on the group's port fails on
	// its first listener instead of taking a share of the clients.
	_, port, _ := net.SplitHostPort(addr)
	second, secondLog, _ := startPidServer(t, regexp.MustCompile(`^$^`), "--port", port)
	err := second.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(secondLog.String(), "address already in use") {
		t.Errorf("second server on a group's port: %v, want exit status 1 and EADDRINUSE; its log:\n%s", err, secondLog)
	}

	if err := parent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := parent.Wait(); err != nil {
		t.Fatalf("parent after SIGTERM: %v\n%s", err, log)
	}
	for _, pid := range pids {
		n, _ := strconv.Atoi(pid)
		if !gone(n) {
			t.Errorf("child %d still there after the parent stopped (kill 0: %v)", n, err)
		}
	}
	want := `msg="group totals" of="loop stopped" procs=3 served=` + strconv.Itoa(conns)
	if !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
}

// A parent killed outright (kill -9 runs no cleanup) still takes its
// children with it: they see end of file on the stdin it held.
func TestGroupDiesWithParent(t *testing.T) {
	started := regexp.MustCompile(`msg="group started" pids=(\S+)`)
	parent, log, m := startPidServer(t, started, "--procs", "2", "--port", "0")
	if m == nil {
		t.Fatalf("the group did not start:\n%s", log)
	}
	parent.Process.Kill()
	parent.Wait()
	for _, pid := range strings.Split(m[1], ",") {
		n, _ := strconv.Atoi(pid)
		// The children are now orphans that init reaps; wait until each
		// has gone.
		deadline := time.Now().Add(10 * time.Second)
		for !gone(n) {
			if time.Now().After(deadline) {
				t.Fatalf("child %d outlived its killed parent by 10 s", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestGroupBadProcs(t *testing.T) {
	for _, v := range []string{"0", "5000", "x"} {
		var errOut bytes.Buffer
		code := run(pidServer, []string{"pidserver", "--procs", v}, &errOut)
		if code != 2 || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
			t.Errorf("--procs %s: exit %d, stderr %q; want 2 and one line", v, code, errOut.String())
		}
	}
}

// gone reports whether process pid has exited: no such process, or a
// zombie that whoever adopted it has not reaped yet (Linux's /proc says
// which; elsewhere kill(pid, 0) alone decides).
func gone(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(after, "Z")
}

// lockedLog is a server's log as a test reads it while the server still
// writes it.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
