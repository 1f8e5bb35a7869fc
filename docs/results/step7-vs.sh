#!/usr/bin/env bash
# step7-vs.sh: step 7 beside gnet, libuv, step 6 and step 2, on CPU per
# message. Each round starts every server in turn (the order rotates from
# round to round, so a slow minute of the machine does not land on one
# server only), pinned to CPU 0, and runs `client bench --pid` pinned to
# CPU 1: 100 connections, 64-byte messages, 1 and then 16 in flight, 1 s of
# warm-up and 4 s measured. It prints every run, then the medians as a
# Markdown table with the ratios to gnet and to libuv, of the medians and
# round by round.
#
#   docs/results/step7-vs.sh [ROUNDS] | tee docs/results/step7-vs-$(date -u +%Y%m%d).txt
#
# Run it from the repository root on an otherwise idle machine (on a shared
# one, under flock with the other benchmarks' lock file, so two never
# overlap). It needs go, taskset and jq; the libuv server also needs cc and
# libuv's development package (pkg-config --exists libuv), and is left out
# with one line when they are missing. ROUNDS defaults to 5.
set -euo pipefail

rounds=${1:-5}
depths=${DEPTHS:-"1 16"}
duration=${DURATION:-4s}
for tool in go taskset jq; do
  command -v "$tool" >/dev/null || { echo "step7-vs.sh: needs $tool" >&2; exit 2; }
done

tmp=$(mktemp -d)
srv_pid=
cleanup() {
  # Stop only the server this script started, by its pid.
  if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Build everything first, so no compiler runs while a server is measured.
go build -o "$tmp/client" ./client
go build -o "$tmp/step2" ./step2_thread_per_conn
go build -o "$tmp/step6" ./step6_epoll
go build -o "$tmp/step7" ./step7_eventloop_lib
go build -o "$tmp/gnet" ./step7_eventloop_lib/gnetserver
servers="step7 gnet step6 step2"
if command -v cc >/dev/null && pkg-config --exists libuv 2>/dev/null; then
  # shellcheck disable=SC2046 # pkg-config's flags are meant to split
  cc -O2 -o "$tmp/libuv" step7_eventloop_lib/libuvserver/server.c $(pkg-config --cflags --libs libuv)
  servers="step7 gnet libuv step6 step2"
  libuv_version=$(pkg-config --modversion libuv)
else
  echo "libuv: skipped (no cc or pkg-config --exists libuv fails; install libuv's development package)"
  libuv_version=none
fi

# RATE=R runs every bench open-loop at R messages a second per connection
# instead (a light load, where sleeping and waking dominate; DEPTHS is then
# only a label). SERVERS picks a subset; EXTRA="name=binary ..." adds servers built
# elsewhere (a change's before and after, say), run like the others.
servers=${SERVERS:-$servers}
for x in ${EXTRA:-}; do
  cp "${x#*=}" "$tmp/${x%%=*}"
  servers="$servers ${x%%=*}"
done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(go version | cut -d' ' -f3), libuv $libuv_version, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# servers pinned to CPU 0, client bench pinned to CPU 1; 100 conns, 64-byte messages, 1 s warm-up + $duration; $rounds rounds"
[ -n "${RATE:-}" ] && echo "# open loop: $RATE messages a second per connection (the depth column is unused)"
echo
printf '%-6s %5s %5s %10s %10s %8s %8s\n' round depth server msgs/s us/msg p50_us p99_us
runs=$tmp/runs.tsv
: >"$runs"

# run starts server $1, benches it at depth $2, stops it, and appends
# "server depth msgs/s us/msg p50 p99" to the runs file.
run() {
  local name=$1 depth=$2 log=$tmp/$1.log addr="" i
  : >"$log" # empty it here: the last run's line must not be read as this one's
  taskset -c 0 "$tmp/$name" --port 0 2>"$log" &
  srv_pid=$!
  for i in $(seq 100); do
    addr=$(grep -o 'msg=listening addr=[^ ]*' "$log" | head -1 | cut -d= -f3) || true
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "$name did not start:" >&2; cat "$log" >&2; exit 1; }
  local load=(--pipeline "$depth")
  [ -n "${RATE:-}" ] && load=(--rate "$RATE") # open loop: RATE messages a second per connection
  taskset -c 1 "$tmp/client" bench --json --conns 100 --size 64 "${load[@]}" \
    --warmup 1s --duration "$duration" --pid "$srv_pid" "${addr%:*}" "${addr##*:}" >"$tmp/out.json" ||
    { echo "bench against $name failed" >&2; exit 1; }
  kill -TERM "$srv_pid"
  wait "$srv_pid" || { echo "$name exited non-zero after SIGTERM:" >&2; cat "$log" >&2; exit 1; }
  srv_pid=
  if [ "$(jq '.server_cpu_per_msg_s // 0' "$tmp/out.json")" = 0 ]; then
    # No CPU figure for the server (its /proc entry could not be read):
    # a run without the number this table is about is left out.
    echo "$name depth $depth: no server CPU figure, run left out" >&2
    return
  fi
  jq -r --arg s "$name" --arg d "$depth" --arg r "$round" \
    '[$s, $d, .msgs_per_s, (.server_cpu_per_msg_s * 1e6), (.latency_s.p50 * 1e6), (.latency_s.p99 * 1e6), $r] | @tsv' \
    "$tmp/out.json" >>"$runs"
  tail -1 "$runs" | awk -v r="$round" '{ printf "%-6s %5s %5s %10.0f %10.3f %8.0f %8.0f\n", r, $2, $1, $3, $4, $5, $6 }'
}

for round in $(seq "$rounds"); do
  # Rotate the order by one each round.
  read -ra list <<<"$servers"
  off=$(( (round - 1) % ${#list[@]} ))
  order="${list[*]:off} ${list[*]:0:off}"
  for depth in $depths; do
    for s in $order; do
      run "$s" "$depth"
    done
  done
done

# Medians per server and depth, then the ratios of CPU per message to
# gnet's and libuv's (below 1: cheaper than them), two ways. "÷ gnet" is
# the ratio of the medians. "per round" divides each run by the same
# round's gnet (or libuv) run, at most a minute apart, and gives the median
# of those ratios with the lowest and highest: a slow minute of the machine
# moves both runs of a pair, so these spread less than the medians do, and
# a range that straddles 1.00 is a tie.
echo
echo "| server | in flight | msgs/s | server µs/msg | p50 µs | p99 µs | µs/msg ÷ gnet | µs/msg ÷ libuv | ÷ gnet per round | ÷ libuv per round |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for depth in $depths; do
  for s in $servers; do
    awk -v s="$s" -v d="$depth" '$1 == s && $2 == d' "$runs"
  done
done | awk '
  function sort(list, a,   n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n
  }
  function median(list,   n, a) {
    n = sort(list, a)
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  # paired: the per-round ratios of server k to server ref at the same depth.
  function paired(k, ref,   sd, r, list, n, a) {
    split(k, sd, SUBSEP)
    list = ""
    for (r = 1; r <= maxround; r++)
      if (((k SUBSEP r) in one) && ((ref SUBSEP sd[2] SUBSEP r) in one))
        list = list " " one[k SUBSEP r] / one[ref SUBSEP sd[2] SUBSEP r]
    if (list == "") return "n/a"
    n = sort(list, a)
    return sprintf("%.2f [%.2f–%.2f]", median(list), a[1], a[n])
  }
  {
    k = $1 SUBSEP $2
    if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
    tput[k] = tput[k] " " $3; cpu[k] = cpu[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
    one[k SUBSEP $7] = $4
    if ($7 + 0 > maxround) maxround = $7 + 0
  }
  END {
    for (i = 1; i <= nk; i++) { k = keys[i]; mc[k] = median(cpu[k]) }
    for (i = 1; i <= nk; i++) {
      k = keys[i]; split(k, sd, SUBSEP)
      g = (("gnet" SUBSEP sd[2]) in mc) ? sprintf("%.2f", mc[k] / mc["gnet" SUBSEP sd[2]]) : "n/a"
      u = (("libuv" SUBSEP sd[2]) in mc) ? sprintf("%.2f", mc[k] / mc["libuv" SUBSEP sd[2]]) : "n/a"
      printf "| %s | %s | %.0f | %.3f | %.0f | %.0f | %s | %s | %s | %s |\n", sd[1], sd[2], median(tput[k]), mc[k], median(p50[k]), median(p99[k]), g, u, paired(k, "gnet"), paired(k, "libuv")
    }
  }'
echo
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
