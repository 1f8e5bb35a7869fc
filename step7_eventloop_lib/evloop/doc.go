// Package evloop is a small event-loop library in the shape of gnet, written
// by hand on golang.org/x/sys/unix so that every line of it can be read.
// Step 6 wrote one epoll loop inside one server; this package turns that loop
// into something a server *uses*: the server says what to do when a
// connection opens, when bytes arrive and when it closes, and the library
// owns the sockets, the buffers and the loop.
//
// # Model
//
// An engine runs N event loops (WithLoops, default runtime.NumCPU()). Each
// loop is one goroutine with its own poller (epoll or kqueue) and its own
// listening socket: all N listeners bind the same address with SO_REUSEPORT
// (SO_REUSEPORT_LB on FreeBSD) and the kernel spreads new connections
// across them, so loops never hand file descriptors to each other and never
// share a lock on the hot path. (macOS does not spread them: there the
// loops share one listener and race to accept.) A
// connection lives on the loop that accepted it until it closes, and every
// callback for it runs on that loop, one at a time: handlers need no locks
// for per-connection state.
//
// # Callbacks
//
// A Handler gets OnBoot once the listeners are bound, OnOpen for each new
// connection (its return value is sent first, such as the protocol's '*'
// ack), OnTraffic when bytes arrive, OnClose when a connection is gone and
// OnTick on a timer it chooses. Each returns an Action: None, Close (this
// connection, after its pending output is flushed) or Shutdown (the engine).
// Embed BuiltinHandler to get no-op versions of the callbacks you do not need.
//
// # Buffers: who owns what
//
// Reading: each loop owns one read buffer (WithReadBufferSize, 64 KiB) and
// reads every readable connection into it. In OnTraffic, Conn.Peek, Next and
// Discard look at those bytes; they are valid only until OnTraffic returns.
// Bytes the handler leaves unconsumed are copied to a buffer of the
// connection's own, so an idle connection, which is most connections in a
// C10K server, holds no buffer at all.
//
// Writing: Conn.Write tries the socket first and keeps only what the kernel
// did not take. While output is pending the loop asks epoll for EPOLLOUT, and
// only then. While pending output is above WithWriteBufferCap the loop stops
// reading that connection, so a client that sends without reading gets stuck
// in its own kernel buffers instead of growing ours.
//
// # Other goroutines
//
// Everything on a Conn is for its loop's goroutine, except AsyncWrite, Close
// and Wake, which any goroutine may call: they put a task on the loop's queue
// and wake the loop through an eventfd. QueueWork runs blocking or CPU-heavy
// work on the engine's worker pool (libuv's uv_queue_work) and then its
// completion on the loop, so a loop never stalls.
//
// # Stopping
//
// Run returns after the context ends, Engine.Stop is called or a callback
// returns Shutdown. Stopping is graceful: listeners close, connections stop
// reading, pending output is flushed for up to WithStopTimeout, then every
// connection is closed and OnClose runs for each.
//
// The package runs on epoll (Linux, poller_linux.go) and kqueue (macOS and
// FreeBSD, poller_kqueue.go), behind the contract in poller.go; the tests
// have run on Linux only, the kqueue poller was only built and vetted.
// Elsewhere it builds, and Run returns ErrUnsupported at once.
package evloop
