#!/usr/bin/env bash
# cpu.sh PORT SERVER [FLAGS...]: start SERVER pinned to core 0 on PORT, run
# five classic sessions from bin/client pinned to core 1, and print the
# client's Elapsed, the server's CPU ticks (utime + stime from
# /proc/PID/stat, 1/100 s) during the sessions only, and the server's own
# "cpu time" log line. Run from the repository root after
# `go build -o bin/client ./client`; chapters 4 and 5 use it.
set -euo pipefail
port=$1; shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
taskset -c 0 "$@" --port "$port" 2>"$log" &
pid=$!
until ss -Hltn "sport = :$port" | grep -q .; do sleep 0.1; done
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
el=$(taskset -c 1 bin/client -q -n 5 127.0.0.1 "$port" | sed 's/Elapsed: //')
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill -INT $pid; wait $pid
echo "elapsed=$el cpu_ticks=$((t1-t0)) $(grep 'cpu time' "$log" | sed 's/.*msg="cpu time" //')"
