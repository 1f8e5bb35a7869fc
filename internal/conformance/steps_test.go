package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"concurrent-servers-go/internal/steptest"
)

// row is one server configuration the suite holds to the contract: a step's
// main package, the extra arguments of one of its modes, and what its model
// can promise. A capability that is false says why in its note, and the
// case that needs it then asserts what the model does instead (or, where
// nothing meaningful can be asserted, skips with that note as the message).
type row struct {
	name string   // subtest name
	dir  string   // the main package's directory, relative to the module root
	args []string // extra arguments after --port 0

	// concurrent: the server serves clients at once, so an idle or slow
	// client does not hold up another. When false, the cases assert the
	// opposite: the second client waits until the first one leaves.
	concurrent bool
	seqNote    string

	// boundedSlowReader: a client that floods without reading costs the
	// server a bounded amount of memory (RSS growth under slowReaderBound).
	boundedSlowReader bool
	slowNote          string

	// emfileDies, when set, says why the server cannot survive running out
	// of file descriptors; the emfile case then asserts that it stops (and
	// says so) instead of serving on. Every step must survive EMFILE; only
	// the gnet reference server sets it, since the library decides.
	emfileDies string

	// emfileSheds, when set, says why the server does not log running out
	// of file descriptors: its library sheds the load itself, accepting
	// and closing every queued connection at once. The emfile case then
	// asserts that the extra clients are closed (not left hanging), and
	// still that the server does not spin and serves again.
	emfileSheds string

	// acceptors is how many accept loops back off on their own when out of
	// file descriptors; each logs once per burst, so a burst may log up to
	// this many lines.
	acceptors int

	// csrc, when set, is a C server's source file (relative to the module
	// root) instead of a Go main package in dir: built with cc against
	// libuv, and skipped with one line where libuv is not installed.
	csrc string
}

func (r row) pkg() string { return "concurrent-servers-go/" + r.dir }

// rows is the table: one row per step and per mode worth holding to the
// contract. Keep it in step with the table in doc.go.
var rows = []row{
	{name: "step1", dir: "step1_sequential", acceptors: 1,
		seqNote: "a sequential server serves one client at a time, to the end",
		// Its blocking write parks the whole server on the flooder, so
		// memory stays flat; the case checks that and that the second
		// client waits.
		boundedSlowReader: true},
	{name: "step2", dir: "step2_thread_per_conn", acceptors: 1,
		concurrent: true, boundedSlowReader: true},
	{name: "step3", dir: "step3_blocking", acceptors: 1,
		seqNote:           "step3's default mode serves one client at a time, like step 1",
		boundedSlowReader: true},
	{name: "step3-threads", dir: "step3_blocking", args: []string{"--threads"}, acceptors: 1,
		concurrent: true, boundedSlowReader: true},
	{name: "step4", dir: "step4_nonblocking_poll", acceptors: 1,
		concurrent: true, boundedSlowReader: true},
	{name: "step5", dir: "step5_select", acceptors: 1,
		concurrent: true, boundedSlowReader: true},
	{name: "step6", dir: "step6_epoll", acceptors: 1,
		concurrent: true, boundedSlowReader: true},
	{name: "step6-edge", dir: "step6_epoll", args: []string{"--edge"}, acceptors: 1,
		concurrent: true, boundedSlowReader: true},
	{name: "step6-loops2", dir: "step6_epoll", args: []string{"--loops", "2"}, acceptors: 2,
		concurrent: true, boundedSlowReader: true},
	{name: "step7", dir: "step7_eventloop_lib", acceptors: runtime.NumCPU(),
		concurrent: true, boundedSlowReader: true},
	{name: "step7-gnet", dir: "step7_eventloop_lib/gnetserver", acceptors: runtime.NumCPU(),
		concurrent: true,
		slowNote: "gnet v2 buffers a connection's outbound data without a cap and keeps reading its input " +
			"(the library's best-known weakness), so the reference server's memory follows the flood",
		emfileDies: "gnet v2.9.7 treats any accept error but EINTR, EAGAIN, ECONNRESET and ECONNABORTED as fatal " +
			"and shuts the whole engine down (acceptor_unix.go); gnetserver then exits 1 with one clear line"},
	{name: "step7-libuv", dir: "step7_eventloop_lib/libuvserver", csrc: "step7_eventloop_lib/libuvserver/server.c",
		acceptors: 1, concurrent: true, boundedSlowReader: true,
		emfileSheds: "libuv 1.x keeps a spare fd; on EMFILE it closes it, accepts and closes every queued " +
			"connection, and takes the spare back (uv__emfile_trick), without calling the server"},
}

// moduleRoot is where go.mod is: the tests run in internal/conformance.
var moduleRoot = filepath.Join("..", "..")

// present skips t, naming the step, when the row's package is not in this
// checkout yet: the steps are built in parallel, and the suite stays green
// for the ones that have landed.
func (r row) present(t testing.TB) {
	t.Helper()
	if !r.exists() {
		t.Skipf("%s is not in this checkout yet (no %s/main.go): row %s skipped", r.dir, r.dir, r.name)
	}
	if r.csrc != "" && !haveLibuv() {
		t.Skipf("libuv development files not installed (pkg-config --exists libuv fails): row %s skipped", r.name)
	}
}

func (r row) exists() bool {
	file := filepath.Join(r.dir, "main.go")
	if r.csrc != "" {
		file = r.csrc
	}
	_, err := os.Stat(filepath.Join(moduleRoot, file))
	return err == nil
}

// binary builds the row's server (once per test binary) and returns its path.
func (r row) binary(t testing.TB) string {
	t.Helper()
	if r.csrc != "" {
		return buildC(t, filepath.Join(moduleRoot, r.csrc))
	}
	return steptest.Build(t, r.pkg())
}

// rowNamed is the row called name.
func rowNamed(name string) row {
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	panic("no row " + name)
}

// start builds (once per test binary) and starts the row's server.
func (r row) start(t testing.TB) *steptest.Server {
	t.Helper()
	r.present(t)
	return steptest.StartCmd(t, exec.Command(r.binary(t), append([]string{"--port", "0"}, r.args...)...))
}
