#!/usr/bin/env bash
# Hold N connections against a step with the classic client and read the
# server's threads, memory and open fds, as docs/02-thread-per-conn.md and
# docs/c10k-c1m.md report them. Run from the repository root, on a machine
# where nothing else listens on 127.0.0.1:8080.
#
#   docs/results/hold.sh step2_thread_per_conn 1 100 1000
#   SCALE=20 WAITS=800 docs/results/hold.sh step6_epoll 10000
#   EXTRA=--threads docs/results/hold.sh step3_blocking 100
#
# For each N, three times: a fresh server on core 0, N classic sessions
# stretched by --scale (SCALE, default 5: 11 s a session) from core 1, and,
# once ss shows N established (or WAITS x 50 ms passed), one sample.
set -u
step=$1; shift
sample() { # pid label
  printf '%s threads=%s rss_kib=%s fds=%s\n' "$2" \
    "$(awk '/^Threads:/{print $2}' /proc/$1/status)" \
    "$(awk '/^VmRSS:/{print $2}' /proc/$1/status)" \
    "$(ls /proc/$1/fd | wc -l)"
}
for n in "$@"; do
  for r in 1 2 3; do
    taskset -c 0 go run ./$step --port 8080 ${EXTRA:-} > /tmp/hold-server.log 2>&1 &
    gopid=$!
    pid=
    for i in $(seq 100); do
      pid=$(ss -ltnp 'sport = :8080' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
      [ -n "$pid" ] && break; sleep 0.1
    done
    sleep 0.5
    sample $pid "$step n=$n run=$r idle"
    taskset -c 1 go run ./client -q --scale ${SCALE:-5} -n $n 127.0.0.1 8080 > /tmp/hold-client.out 2>&1 &
    cpid=$!
    for i in $(seq ${WAITS:-200}); do
      est=$(ss -Htn state established '( sport = :8080 )' | wc -l)
      [ "$est" -ge "$n" ] && break; sleep 0.05
    done
    sleep 1
    est=$(ss -Htn state established '( sport = :8080 )' | wc -l)
    sample $pid "$step n=$n run=$r held(established=$est)"
    echo "  sockstat: $(grep ^TCP: /proc/net/sockstat) conntrack_count=$(cat /proc/sys/net/netfilter/nf_conntrack_count)"
    wait $cpid; cs=$?; echo "client: $(tr "\n" " " < /tmp/hold-client.out) exit=$cs"
    kill -INT $pid; wait $gopid; echo "server exit=$?"
  done
done
