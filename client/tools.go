package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/client/load"
	"concurrent-servers-go/internal/sock"
)

// What every load tool shares: argument checks that end in one line and
// exit status 2, the flags spelt the same everywhere, the loopback guard,
// source-address lists, and the frame a run starts and ends in.

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
		return usageErr(cmd, "%v", explainFlagError(c, err))
	}
}

// badValue is the flag package's complaint about a value it cannot parse:
// `invalid value "3" for flag -d: parse error`.
var badValue = regexp.MustCompile(`^invalid value "(.*)" for flag -(\S+): parse error$`)

// explainFlagError rewrites the one flag error that tells a learner
// nothing: a duration given without its unit (`-d 3`) is answered with
// what to type (`-d 3s`), where the flag package says "parse error". Any
// other error is returned as it is.
func explainFlagError(c *cli.Context, err error) error {
	m := badValue.FindStringSubmatch(err.Error())
	if m == nil || !isDurationFlag(c, m[2]) {
		return err
	}
	val, flag := m[1], "-"+m[2]
	if len(m[2]) > 1 {
		flag = "--" + m[2]
	}
	if _, perr := strconv.ParseFloat(val, 64); perr == nil {
		return fmt.Errorf("%s %s has no unit: type %s %ss for seconds (or %sms, %sm)", flag, val, flag, val, val, val)
	}
	return fmt.Errorf("%s %q is not a duration; write it like 10s, 500ms or 2m", flag, val)
}

// isDurationFlag reports whether name (or alias) is a duration flag of the
// command c is parsing (the root command included).
func isDurationFlag(c *cli.Context, name string) bool {
	flags := c.App.Flags
	if c.Command != nil && len(c.Command.Flags) > 0 {
		flags = c.Command.Flags
	}
	for _, f := range flags {
		if _, ok := f.(*cli.DurationFlag); ok && slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// loadRun is the frame bench and churn run in: the server's address from
// HOST PORT, the source addresses from --sources, the open-file limit
// raised, and a context that ends on SIGINT or SIGTERM. Call stop when done.
type loadRun struct {
	cmd    string
	addr   string   // HOST:PORT
	locals []net.IP // --sources, nil to let the kernel choose
	ctx    context.Context
	stop   context.CancelFunc
}

// newLoadRun checks HOST PORT, --sources and --allow-remote, each failure
// one line and exit status 2, then sets up the run.
func newLoadRun(c *cli.Context, cmd string) (*loadRun, error) {
	host, ports, err := target(c, cmd, false)
	if err != nil {
		return nil, err
	}
	locals, err := parseSources(c.String("sources"))
	if err != nil {
		return nil, usageErr(cmd, "%v", err)
	}
	if err := checkSources(cmd, locals, c.Bool("allow-remote")); err != nil {
		return nil, err
	}
	// Every connection is a file descriptor: take all the hard limit allows.
	sock.RaiseNofile()
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	return &loadRun{cmd: cmd, addr: net.JoinHostPort(host, strconv.Itoa(ports[0])),
		locals: locals, ctx: ctx, stop: stop}, nil
}

// bar is a progress bar counting to total, or nil when the run is expected
// to take under 2 s: too short to be worth one.
func (r *loadRun) bar(c *cli.Context, expect time.Duration, total int64, unit string) *progress {
	if expect < 2*time.Second {
		return nil
	}
	return newProgress(c.App.ErrWriter, r.cmd, total, unit)
}

// end closes a run the same way in every tool: one FAIL line per kind of
// failure on stderr, then exit status 130 if the run was interrupted, 1 if
// anything failed, 0 otherwise.
func (r *loadRun) end(c *cli.Context, errs *load.Errors) error {
	for _, line := range errs.Lines() {
		fmt.Fprintln(c.App.ErrWriter, "FAIL "+line)
	}
	if r.ctx.Err() != nil {
		return cli.Exit("client "+r.cmd+": interrupted", 130)
	}
	if errs.Total() > 0 {
		return cli.Exit("", 1)
	}
	return nil
}

// The flags the load tools share are made here, so that one letter means
// one thing in every tool: -c how many connections are open at once, -n how
// many connections in all (the classic client's -n, where the two are the
// same), -s the bytes in one message, -d how long the run lasts.

// concurrencyFlag is -c: connections open at once.
func concurrencyFlag(name string, value int, usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: name, Aliases: []string{"c"}, Value: value, Usage: usage}
}

// countFlag is -n: connections in all.
func countFlag(name string, value int, usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: name, Aliases: []string{"n"}, Value: value, Usage: usage}
}

// sizeFlag is -s: bytes per message.
func sizeFlag(value int, usage string) *cli.IntFlag {
	return &cli.IntFlag{Name: "size", Aliases: []string{"s"}, Value: value, Usage: usage}
}

// durationFlag is -d: how long the run lasts.
func durationFlag(value time.Duration, usage string) *cli.DurationFlag {
	return &cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Value: value, Usage: usage}
}

// allowRemoteFlag and sourcesFlag are made anew for every command: a cli
// flag keeps the state of the run that parsed it, so one value shared by
// two commands (or two parallel tests) is a data race.
func allowRemoteFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "allow-remote",
		Usage: "allow a server that is not on this machine (by default only 127.0.0.0/8 and ::1)"}
}

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

func sourcesFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "sources",
		Usage: "source addresses to connect from, as a range (127.0.0.1-127.0.0.8), a list (127.0.0.2,127.0.0.3) " +
			"or a count (8 = 127.0.0.1 to 127.0.0.8); each gives ~28k more ephemeral ports"}
}

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
