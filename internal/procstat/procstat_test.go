package procstat

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	pid := os.Getpid()
	st, err := ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Threads < 1 || st.RSS <= 0 || st.HWM < st.RSS {
		t.Fatalf("implausible status %+v", st)
	}

	// Opening a file is one more fd.
	n0, err := FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	n1, _ := FDs(pid)
	f.Close()
	if n1 != n0+1 {
		t.Fatalf("fds %d then %d after one open", n0, n1)
	}

	// Writing 1000 bytes counts 1000 bytes.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	b0, err := WrittenBytes(pid)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 1000))
	if b1, _ := WrittenBytes(pid); b1-b0 != 1000 {
		t.Fatalf("wchar grew by %d for a 1000-byte write", b1-b0)
	}

	// Spinning 100 ms of wall time shows up as CPU time in both
	// /proc/PID/stat and getrusage (generously: the machine may be busy).
	c0, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	u0, s0, _ := Rusage()
	for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
	}
	c1, _ := CPU(pid)
	u1, s1, _ := Rusage()
	if c1 <= c0 || u1+s1 <= u0+s0 {
		t.Fatalf("CPU %v -> %v, rusage %v -> %v", c0, c1, u0+s0, u1+s1)
	}

	p := Sample(pid, 5*time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	threads, rss, err := p.Stop()
	if err != nil || threads < 1 || rss <= 0 {
		t.Fatalf("peak %d threads %d bytes: %v", threads, rss, err)
	}
}
