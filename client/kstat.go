package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"concurrent-servers-go/internal/procstat"
)

// This file reads what a hold run costs outside the client: the server's
// processes (a prefork group is a parent and its children) and the kernel
// (sockets, their slab caches, their buffers). Linux only: it reads /proc,
// and elsewhere every figure says n/a.

// serverSample is a server process and all its descendants, summed.
type serverSample struct {
	procs   int
	rss     int64
	threads int
	fds     int
	cpu     time.Duration // user + system, of the processes alive now
	err     error
}

// sampleServer reads pid and every process below it.
func sampleServer(pid int) serverSample {
	var s serverSample
	for _, p := range append([]int{pid}, descendants(pid)...) {
		st, err := procstat.ReadStatus(p)
		if err != nil {
			if p == pid {
				s.err = err
				return s
			}
			continue // a child that just exited
		}
		fds, err := procstat.FDs(p)
		if err != nil {
			if p == pid {
				s.err = err
				return s
			}
			continue
		}
		cpu, _ := procstat.CPU(p)
		s.procs++
		s.rss += st.RSS
		s.threads += st.Threads
		s.fds += fds
		s.cpu += cpu
	}
	return s
}

// serverCPU is the CPU time of pid and its descendants, without the
// cost of counting their open files.
func serverCPU(pid int) time.Duration {
	var sum time.Duration
	for _, p := range append([]int{pid}, descendants(pid)...) {
		cpu, _ := procstat.CPU(p)
		sum += cpu
	}
	return sum
}

func (s serverSample) String() string {
	if s.err != nil {
		return "n/a (" + s.err.Error() + ")"
	}
	out := fmt.Sprintf("RSS %.1f MiB, %d threads, %d open files", float64(s.rss)/(1<<20), s.threads, s.fds)
	if s.procs > 1 {
		out += fmt.Sprintf(", in %d processes", s.procs)
	}
	return out
}

// descendants lists the processes below pid, children first. Linux keeps
// each thread's children in /proc/PID/task/TID/children.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

// kernelSample is the kernel's side of the sockets: how many TCP sockets
// exist (/proc/net/sockstat "TCP: inuse"; a loopback connection is two,
// one per end), the pages their buffers hold ("mem"), and the bytes of
// every slab cache (/proc/slabinfo, root only on most systems).
type kernelSample struct {
	tcpInuse int
	tcpPages int
	slab     map[string]int64 // cache name -> num_objs * objsize
	sockErr  error
	slabErr  error
}

func sampleKernel() kernelSample {
	var k kernelSample
	k.tcpInuse, k.tcpPages, k.sockErr = readSockstat()
	k.slab, k.slabErr = readSlabinfo()
	return k
}

func readSockstat() (inuse, pages int, err error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			n, _ := strconv.Atoi(f[i+1])
			switch f[i] {
			case "inuse":
				inuse = n
			case "mem":
				pages = n
			}
		}
		return inuse, pages, nil
	}
	return 0, 0, fmt.Errorf("no TCP line in /proc/net/sockstat")
}

func readSlabinfo() (map[string]int64, error) {
	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name active_objs num_objs objsize ...
		fl := strings.Fields(sc.Text())
		if len(fl) < 4 || strings.HasPrefix(fl[0], "#") || fl[0] == "slabinfo" {
			continue
		}
		num, err1 := strconv.ParseInt(fl[2], 10, 64)
		size, err2 := strconv.ParseInt(fl[3], 10, 64)
		if err1 == nil && err2 == nil {
			out[fl[0]] = num * size
		}
	}
	return out, sc.Err()
}

// kernelPerSocket says what the sockets opened between before and held
// cost the kernel: slab bytes per socket, with the caches that grew most,
// and the TCP buffer pages.
func kernelPerSocket(before, held kernelSample) string {
	if before.sockErr != nil || held.sockErr != nil {
		return "n/a (/proc/net/sockstat unreadable)"
	}
	socks := held.tcpInuse - before.tcpInuse
	out := fmt.Sprintf("%+d TCP sockets (sockstat inuse), TCP buffers %+d pages", socks, held.tcpPages-before.tcpPages)
	if socks <= 0 {
		return out
	}
	if before.slabErr != nil || held.slabErr != nil {
		return out + "; slab n/a (/proc/slabinfo unreadable)"
	}
	type growth struct {
		name  string
		bytes int64
	}
	var gs []growth
	var total int64
	for name, b := range held.slab {
		if d := b - before.slab[name]; d != 0 {
			total += d
			gs = append(gs, growth{name, d})
		}
	}
	slices.SortFunc(gs, func(a, b growth) int { return int(b.bytes - a.bytes) })
	out += fmt.Sprintf("; slab %+.1f MiB, %.0f bytes per socket", float64(total)/(1<<20), float64(total)/float64(socks))
	var top []string
	for _, g := range gs[:min(len(gs), 5)] {
		top = append(top, fmt.Sprintf("%s %.0f", g.name, float64(g.bytes)/float64(socks)))
	}
	if len(top) > 0 {
		out += " (" + strings.Join(top, ", ") + ")"
	}
	return out
}

// netCounters are the kernel's counters that explain lost or slow
// connections: keepalive probes sent and connections aborted when they
// went unanswered; accept queues that overflowed and SYN queues that were
// full (a SYN or the final ACK dropped, so the client retransmits a
// second later); segments that arrived while the socket was busy and its
// backlog full; SYNs retransmitted, and all segments; and packets dropped because a CPU's backlog
// (net.core.netdev_max_backlog), which loopback traffic passes through,
// was full.
type netCounters struct {
	values map[string]int64
	err    error
}

// netCounterNames are printed in this order.
var netCounterNames = []string{"TCPKeepAlive", "TCPAbortOnTimeout", "ListenOverflows", "ListenDrops",
	"TCPReqQFullDrop", "TCPBacklogDrop", "TCPSynRetrans", "RetransSegs", "softnet_dropped"}

func readNetCounters() netCounters {
	c := netCounters{values: map[string]int64{}}
	for _, path := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(path)
		if err != nil {
			c.err = err
			return c
		}
		// Pairs of lines: "TcpExt: names..." then "TcpExt: values...".
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) != len(vals) || len(names) == 0 || (names[0] != "TcpExt:" && names[0] != "Tcp:") {
				continue
			}
			for j := 1; j < len(names); j++ {
				if slices.Contains(netCounterNames, names[j]) {
					c.values[names[j]], _ = strconv.ParseInt(vals[j], 10, 64)
				}
			}
		}
	}
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		c.err = err
		return c
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 16, 64)
			c.values["softnet_dropped"] += n
		}
	}
	return c
}

// netDelta prints what changed between two readings.
func netDelta(before, after netCounters) string {
	if before.err != nil || after.err != nil {
		return "n/a"
	}
	var parts []string
	for _, k := range netCounterNames {
		parts = append(parts, fmt.Sprintf("%s %+d", k, after.values[k]-before.values[k]))
	}
	return strings.Join(parts, ", ")
}
