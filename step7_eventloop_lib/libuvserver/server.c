/* The protocol server on libuv 1.x, in C: one loop, callbacks, and
 * uv_try_write before queueing. It is the reference step 7's library is
 * measured against (docs/07-performance.md), the model evloop copies:
 * uv_listen, uv_read_start into one shared buffer, an answer written at
 * once and only the rest queued, reading stopped while too much is queued.
 *
 * It is not a Go package and no Go command builds it. Build and run:
 *
 *   cc -O2 -o /tmp/libuvserver step7_eventloop_lib/libuvserver/server.c \
 *      $(pkg-config --cflags --libs libuv)
 *   /tmp/libuvserver --port 8080
 *
 * Flags, log lines and signals are the Go steps': --host, --port (0 picks a
 * free port and logs it), "msg=listening addr=...", exit 0 on SIGINT or
 * SIGTERM, and one line with exit status 2 for a bad flag. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <uv.h>

/* The protocol (internal/protocol/protocol.go, the Go steps' machine):
 * '*' on accept, then every byte between '^' and '$' answered with its
 * successor, everything outside a message ignored. */
enum { WAIT_FOR_MSG, IN_MSG };

/* writeCap is how much answer a connection may have queued before we stop
 * reading from it: a peer that sends without reading costs us at most this
 * (evloop's default is the same), not its whole flood. */
enum { WRITE_CAP = 64 * 1024 };

typedef struct {
  uv_tcp_t tcp; /* first, so a uv_stream_t* is a conn_t* */
  unsigned char state;
  int eof;     /* the peer shut its write side: close once nothing is owed */
  int stopped; /* reading stopped for backpressure */
  int closing;
} conn_t;

/* One queued write: the request and its bytes in one allocation. */
typedef struct {
  uv_write_t req;
  uv_buf_t buf;
  char data[];
} wreq_t;

static uv_loop_t* loop;
static uv_tcp_t server;
static uv_signal_t sigint_h, sigterm_h;
static uv_timer_t relisten;
static struct sockaddr_storage bound;

/* Every connection reads into this one buffer: the loop runs one callback
 * at a time and a read callback is done with its bytes before the next
 * read, so a buffer per connection would only cost memory. What cannot be
 * written at once is copied out. */
static char rbuf[64 * 1024];

/* logline prints one line in the shape Go's log/slog text handler gives the Go
 * steps (time=... level=... msg=... key=value), so tests and scripts read
 * every server's log alike. stderr is unbuffered: a line is out at once. A
 * failed write (the log reader went away) is ignored; SIGPIPE is too. */
static void logline(const char* level, const char* msg, const char* fmt, ...) {
  char ts[64];
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "time=%s.%03ldZ level=%s msg=%s", ts, now.tv_nsec / 1000000, level, msg);
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    fputc(' ', stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
  }
  fputc('\n', stderr);
}

static void on_close(uv_handle_t* h) { free(h); }

/* close_conn closes c once: uv_close cancels whatever is still queued, so
 * callers that owe bytes wait for the queue to drain first. */
static void close_conn(conn_t* c) {
  if (!c->closing) {
    c->closing = 1;
    uv_close((uv_handle_t*)c, on_close);
  }
}

static void on_alloc(uv_handle_t* h, size_t hint, uv_buf_t* buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

/* on_write runs when a queued answer is fully written (or failed). It
 * resumes reading once the queue is small again, and finishes a
 * half-closed connection once nothing is owed. */
static void on_write(uv_write_t* req, int status) {
  conn_t* c = (conn_t*)req->handle;
  free(req);
  if (c->closing)
    return;
  if (status < 0) {
    /* EPIPE, ECONNRESET: the peer is gone; this connection only. */
    logline("INFO", "connection", "err=\"write: %s\"", uv_strerror(status));
    close_conn(c);
    return;
  }
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t*)c);
  if (c->eof && queued == 0) {
    close_conn(c);
    return;
  }
  if (c->stopped && !c->eof && queued < WRITE_CAP / 2) {
    c->stopped = 0;
    uv_read_start((uv_stream_t*)c, on_alloc, on_read);
  }
}

/* send_answer writes p: straight to the socket while nothing is queued
 * (uv_try_write, one write(2), no copy, no request), and queues only what
 * the kernel refused. Bytes must leave in order, so once something is
 * queued everything after it queues too. */
static int send_answer(conn_t* c, const char* p, size_t len) {
  uv_stream_t* s = (uv_stream_t*)c;
  if (uv_stream_get_write_queue_size(s) == 0) {
    uv_buf_t b = uv_buf_init((char*)p, (unsigned)len);
    int w = uv_try_write(s, &b, 1);
    if (w == UV_EAGAIN)
      w = 0; /* socket buffer full: queue it all */
    if (w < 0)
      return w;
    p += w;
    len -= (size_t)w;
  }
  if (len == 0)
    return 0;
  wreq_t* r = malloc(sizeof *r + len);
  if (r == NULL)
    return UV_ENOMEM;
  memcpy(r->data, p, len);
  r->buf = uv_buf_init(r->data, (unsigned)len);
  int err = uv_write(&r->req, s, &r->buf, 1, on_write);
  if (err < 0) {
    free(r);
    return err;
  }
  if (uv_stream_get_write_queue_size(s) > WRITE_CAP && !c->stopped) {
    /* Backpressure: the peer does not read its answers; stop reading
     * its input until it does (on_write resumes). */
    c->stopped = 1;
    uv_read_stop(s);
  }
  return 0;
}

/* on_read feeds what arrived through the machine and answers in place: an
 * answer is never longer than its input, and byte k is written only after
 * input byte k was read. */
static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  conn_t* c = (conn_t*)s;
  if (n == 0)
    return; /* EAGAIN: nothing after all */
  if (n == UV_EOF) {
    /* FIN: the peer may still read; send what is owed, then close. */
    c->eof = 1;
    uv_read_stop(s);
    if (uv_stream_get_write_queue_size(s) == 0)
      close_conn(c);
    return;
  }
  if (n < 0) {
    logline("INFO", "connection", "err=\"read: %s\"", uv_strerror((int)n));
    close_conn(c);
    return;
  }
  char* out = buf->base;
  size_t k = 0;
  unsigned char st = c->state;
  for (ssize_t i = 0; i < n; i++) {
    unsigned char b = (unsigned char)buf->base[i];
    if (st == WAIT_FOR_MSG) {
      if (b == '^')
        st = IN_MSG;
    } else if (b == '$') {
      st = WAIT_FOR_MSG;
    } else {
      out[k++] = (char)(b + 1); /* wraps: 0xFF is answered with 0x00 */
    }
  }
  c->state = st;
  if (k > 0) {
    int err = send_answer(c, out, k);
    if (err < 0) {
      logline("INFO", "connection", "err=\"write: %s\"", uv_strerror(err));
      close_conn(c);
    }
  }
}

static void start_listening(void);

static void on_relisten(uv_timer_t* t) {
  (void)t;
  start_listening();
}

static void on_server_closed(uv_handle_t* h) {
  (void)h;
  /* Try again in a second: enough for clients to leave and give fds back. */
  uv_timer_start(&relisten, on_relisten, 1000, 0);
}

/* on_connection runs once libuv has accepted a connection. libuv's own
 * answer to EMFILE never reaches us: it keeps one spare fd, and when accept
 * fails for lack of fds it closes the spare, accepts every queued
 * connection and closes it at once (the client sees EOF, not a hang), then
 * takes the spare back. An error here means even that failed; libuv would
 * call us again at once, in a loop, so stop listening for a second. */
static void on_connection(uv_stream_t* srv, int status) {
  if (status < 0) {
    logline("WARN", "accept failed, backing off", "err=\"%s\"", uv_strerror(status));
    uv_close((uv_handle_t*)srv, on_server_closed);
    return;
  }
  conn_t* c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(srv, (uv_stream_t*)c) < 0) {
    uv_close((uv_handle_t*)c, on_close);
    return;
  }
  /* Answers are small and must leave at once: no Nagle, as Go sets it on
   * every TCP connection. */
  uv_tcp_nodelay(&c->tcp, 1);
  static const char ack[] = "*";
  if (send_answer(c, ack, 1) < 0) {
    close_conn(c);
    return;
  }
  uv_read_start((uv_stream_t*)c, on_alloc, on_read);
}

static void start_listening(void) {
  uv_tcp_init(loop, &server);
  int err = uv_tcp_bind(&server, (const struct sockaddr*)&bound, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t*)&server, 1024, on_connection);
  if (err < 0) {
    logline("WARN", "listen again failed, retrying", "err=\"%s\"", uv_strerror(err));
    uv_close((uv_handle_t*)&server, on_server_closed);
    return;
  }
}

static void close_walk(uv_handle_t* h, void* arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (h->type == UV_TCP && h != (uv_handle_t*)&server)
    close_conn((conn_t*)h); /* a connection: freed in on_close */
  else
    uv_close(h, NULL); /* static handles: nothing to free */
}

/* on_signal is SIGINT or SIGTERM: close every handle, so uv_run returns
 * and main exits 0. */
static void on_signal(uv_signal_t* h, int sig) {
  (void)h;
  logline("INFO", "stopping", "signal=%s", sig == SIGINT ? "interrupt" : "terminated");
  uv_walk(loop, close_walk, NULL);
}

static void usage(FILE* f) {
  fprintf(f, "usage: libuvserver [--host ADDR] [--port PORT]\n"
             "  serve the protocol from one libuv loop (127.0.0.1:8080 by default; --port 0 picks a free port)\n");
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  long port = 8080;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if ((strcmp(a, "--host") == 0 || strcmp(a, "--port") == 0) && i + 1 < argc) {
      const char* v = argv[++i];
      if (a[2] == 'h') {
        host = v;
        continue;
      }
      char* end;
      port = strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "libuvserver: invalid port %s (see --help)\n", v);
        return 2;
      }
      continue;
    }
    fprintf(stderr, "libuvserver: unknown or incomplete flag %s (see --help)\n", a);
    return 2;
  }
  /* A write to a socket whose peer is gone raises SIGPIPE, which kills
   * the process by default; we want EPIPE from write instead. The same
   * holds for our log when its reader goes away. */
  signal(SIGPIPE, SIG_IGN);
  /* Raise the soft open-file limit to the hard one, as the Go steps do:
   * 1024 fds would cap us at about a thousand clients. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  loop = uv_default_loop();
  int err = strchr(host, ':') ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6*)&bound)
                              : uv_ip4_addr(host, (int)port, (struct sockaddr_in*)&bound);
  if (err < 0) {
    fprintf(stderr, "libuvserver: invalid host %s: %s (see --help)\n", host, uv_strerror(err));
    return 2;
  }
  uv_tcp_init(loop, &server);
  /* uv_tcp_bind sets SO_REUSEADDR, so a restart does not wait for the
   * old connections' TIME_WAIT. */
  err = uv_tcp_bind(&server, (const struct sockaddr*)&bound, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t*)&server, 1024, on_connection);
  if (err < 0) {
    fprintf(stderr, "libuvserver: listen %s:%ld: %s\n", host, port, uv_strerror(err));
    return 1;
  }
  /* With --port 0 the kernel picked the port: ask it, and keep the real
   * address for a listen after an accept back-off. */
  int len = sizeof bound;
  uv_tcp_getsockname(&server, (struct sockaddr*)&bound, &len);
  char ip[INET6_ADDRSTRLEN];
  if (bound.ss_family == AF_INET6) {
    struct sockaddr_in6* a6 = (struct sockaddr_in6*)&bound;
    uv_ip6_name(a6, ip, sizeof ip);
    logline("INFO", "listening", "addr=[%s]:%d", ip, ntohs(a6->sin6_port));
  } else {
    struct sockaddr_in* a4 = (struct sockaddr_in*)&bound;
    uv_ip4_name(a4, ip, sizeof ip);
    logline("INFO", "listening", "addr=%s:%d", ip, ntohs(a4->sin_port));
  }

  uv_timer_init(loop, &relisten);
  uv_signal_init(loop, &sigint_h);
  uv_signal_start(&sigint_h, on_signal, SIGINT);
  uv_signal_init(loop, &sigterm_h);
  uv_signal_start(&sigterm_h, on_signal, SIGTERM);

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  logline("INFO", "stopped", NULL);
  return 0;
}
