#!/usr/bin/env bash
# Three client bench runs against every concurrent step, server on core 0,
# client on core 1, as docs/results.md reports them.
set -u
# Run from the repository root, with nothing else on 127.0.0.1:8080.
spid() { ss -ltnp 'sport = :8080' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
for r in 1 2 3; do
for s in step2_thread_per_conn step4_nonblocking_poll step5_select step6_epoll step7_eventloop_lib step7_eventloop_lib/gnetserver; do
  taskset -c 0 go run ./$s --port 8080 > /tmp/bench-server.log 2>&1 &
  gp=$!
  for i in $(seq 100); do [ -n "$(spid)" ] && break; sleep 0.1; done
  PID=$(spid); sleep 0.5
  echo "== $s run $r"
  echo "\$ taskset -c 0 go run ./$s --port 8080 &"
  echo "\$ taskset -c 1 go run ./client bench --markdown --pid \$PID 127.0.0.1 8080"
  taskset -c 1 go run ./client bench --markdown --pid $PID 127.0.0.1 8080 2>&1
  echo "exit=$?"
  kill -INT $PID; wait $gp; echo "server exit=$?"
done
done
