// Package procstat reads what Linux's /proc says about a process: resident
// memory, OS threads, open file descriptors, CPU time and bytes written.
// The comparison and load tools sample a server with it while they drive it,
// so a table can say "this model used 12 threads and 9 MiB for 50 clients".
//
// Everything here is Linux-only by nature (/proc); on other systems every
// call returns an error and the tools print "n/a" instead of a number.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Status is the part of /proc/PID/status the tools report.
type Status struct {
	Threads int   // OS threads (not goroutines)
	RSS     int64 // resident set size now, bytes (VmRSS)
	HWM     int64 // peak resident set size since start, bytes (VmHWM)
}

// ReadStatus parses /proc/PID/status.
func ReadStatus(pid int) (Status, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Status{}, err
	}
	var st Status
	var seen int
	for line := range bytes.Lines(data) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(val))
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch string(key) {
		case "Threads":
			st.Threads, seen = int(n), seen+1
		case "VmRSS":
			st.RSS, seen = n*1024, seen+1 // the kernel prints kB
		case "VmHWM":
			st.HWM, seen = n*1024, seen+1
		}
	}
	if seen < 3 {
		return st, fmt.Errorf("/proc/%d/status: missing Threads, VmRSS or VmHWM", pid)
	}
	return st, nil
}

// FDs counts the open file descriptors of pid (entries of /proc/PID/fd).
func FDs(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
	}
}

// ticksPerSecond is USER_HZ, the unit of /proc/PID/stat's CPU times. The
// kernel's ABI fixes it at 100 on every architecture Go supports on Linux.
const ticksPerSecond = 100

// CPU is the CPU time pid has used so far (user + system), from
// /proc/PID/stat, with a resolution of 10 ms.
func CPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// After ')' come state (field 3) ... utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / ticksPerSecond, nil
}

// WrittenBytes is how many bytes pid has passed to write-like syscalls
// (wchar in /proc/PID/io): for a protocol server that logs nothing per
// message, the bytes it answered.
func WrittenBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no wchar", pid)
}

// Peak samples a process's status every interval until Stop, keeping the
// highest thread count and RSS seen. VmHWM covers RSS peaks between
// samples; nothing does for threads, so keep the interval short.
type Peak struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	threads int
	rss     int64
	err     error
}

// Sample starts sampling pid every interval.
func Sample(pid int, interval time.Duration) *Peak {
	p := &Peak{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	p.take()
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.take()
			}
		}
	}()
	return p
}

func (p *Peak) take() {
	st, err := ReadStatus(p.pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.err == nil && p.threads == 0 {
			p.err = err
		}
		return
	}
	p.err = nil
	p.threads = max(p.threads, st.Threads)
	p.rss = max(p.rss, st.RSS, st.HWM)
}

// Stop takes a last sample and returns the peaks: OS threads and RSS in
// bytes. The error is set only if no sample ever succeeded.
func (p *Peak) Stop() (threads int, rss int64, err error) {
	close(p.stop)
	<-p.done
	p.take()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.threads, p.rss, p.err
}

// Rusage is this process's own CPU time so far, user and system, from
// getrusage(RUSAGE_SELF): the load tools report it to show they were not
// the bottleneck.
func Rusage() (user, sys time.Duration, err error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, os.NewSyscallError("getrusage", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), nil
}
