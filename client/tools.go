package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/client/load"
)

// What every load tool shares: argument checks that end in one line and
// exit status 2, the loopback guard, and source-address lists.

// usageErr is a bad command line: one line on stderr, exit status 2.
func usageErr(cmd, format string, args ...any) error {
	return cli.Exit(fmt.Sprintf("client %s: %s (see client %s --help)", cmd, fmt.Sprintf(format, args...), cmd), 2)
}

// failErr is a run that could not do its job (server refused, nothing
// answered): one line, exit status 1.
func failErr(cmd, format string, args ...any) error {
	return cli.Exit(fmt.Sprintf("client %s: %s", cmd, fmt.Sprintf(format, args...)), 1)
}

// onUsageError makes a subcommand's flag errors one line and exit 2, as
// the root command's are.
func onUsageError(cmd string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		return usageErr(cmd, "%v", err)
	}
}

var allowRemoteFlag = &cli.BoolFlag{Name: "allow-remote",
	Usage: "allow a server that is not on this machine (by default only 127.0.0.0/8 and ::1)"}

// target reads the HOST PORT arguments. PORT may be a comma-separated list
// when the tool can spread over several ports (hold).
func target(c *cli.Context, cmd string, manyPorts bool) (string, []int, error) {
	if c.NArg() != 2 {
		for _, a := range c.Args().Slice() {
			if strings.HasPrefix(a, "-") {
				return "", nil, usageErr(cmd, "flags go before HOST PORT (got %q after them)", a)
			}
		}
		return "", nil, usageErr(cmd, "want HOST and PORT, got %d arguments", c.NArg())
	}
	host := c.Args().Get(0)
	var ports []int
	for p := range strings.SplitSeq(c.Args().Get(1), ",") {
		port, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || port < 1 || port > 65535 {
			return "", nil, usageErr(cmd, "PORT %q is not a port number", p)
		}
		ports = append(ports, port)
	}
	if len(ports) > 1 && !manyPorts {
		return "", nil, usageErr(cmd, "one PORT only, got %q", c.Args().Get(1))
	}
	if !c.Bool("allow-remote") {
		if err := load.CheckLoopback(host); err != nil {
			return "", nil, usageErr(cmd, "%v", err)
		}
	}
	return host, ports, nil
}

var sourcesFlag = &cli.StringFlag{Name: "sources",
	Usage: "source addresses to connect from, as a range (127.0.0.1-127.0.0.8), a list (127.0.0.2,127.0.0.3) " +
		"or a count (8 = 127.0.0.1 to 127.0.0.8); each gives ~28k more ephemeral ports"}

// parseSources turns --sources into addresses; empty means "let the kernel
// choose" (nil).
func parseSources(s string) ([]net.IP, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 254 {
			return nil, fmt.Errorf("--sources %d: want 1 to 254 addresses", n)
		}
		return ipRange(netip.AddrFrom4([4]byte{127, 0, 0, 1}), n), nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("--sources %q: want a range of IPv4 addresses such as 127.0.0.1-127.0.0.8", s)
		}
		n := 1
		for x := a; x != b; x = x.Next() {
			if n++; n > 65536 {
				return nil, fmt.Errorf("--sources %q: range too large", s)
			}
		}
		return ipRange(a, n), nil
	}
	var ips []net.IP
	for p := range strings.SplitSeq(s, ",") {
		ip := net.ParseIP(strings.TrimSpace(p))
		if ip == nil {
			return nil, fmt.Errorf("--sources: %q is not an IP address", p)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

func ipRange(a netip.Addr, n int) []net.IP {
	ips := make([]net.IP, 0, n)
	for range n {
		ips = append(ips, net.IP(a.AsSlice()))
		a = a.Next()
	}
	return ips
}

// checkSources refuses non-loopback sources: binding to them would send
// load out of this machine.
func checkSources(cmd string, ips []net.IP, allowRemote bool) error {
	for _, ip := range ips {
		if !ip.IsLoopback() && !allowRemote {
			return usageErr(cmd, "--sources: %v is not a loopback address", ip)
		}
	}
	return nil
}

// human formats a duration for a table: 3 significant digits, in the unit
// that suits it (µs, ms, s).
func human(d interface{ Seconds() float64 }) string {
	s := d.Seconds()
	switch {
	case s < 1e-3:
		return strconv.FormatFloat(s*1e6, 'f', digits(s*1e6), 64) + "µs"
	case s < 1:
		return strconv.FormatFloat(s*1e3, 'f', digits(s*1e3), 64) + "ms"
	}
	return strconv.FormatFloat(s, 'f', digits(s), 64) + "s"
}

func digits(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}

// machineLine says where and when numbers were measured, for the line the
// docs put above every table: CPUs, CPU model, OS, Go version, date, and
// the command that printed them.
func machineLine(args []string) string {
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
	}
	return fmt.Sprintf("Measured on %d CPUs%s, %s/%s, %s, %s, with `client %s`.",
		runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, runtime.Version(),
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), strings.Join(args, " "))
}

// plural is "1 connection", "2 connections".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
