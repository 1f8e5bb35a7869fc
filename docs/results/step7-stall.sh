#!/usr/bin/env bash
# step7-stall.sh: closed loop against open loop, same server, same stall.
# Step 7's protocol server runs on one loop, pinned to CPU 0; 2 s into each
# 4 s measurement the loop stops for 500 ms, as the is-prime server's loop
# does while a big check runs on it. A loop that runs one long callback
# serves nobody meanwhile; SIGSTOP and SIGCONT do the same to the whole
# process, from outside, so that `client bench` (which speaks this
# protocol, not is-prime's) can measure it. First bench's closed loop
# (each connection sends its next message when answered), then its open
# loop (--rate: a fixed schedule, latency from each message's due time).
#
#   docs/results/step7-stall.sh | tee docs/results/step7-stall-$(date -u +%Y%m%d).txt
set -euo pipefail

tmp=$(mktemp -d)
srv_pid=
cleanup() {
  if [ -n "$srv_pid" ]; then kill -CONT "$srv_pid" 2>/dev/null || true; kill -TERM "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/client" ./client
go build -o "$tmp/step7" ./step7_eventloop_lib

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in closed open; do
  : >"$tmp/log" # empty it here: the last run's line must not be read as this one's
  taskset -c 0 "$tmp/step7" --loops 1 --port 0 2>"$tmp/log" &
  srv_pid=$!
  addr=
  for _ in $(seq 100); do
    addr=$(grep -o 'msg=listening addr=[^ ]*' "$tmp/log" | head -1 | cut -d= -f3) || true
    [ -n "$addr" ] && break
    sleep 0.05
  done
  args=(--conns 10 --size 64 --warmup 1s --duration 4s)
  # 10 connections at 1000 msgs/s each: a load the server carries with
  # room to spare, so what is left above a round trip is the stall's.
  [ "$mode" = open ] && args+=(--rate 1000)
  echo
  echo "\$ client bench ${args[*]} $addr    # $mode loop; SIGSTOP for 500 ms at 3 s"
  taskset -c 1 "$tmp/client" bench "${args[@]}" "${addr%:*}" "${addr##*:}" &
  bench=$!
  sleep 3
  kill -STOP "$srv_pid"
  sleep 0.5
  kill -CONT "$srv_pid"
  wait "$bench"
  kill -TERM "$srv_pid"
  wait "$srv_pid" || true
  srv_pid=
done
