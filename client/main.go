// Command client is the Go port of the classic simple-client.py: it opens N
// connections at once, runs the protocol session on each, and prints how
// long they all took. Against a server that serves one client at a time the
// elapsed time grows with N; against a concurrent one it stays near 2.2 s.
//
//	go run ./client -n 5 127.0.0.1 8080
//	go run ./client 127.0.0.1 8080 -n 5   (the original's argument order works too)
//
// Unlike the original it checks what every session received and exits with
// status 1 when any session failed, one summary line per kind of failure.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/session"
	"concurrent-servers-go/internal/sock"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// fdsPerSession is what one session costs in file descriptors (its socket),
// and fdSlack what the process needs besides (stdio, the runtime's epoll).
const (
	fdsPerSession = 1
	fdSlack       = 32
)

func newApp(stdout, stderr io.Writer, code *int) *cli.App {
	return &cli.App{
		Name:      "client",
		Usage:     "run the classic simple-client session N times at once against a protocol server",
		ArgsUsage: "HOST PORT",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "num_concurrent", Aliases: []string{"n"}, Value: 1,
				Usage: "number of concurrent connections"},
			// EnvVars: the chapters' command test sets CSG_SCALE=0.1, so the
			// commands a chapter shows run as written, ten times faster.
			&cli.Float64Flag{Name: "scale", Value: 1, EnvVars: []string{"CSG_SCALE"},
				Usage: "multiply the session's sleeps (1.0 s, 1.0 s, 0.2 s) by this; 0.1 makes a session take 0.22 s"},
			&cli.DurationFlag{Name: "timeout",
				Usage: "give up on a session after this long (default: generous enough for a sequential server to serve all N)"},
			&cli.StringSliceFlag{Name: "source",
				Usage: "connect from these local addresses in turn (e.g. 127.0.0.2,127.0.0.3): each has its own ephemeral ports"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"},
				Usage: "print only failures and the Elapsed line, not the per-connection log"},
		},
		HideHelpCommand: true,
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return cli.Exit(fmt.Sprintf("client: %v (see --help)", explainFlagError(c, err)), 2)
		},
		ExitErrHandler: func(c *cli.Context, err error) {
			if ec, ok := err.(cli.ExitCoder); ok {
				if msg := ec.Error(); msg != "" {
					fmt.Fprintln(stderr, msg)
				}
				*code = ec.ExitCode()
			}
		},
		Action: classic,
		Commands: []*cli.Command{
			compareCommand(),
			benchCommand(),
			holdCommand(),
			c1mCommand(),
			churnCommand(),
		},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	code := 0
	a := newApp(stdout, stderr, &code)
	if err := a.Run(interspersed(a, args)); err != nil && code == 0 {
		fmt.Fprintf(stderr, "client: %v\n", err)
		code = 1
	}
	return code
}

func classic(c *cli.Context) error {
	usage := func(format string, args ...any) error {
		return cli.Exit("client: "+fmt.Sprintf(format, args...)+" (see --help)", 2)
	}
	if c.NArg() != 2 {
		return usage("want HOST and PORT, got %d arguments", c.NArg())
	}
	host, portArg := c.Args().Get(0), c.Args().Get(1)
	port, err := strconv.Atoi(portArg)
	if err != nil || port < 1 || port > 65535 {
		return usage("PORT %q is not a port number", portArg)
	}
	n := c.Int("num_concurrent")
	if n < 1 {
		return usage("-n %d: need at least one connection", n)
	}
	if c.Float64("scale") <= 0 {
		return usage("--scale must be above 0")
	}
	var locals []net.IP
	for _, s := range c.StringSlice("source") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return usage("--source %q is not an IP address", s)
		}
		locals = append(locals, ip)
	}
	// Every connection is a file descriptor: check that N of them fit
	// before opening any, rather than failing half-way with EMFILE.
	limit, _ := sock.RaiseNofile()
	if need := uint64(n*fdsPerSession + fdSlack); need > limit {
		return cli.Exit(fmt.Sprintf("client: -n %d needs about %d open files, but this process may open at most %d "+
			"(RLIMIT_NOFILE); run several client processes with smaller -n", n, need, limit), 2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := session.Options{
		Addr: net.JoinHostPort(host, strconv.Itoa(port)), N: n,
		Scale: c.Float64("scale"), Timeout: c.Duration("timeout"), LocalIPs: locals,
	}
	if !c.Bool("quiet") {
		// Python's logging writes to stderr and print() to stdout: keep
		// that split so the original's pipelines work on ours.
		opts.Log = c.App.ErrWriter
	}
	rep := session.Run(ctx, opts)
	fmt.Fprintf(c.App.Writer, "Elapsed: %s\n", strconv.FormatFloat(rep.Elapsed.Seconds(), 'f', -1, 64))
	if rep.IsRefused() {
		return cli.Exit(fmt.Sprintf("client: connection refused: is a server listening on %s?", opts.Addr), 1)
	}
	if rep.Failed() > 0 {
		for _, line := range rep.Summary() {
			fmt.Fprintln(c.App.ErrWriter, "FAIL "+line)
		}
		return cli.Exit("", 1)
	}
	if ctx.Err() != nil {
		return cli.Exit("client: interrupted", 130)
	}
	return nil
}

// interspersed lets flags follow the positional arguments, as Python's
// argparse allows and the original series' own runs do (`client localhost 8080 -n 5`):
// urfave/cli, like Go's flag package, stops at the first non-flag. Flags
// found after a positional argument are moved in front of it.
func interspersed(a *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	for _, cmd := range a.Commands {
		if cmd.HasName(args[1]) {
			return args
		}
	}
	takesValue := map[string]bool{}
	for _, f := range a.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name] = !isBool
		}
	}
	var flags, pos []string
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		arg := rest[i]
		if arg == "--" {
			pos = append(pos, rest[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			pos = append(pos, arg)
			continue
		}
		flags = append(flags, arg)
		name := strings.TrimLeft(arg, "-")
		if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	out := append([]string{args[0]}, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}
