package evloop

import (
	"log/slog"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"concurrent-servers-go/internal/sock"
)

// Option changes one setting of an engine; pass them to Run.
type Option func(*options)

type options struct {
	loops       int
	readBuf     int
	writeCap    int
	inboundCap  int
	idle        time.Duration
	stopTimeout time.Duration
	workers     int
	workQueue   int
	log         *slog.Logger
	// accept is accept(2) as the loop calls it: the poller file's accept,
	// non-blocking and close-on-exec. Tests replace it to inject errors
	// the kernel will not produce on demand.
	accept func(lfd int) (int, unix.Sockaddr, error)
	// spread says whether the kernel spreads connections over listeners
	// bound with SO_REUSEPORT (sock.ReusePortSpreads): if not, the loops
	// share one listener. Tests turn it off to run macOS's way on Linux.
	spread bool
}

func defaultOptions() options {
	return options{
		loops:       runtime.NumCPU(),
		readBuf:     64 << 10,
		writeCap:    64 << 10,
		inboundCap:  1 << 20,
		stopTimeout: 500 * time.Millisecond,
		workers:     runtime.NumCPU(),
		workQueue:   1024,
		log:         slog.New(slog.DiscardHandler),
		accept:      accept,
		spread:      sock.ReusePortSpreads,
	}
}

// WithLoops sets the number of event loops, each a goroutine with its own
// poller and its own SO_REUSEPORT listener (on macOS they share one: see
// Engine.listen). The default, runtime.NumCPU(), gives every core one loop;
// more loops than cores only add switching.
func WithLoops(n int) Option { return func(o *options) { o.loops = n } }

// WithReadBufferSize sets the size of each loop's shared read buffer, the
// most one read(2) takes from one connection per readiness event.
func WithReadBufferSize(n int) Option { return func(o *options) { o.readBuf = n } }

// WithWriteBufferCap sets how much output may wait for a slow reader before
// the loop stops reading from it (backpressure). Pending output can pass the
// cap by at most what one callback writes.
func WithWriteBufferCap(n int) Option { return func(o *options) { o.writeCap = n } }

// WithInboundCap sets how many unconsumed input bytes a connection may keep
// (bytes a handler leaves in the buffer for later). A connection above it is
// closed with ErrInboundFull: a handler that never consumes must not make
// the server grow without bound.
func WithInboundCap(n int) Option { return func(o *options) { o.inboundCap = n } }

// WithIdleTimeout closes connections that neither sent a byte nor accepted
// one of ours for d. Zero, the default, never closes them. Each loop sweeps
// its connections every d/2, so a connection goes at between d and 1.5 d.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idle = d } }

// WithStopTimeout bounds a graceful stop: how long loops keep flushing
// pending output before they close what is left.
func WithStopTimeout(d time.Duration) Option { return func(o *options) { o.stopTimeout = d } }

// WithWorkers sets the worker pool: n goroutines, and a queue of up to
// queue jobs waiting for them (beyond it QueueWork returns ErrPoolFull).
func WithWorkers(n, queue int) Option {
	return func(o *options) { o.workers, o.workQueue = n, queue }
}

// WithLogger gives the engine a logger for what only an operator can act
// on (accept failing for lack of file descriptors, say). The default is
// silent.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }
