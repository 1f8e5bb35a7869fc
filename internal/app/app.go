// Package app is the command-line shell every server step shares: the same
// flags everywhere (--host, --port or a positional PORT as the original C
// servers take it, --log-level), a slog logger, the open-file limit raised,
// and a context that ends on SIGINT or SIGTERM. A step's main.go only says
// what its own model needs; none of this is the lesson.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"concurrent-servers-go/internal/sock"
)

// DefaultPort is the port of the classic series and its simple-client.
const DefaultPort = 8080

// Server describes one step's command.
type Server struct {
	Name  string     // the command name, such as "step1_sequential"
	Usage string     // one line naming the model
	Flags []cli.Flag // the step's own flags, beside the common ones
	// Group adds --procs: run as a prefork group of processes sharing the
	// port (group.go).
	Group bool
	// Run serves until ctx ends (SIGINT or SIGTERM), then closes what it
	// opened and returns nil. An error it returns is fatal: exit status 1.
	Run func(ctx context.Context, env *Env) error
}

// Env is what Run gets: the parsed common flags, the logger, and the step's
// own flags through CLI.
type Env struct {
	Host string
	Port int
	Log  *slog.Logger
	CLI  *cli.Context
}

// Listening logs the address the server bound. With --port 0 this line is
// the only way to learn the port, and the tests read it: keep its shape.
func (e *Env) Listening(addr string) {
	e.Log.Info("listening", "addr", addr)
}

// usageError makes flag mistakes one clear line and exit status 2, the
// convention of command-line tools for "you called me wrong".
func usageError(name string, err error) error {
	return cli.Exit(fmt.Sprintf("%s: %v (see --help)", name, err), 2)
}

// Main runs the server command and exits.
func Main(s Server) {
	os.Exit(run(s, os.Args, os.Stderr))
}

func run(s Server, args []string, stderr io.Writer) int {
	code := 0
	flags := s.Flags
	if s.Group {
		flags = append([]cli.Flag{procsFlag()}, flags...)
	}
	a := &cli.App{
		Name:      s.Name,
		Usage:     s.Usage,
		ArgsUsage: "[PORT]",
		Writer:    os.Stdout,
		ErrWriter: stderr,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "host", Value: "127.0.0.1",
				Usage: "the one address to listen on, bound exactly: 127.0.0.1 keeps the server private to this machine, 0.0.0.0 is every IPv4 interface, :: every IPv6 one (never both); '' is refused"},
			&cli.IntFlag{Name: "port", Value: DefaultPort,
				Usage: "port to listen on; 0 picks a free one and logs it"},
			&cli.StringFlag{Name: "log-level", Value: "info",
				Usage: "debug logs every connection; info, warn or error log less"},
			&cli.BoolFlag{Name: "stats",
				Usage: "print once a second: open connections, OS threads, goroutines, RSS and CPU (stats.go)"},
		}, flags...),
		HideHelpCommand: true,
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError(s.Name, err)
		},
		ExitErrHandler: func(c *cli.Context, err error) {
			var ec cli.ExitCoder
			if errors.As(err, &ec) {
				if msg := ec.Error(); msg != "" {
					fmt.Fprintln(stderr, msg)
				}
				code = ec.ExitCode()
			}
		},
		Action: func(c *cli.Context) error {
			env, err := newEnv(s.Name, c, stderr)
			if err != nil {
				return err
			}
			if n, err := sock.RaiseNofile(); err != nil {
				env.Log.Warn("could not raise the open-file limit", "limit", n, "err", err)
			}
			// A server's log is its stderr. If whoever reads it goes away
			// (a closed pipe, `2> >(head -1)`), Go turns the next write to
			// fd 2 into SIGPIPE, whose default action kills the process.
			// Ignored, the write just fails with EPIPE: the log is lost,
			// the clients are still served, and SIGTERM still exits 0.
			signal.Ignore(syscall.SIGPIPE)
			// The first SIGINT or SIGTERM ends ctx and the server shuts down
			// in order; stop() then restores the default action, so a second
			// Ctrl-C kills a server whose shutdown hangs.
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			context.AfterFunc(ctx, stop)
			if s.Group {
				if index, port, ok := groupChild(); ok {
					env.Port = port
					ctx = joinGroup(ctx, index)
				} else if procs := c.Int("procs"); procs < 1 || procs > maxProcs {
					return usageError(s.Name, errGroupProcs)
				} else if procs > 1 {
					if err := runGroup(ctx, s.Name, env, args[1:], stderr, procs); err != nil {
						return cli.Exit(fmt.Sprintf("%s: %v", s.Name, err), 1)
					}
					env.Log.Info("stopped")
					return nil
				}
			}
			// The runtime creates its own epoll fd lazily, with the first
			// timer or network call. A raw-fd server whose first timer is
			// its EMFILE back-off would ask for that fd exactly when none
			// is left, and the runtime dies (netpollinit failed). One timer
			// now makes the runtime take its fd while fds are plentiful.
			time.AfterFunc(time.Hour, func() {}).Stop()
			if c.Bool("stats") {
				go printStats(ctx, stderr, time.Second)
			}
			if err := s.Run(ctx, env); err != nil {
				var ec cli.ExitCoder
				if errors.As(err, &ec) {
					return err // the step chose its words and status (2: a bad flag value)
				}
				return cli.Exit(fmt.Sprintf("%s: %v", s.Name, err), 1)
			}
			env.Log.Info("stopped")
			return nil
		},
	}
	if err := a.Run(args); err != nil && code == 0 {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		code = 1
	}
	return code
}

func newEnv(name string, c *cli.Context, stderr io.Writer) (*Env, error) {
	port := c.Int("port")
	switch c.NArg() {
	case 0:
	case 1:
		if c.IsSet("port") {
			return nil, usageError(name, errors.New("give the port once: either --port or PORT"))
		}
		p, err := strconv.Atoi(c.Args().First())
		if err != nil {
			return nil, usageError(name, fmt.Errorf("PORT %q is not a number", c.Args().First()))
		}
		port = p
	default:
		return nil, usageError(name, fmt.Errorf("unexpected arguments %q", c.Args().Slice()[1:]))
	}
	if port < 0 || port > 65535 {
		return nil, usageError(name, fmt.Errorf("port %d out of range 0-65535", port))
	}
	// An empty --host (an unset shell variable, say) would mean "every
	// interface" to some APIs: refuse it like any other bad flag.
	host := strings.TrimSpace(c.String("host"))
	if host == "" {
		return nil, usageError(name, errors.New("--host is empty: give an address such as :: (IPv6), 0.0.0.0 (IPv4) or 127.0.0.1 (this machine only)"))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError(name, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level")))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return &Env{Host: host, Port: port, Log: log, CLI: c}, nil
}
