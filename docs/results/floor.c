/* floor.c: what the kernel alone charges for one message of the benchmark,
 * the yardstick for docs/07-performance.md. A server at one message in
 * flight needs at least one read(2) of the 64-byte message and one
 * write(2) of its answer; everything else it spends (epoll_wait, waking up,
 * the Go runtime, its own code) is on top. This program connects a TCP pair
 * over loopback and plays both sides in one thread, so nobody ever sleeps:
 *
 *   write(a, 64) -> read(b, 64) -> write(b, 64) -> read(a, 64)
 *
 * The "server" side is b: its read plus its write per message is the floor.
 * CPU time (getrusage) is the figure to read: on a busy machine the wall
 * time also holds other processes' turns. The loop is timed twice: once bare, once with an epoll_wait(timeout 0)
 * on b's epoll before each read, which is what one wake-up of a
 * level-triggered event loop adds when it is never idle, and a third time
 * with recv and send in place of the server side's read and write.
 *
 *   cc -O2 -o /tmp/floor docs/results/floor.c && taskset -c 0 /tmp/floor
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char* what) {
  perror(what);
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* cpu is this process's user and system time, in seconds. */
static void cpu(double* user, double* sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void full_read(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0)
      die("read");
    p += r;
    n -= (size_t)r;
  }
}

static void full_write(int fd, const char* p, size_t n) {
  if (write(fd, p, n) != (ssize_t)n)
    die("write");
}

/* recv(2) and send(2) with no flags do what read(2) and write(2) do on a
 * socket, but enter the socket layer directly instead of through the VFS
 * (file position lock, rw_verify_area, fsnotify). The third loop asks
 * whether that detour costs anything measurable. */
static void full_recv(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0)
      die("recv");
    p += r;
    n -= (size_t)r;
  }
}

static void full_send(int fd, const char* p, size_t n) {
  if (send(fd, p, n, 0) != (ssize_t)n)
    die("send");
}

int main(int argc, char** argv) {
  long iters = argc > 1 ? atol(argv[1]) : 500000;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (l < 0 || bind(l, (struct sockaddr*)&sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
      getsockname(l, (struct sockaddr*)&sa, &len) < 0)
    die("listen");
  int a = socket(AF_INET, SOCK_STREAM, 0);
  if (a < 0 || connect(a, (struct sockaddr*)&sa, sizeof sa) < 0)
    die("connect");
  int b = accept(l, NULL, NULL);
  if (b < 0)
    die("accept");
  int one = 1;
  /* As every server here sets it: each write is its own segment. */
  setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = b};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev) < 0)
    die("epoll");

  char msg[64], buf[64];
  memset(msg, 'a', sizeof msg);
  printf("%-36s %8s %8s %8s %8s\n", "per message (64 bytes, one thread)", "CPU ns", "user", "sys", "wall ns");
  double base[3] = {0, 0, 0};
  for (int mode = 0; mode < 3; mode++) {
    for (int warm = 0; warm < 2; warm++) {
      long n = warm ? iters : iters / 10;
      double u0, s0, u1, s1, t0 = now();
      cpu(&u0, &s0);
      for (long i = 0; i < n; i++) {
        full_write(a, msg, sizeof msg);
        if (mode == 1) {
          struct epoll_event out;
          if (epoll_wait(ep, &out, 1, 0) != 1)
            die("epoll_wait");
        }
        if (mode == 2) {
          full_recv(b, buf, sizeof buf);
          full_send(b, buf, sizeof buf);
        } else {
          full_read(b, buf, sizeof buf);
          full_write(b, buf, sizeof buf);
        }
        full_read(a, buf, sizeof buf);
      }
      cpu(&u1, &s1);
      double m[3] = {(now() - t0) / n * 1e9, (u1 - u0) / n * 1e9, (s1 - s0) / n * 1e9};
      if (!warm)
        continue;
      if (mode == 0) {
        /* The pair runs both ends: per message it pays for two reads
         * and two writes, of which the server's share is half. */
        for (int k = 0; k < 3; k++)
          base[k] = m[k];
        printf("%-36s %8.0f %8.0f %8.0f %8.0f\n", "server: read + write", (m[1] + m[2]) / 2, m[1] / 2, m[2] / 2, m[0] / 2);
        printf("%-36s %8.0f %8.0f %8.0f %8.0f\n", "both ends: 2 reads + 2 writes", m[1] + m[2], m[1], m[2], m[0]);
      } else {
        /* Only the server side changed: all of the difference is its. */
        double u = base[1] / 2 + m[1] - base[1], sy = base[2] / 2 + m[2] - base[2];
        printf("%-36s %8.0f %8.0f %8.0f %8.0f\n",
               mode == 1 ? "server: epoll_wait(0) + read + write" : "server: recv + send", u + sy, u, sy,
               base[0] / 2 + m[0] - base[0]);
      }
    }
  }
  return 0;
}
