// Package conformance holds every step's server to one contract, with one
// table-driven suite: the protocol (PROTOCOL.md) on every kind of input, and
// the robustness rules every server follows (a reset, garbage, a half-close,
// a slow reader, SIGTERM, running out of file descriptors). It has no code
// of its own, only tests; they are Linux-only, because they look at the
// server process through /proc.
//
//	go test ./internal/conformance                      # the suite, every step
//	go test ./internal/conformance -run 'Conformance/step6'  # one step's rows
//	go test ./internal/conformance -run Soak -soak -v -timeout 20m  # the soak run
//	go test ./internal/conformance -run '^$' -fuzz FuzzLive -fuzztime 1m
//
// Each row of the table (steps_test.go) is one server configuration: a step
// and the arguments of one of its modes. Each case runs against a fresh
// server process of that row (steptest.Start: built once, --port 0), so cases
// run in parallel and cannot disturb each other. A row whose step is not in
// the checkout yet is skipped with a message naming it.
//
// # Cases
//
//   - examples: every example of PROTOCOL.md, the first three on one
//     connection with each answer read before the next line is sent (answers
//     are streamed, not held until a message ends).
//   - byte-by-byte: the examples, one write per byte.
//   - many-in-one-write: a thousand messages and noise in a single write.
//   - all-256-bytes: every byte value inside a message.
//   - stream-1MiB: a 1 MiB message written by one goroutine while another
//     reads; the whole answer must arrive before the client half-closes.
//   - half-close: send 64 KiB, shut the write side, only then read: every
//     owed byte, then EOF.
//   - reset: a client resets (SO_LINGER 0, close) mid-message, another while
//     the server is writing 1 MiB of answers to it; then a client is served.
//   - garbage: 50 clients at once send random bytes and leave, half of them
//     with a reset; then a client is served.
//   - idle-client: a client idles mid-message; another must be served within
//     5 sessions' time (concurrent rows), or must NOT get its '*' while the
//     first stays (sequential rows: that is their lesson), and gets it once
//     the first leaves.
//   - slow-reader: a client with a 4 KiB receive buffer sends '^' and 8 MiB
//     and never reads. Server RSS (VmRSS, sampled every 10 ms) may grow at
//     most 4 MiB over its baseline (16 MiB under -race); another client is
//     served within 5 sessions' time (concurrent rows) or waits until the
//     flooder leaves (sequential rows).
//   - fds-threads: 50 sessions at once (3 for sequential rows) come and go;
//     the server's open fds (/proc/PID/fd) come back to the baseline within
//     5 s and its OS threads to at most the baseline plus 8. Goroutines are
//     invisible from outside the process, so fds and threads stand in for
//     them.
//   - sigterm: with clients mid-message (and, for a sequential server, one
//     waiting in the accept queue), SIGTERM ends the server with status 0
//     within 1 s (3 s under -race) and the port stops accepting.
//   - emfile: prlimit(2) lowers the live server's soft RLIMIT_NOFILE so that
//     4 more clients fit (none for a sequential server), then 20 clients
//     arrive. The server must log the condition once per burst (at most one
//     line per accept loop), use under 30% of one CPU over the next 2 s
//     (/proc/PID/stat utime+stime: no accept spin), and serve a new client
//     once the others leave (a sequential server also gets its limit back,
//     since it holds none of them).
//
// Every case but sigterm also checks, after the case, that the server is
// still running and that its fds are back to what they were after one
// warm-up conversation; and every server must exit 0 on the SIGTERM that
// ends the case.
//
// Time limits are generous multiples of a session's length; sizes are the
// same with and without -race.
package conformance
