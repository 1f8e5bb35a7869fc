#!/usr/bin/env bash
# light-threads.sh: where a server's CPU goes at a light load, thread by
# thread (docs/07-performance.md, "A light load"). It starts SERVER pinned
# to CPU 0, runs `client bench --rate 20 --pid` against it from CPU 1 (100
# connections, 2,000 messages a second in all, 1 s warm-up + 4 s), and
# 1.5 s in reads every thread's context switches and CPU ticks from
# /proc/PID/task/*, twice, 2 s apart. It prints bench's CPU per message and
# each thread that switched more than 50 times in those 2 s (a Go server's
# lowest tids are the main thread and sysmon, the runtime's monitor).
#
#   go build -o bin/client ./client && go build -o bin/step7 ./step7_eventloop_lib
#   docs/results/light-threads.sh bin/step7
#   GOMAXPROCS=2 docs/results/light-threads.sh bin/step7 --loops 1
#
# Linux only (/proc, taskset); needs jq. The environment is passed on to the
# server, so GOMAXPROCS=2 in front sets the server's.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: light-threads.sh SERVER [SERVER FLAGS...]" >&2; exit 2; }
log=$(mktemp) out=$(mktemp) t1=$(mktemp) t2=$(mktemp)
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -f "$log" "$out" "$t1" "$t2"' EXIT
taskset -c 0 "$@" --port 0 2>"$log" &
pid=$!
addr=
for _ in $(seq 100); do
  addr=$(grep -o 'msg=listening addr=[^ ]*' "$log" | head -1 | cut -d= -f3) || true
  [ -n "$addr" ] && break
  sleep 0.05
done
[ -n "$addr" ] || { echo "$1 did not start:" >&2; cat "$log" >&2; exit 1; }
taskset -c 1 bin/client bench --json --conns 100 --size 64 --rate 20 --warmup 1s --duration 4s \
  --pid "$pid" "${addr%:*}" "${addr##*:}" >"$out" &
bench=$!
# snap prints "tid voluntary nonvoluntary cpu_ticks" for every thread.
snap() {
  for t in /proc/"$pid"/task/*; do
    echo "${t##*/} $(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status") $(awk '{print $14 + $15}' "$t/stat")"
  done | sort
}
sleep 1.5
snap >"$t1"
sleep 2
snap >"$t2"
wait "$bench"
kill -TERM "$pid"
wait "$pid" || true
pid=
echo "$* (GOMAXPROCS=${GOMAXPROCS:-unset}): $(jq -r '"\(.msgs_per_s | floor) msgs/s, server \((.server_cpu_per_msg_s * 1e6 * 10 | floor) / 10) µs/msg"' "$out")"
join "$t1" "$t2" | awk '$5 - $2 + $6 - $3 > 50 {
  printf "  tid %s: %d voluntary, %d involuntary switches in 2 s, %d CPU ticks (1/100 s)\n", $1, $5 - $2, $6 - $3, $7 - $4 }'
