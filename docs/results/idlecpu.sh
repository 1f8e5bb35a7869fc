#!/usr/bin/env bash
# Server CPU time (utime + stime from /proc/PID/stat) over 5 s while
# client hold keeps 100 connections idle: what waiting costs each model.
set -u
# Run from the repository root, with nothing else on 127.0.0.1:8080.
tck=$(getconf CLK_TCK)
cpu() { awk -v t=$tck '{printf "%d", ($14 + $15) * 1000 / t}' /proc/$1/stat; }
spid() { ss -ltnp 'sport = :8080' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
run() { # label, step args...
  label=$1; shift
  taskset -c 0 go run "$@" --port 8080 > /tmp/idlecpu-server.log 2>&1 &
  gp=$!
  for i in $(seq 100); do [ -n "$(spid)" ] && break; sleep 0.1; done
  PID=$(spid); sleep 0.5
  taskset -c 1 go run ./client hold --conns 100 --hold 12s 127.0.0.1 8080 > /tmp/idlecpu-hold.out 2>&1 &
  hp=$!
  for i in $(seq 200); do [ "$(ss -Htn state established '( sport = :8080 )' | wc -l)" -ge 100 ] && break; sleep 0.05; done
  sleep 2
  c0=$(cpu $PID); sleep 5; c1=$(cpu $PID)
  echo "$label: 100 idle connections held, server CPU over 5 s: $((c1 - c0)) ms"
  wait $hp; kill -INT $PID; wait $gp
}
run "step4_nonblocking_poll --interval 0" ./step4_nonblocking_poll --interval 0
run "step4_nonblocking_poll (default --interval)" ./step4_nonblocking_poll
run "step5_select" ./step5_select
run "step6_epoll" ./step6_epoll
run "step2_thread_per_conn" ./step2_thread_per_conn
