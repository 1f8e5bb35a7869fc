#!/usr/bin/env bash
# step7-profile.sh: where a message's microseconds go, in step 7, gnet and
# the libuv server, at 1 and 16 messages in flight (100 connections,
# 64-byte messages, server pinned to CPU 0, client bench to CPU 1). For each
# server and depth it prints:
#
#   - syscalls per message, counted by the kernel's tracepoints (perf stat
#     -e 'syscalls:sys_enter_*' on the server's pid, over 2 s of the run),
#     divided by the messages bench answered meanwhile;
#   - where the server's CPU time goes (perf record, 2 s, sampled), put in
#     buckets: the kernel's TCP and loopback path, epoll, the scheduler,
#     syscall entry and exit, the Go runtime, and the server's own code;
#   - for step 7, the Go CPU profile of the whole run (--cpuprofile).
#
# Then the floor: floor.c, a read and a write per message with nobody ever
# asleep, three times. Run it from the repository root on an idle machine
# (under flock on a shared one); it needs go, taskset, jq, perf and cc, and
# libuv's development package for the libuv server.
#
#   docs/results/step7-profile.sh | tee docs/results/step7-profile-$(date -u +%Y%m%d).txt
set -euo pipefail

depths=${DEPTHS:-"1 16"}
for tool in go taskset jq perf cc; do
  command -v "$tool" >/dev/null || { echo "step7-profile.sh: needs $tool" >&2; exit 2; }
done
tmp=$(mktemp -d)
srv_pid=
bench_pid=
cleanup() {
  if [ -n "$bench_pid" ]; then kill -TERM "$bench_pid" 2>/dev/null || true; fi
  if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/client" ./client
go build -o "$tmp/step7" ./step7_eventloop_lib
go build -o "$tmp/gnet" ./step7_eventloop_lib/gnetserver
cc -O2 -o "$tmp/floor" docs/results/floor.c
servers="step7 gnet"
if pkg-config --exists libuv 2>/dev/null; then
  # shellcheck disable=SC2046 # pkg-config's flags are meant to split
  cc -O2 -g -o "$tmp/libuv" step7_eventloop_lib/libuvserver/server.c $(pkg-config --cflags --libs libuv)
  servers="step7 gnet libuv"
else
  echo "libuv: skipped (pkg-config --exists libuv fails; install libuv's development package)"
fi

# SERVERS picks a subset; EXTRA="name=binary ..." adds servers built
# elsewhere (a scratch copy with a change, say), profiled like the others.
servers=${SERVERS:-$servers}
for x in ${EXTRA:-}; do
  cp "${x#*=}" "$tmp/${x%%=*}"
  servers="$servers ${x%%=*}"
done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(go version | cut -d' ' -f3), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# The syscalls worth naming; raw_syscalls:sys_enter counts all of them.
sc="read write writev readv epoll_wait epoll_pwait epoll_ctl futex nanosleep sched_yield getsockopt accept4 tgkill"
events=raw_syscalls:sys_enter
for s in $sc; do
  [ -e "/sys/kernel/tracing/events/syscalls/sys_enter_$s" ] && events="$events,syscalls:sys_enter_$s"
done

# bucket reads `perf report --sort sym` lines ("  12.3%  [k] tcp_sendmsg")
# and sums the percentages by what the function is.
bucket() {
  awk '
    /^#/ || NF < 3 { next }
    {
      pct = $1; sub("%", "", pct); sym = $3; for (i = 4; i <= NF; i++) sym = sym " " $i
      k = ($2 == "[k]")
      if (k && sym ~ /^(entry_SYSCALL|do_syscall|syscall_exit|syscall_return|__x64_sys_|x64_sys_call|ksys_|__fdget|fput|__fget|exit_to_user|syscall_enter|__audit|security_|rw_verify|fsnotify|__fsnotify)/) b = "kernel: syscall entry/exit, fd lookup"
      else if (k && sym ~ /epoll|ep_|__pm_|eventfd/) b = "kernel: epoll"
      else if (k && sym ~ /sched|schedule|switch|wake|enqueue|dequeue|pick_next|update_|ttwu|finish_task|idle|futex|hrtimer|clock|tick|irq|rcu|psi_|cpuacct|__cgroup|raw_spin|_raw_|native_|asm_|sysvec/) b = "kernel: scheduler, futex, timers, irq"
      else if (k) b = "kernel: TCP/IP and loopback, socket copy"
      else if (sym ~ /^(runtime\.|internal\/runtime|gogo|aeshash|memeqbody|indexbytebody|cmpbody)/ && sym !~ /^runtime\.(entersyscall|exitsyscall|reentersyscall)/) b = "Go runtime (scheduler, netpoll, GC)"
      else if (sym ~ /^(syscall\.|golang\.org\/x\/sys|internal\/poll|runtime\.(entersyscall|exitsyscall|reentersyscall))/) b = "Go syscall wrappers: entersyscall/exitsyscall"
      else if (sym ~ /^(uv_|uv__)/) b = "libuv"
      else if (sym ~ /^(__libc|__GI|__write|__read|write|read|epoll_wait|__epoll|_dl|__memcpy|__memmove|memcpy|memmove|__memset)/ || $0 ~ /libc/) b = "libc"
      else b = "server code (its loop, callbacks, protocol)"
      sum[b] += pct
    }
    END { for (b in sum) printf "  %6.1f%%  %s\n", sum[b], b }' | sort -rn
}

# start_server starts server $1 pinned to CPU 0, with extra arguments, and
# sets srv_pid and addr.
start_server() {
  local name=$1 log=$tmp/$1.log
  shift
  : >"$log" # empty it here: the last run's line must not be read as this one's
  taskset -c 0 "$tmp/$name" --port 0 "$@" 2>"$log" &
  srv_pid=$!
  addr=
  for _ in $(seq 100); do
    addr=$(grep -o 'msg=listening addr=[^ ]*' "$log" | head -1 | cut -d= -f3) || true
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "$name did not start" >&2; cat "$log" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$srv_pid"
  wait "$srv_pid" || true
  srv_pid=
}

# bench_beside runs client bench (1 s warm-up, 3 s measured) against addr
# at depth $1 and, 1.25 s in, the command after it on the client's core,
# so that it watches 2 s inside the measured window.
bench_beside() {
  local depth=$1
  shift
  taskset -c 1 "$tmp/client" bench --json --conns 100 --size 64 --pipeline "$depth" \
    --warmup 1s --duration 3s --pid "$srv_pid" "${addr%:*}" "${addr##*:}" >"$tmp/out.json" &
  bench_pid=$!
  sleep 1.25
  taskset -c 1 "$@"
  wait "$bench_pid"
  bench_pid=
}

for depth in $depths; do
  for name in $servers; do
    # Run 1: count syscalls, and take the rate from the same window.
    start_server "$name"
    bench_beside "$depth" perf stat -x, -e "$events" -p "$srv_pid" -o "$tmp/stat.csv" -- sleep 2
    stop_server
    rate=$(jq '.msgs_per_s' "$tmp/out.json")
    echo
    echo "== $name, $depth in flight: $(jq -r '"\(.msgs_per_s | floor) msgs/s, server \(((.server_cpu_per_msg_s // 0) * 1e6 * 1000 | floor) / 1000) µs/msg with perf stat counting"' "$tmp/out.json")"
    echo "syscalls per message (2 s of tracepoint counts ÷ the messages answered in 2 s):"
    awk -F, -v rate="$rate" '
      /^[0-9]/ { ev = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", ev); if (ev == "") ev = "all"; n[ev] = $1; order[++k] = ev }
      END { for (i = 1; i <= k; i++) if (n[order[i]] > 0) printf "  %-12s %8.3f\n", order[i], n[order[i]] / (rate * 2) }' "$tmp/stat.csv"

    # Run 2: sample where the CPU goes (perf record, kernel and user).
    args=()
    [ "$name" = step7 ] && args=(--cpuprofile "$tmp/step7-$depth.pprof")
    start_server "$name" "${args[@]}"
    bench_beside "$depth" perf record -q -F 1999 -p "$srv_pid" -o "$tmp/perf.data" -- sleep 2 2>/dev/null
    stop_server
    echo "server CPU by bucket (perf record, 2 s, $(jq -r '.msgs_per_s | floor' "$tmp/out.json") msgs/s while sampled):"
    perf report -i "$tmp/perf.data" --no-children --sort sym --stdio 2>/dev/null | bucket
    # Level-triggered epoll looks at every fd it reported once more on
    # the next wait (ep_send_events polls the socket, sock_poll and
    # tcp_poll answer): the part an edge-triggered loop would save.
    perf report -i "$tmp/perf.data" --no-children --sort sym --stdio 2>/dev/null |
      awk '$3 == "ep_send_events" || $3 == "sock_poll" || $3 == "tcp_poll" { p = $1; sub("%", "", p); t += p }
        END { printf "  epoll looking at ready sockets (ep_send_events, sock_poll, tcp_poll): %.2f%%\n", t }'
    echo "top functions:"
    perf report -i "$tmp/perf.data" --no-children --sort sym --stdio 2>/dev/null | awk '!/^#/ && NF >= 3 && ++n <= 12'
    if [ "$name" = step7 ]; then
      echo "Go CPU profile of step 7 (its whole run, go tool pprof -top):"
      go tool pprof -top -nodecount=18 "$tmp/step7" "$tmp/step7-$depth.pprof" 2>/dev/null | sed -n '5,26p' | sed 's/^/  /'
    fi
  done
done

echo
echo "== the floor (floor.c, pinned to CPU 0), three runs:"
for _ in 1 2 3; do taskset -c 0 "$tmp/floor"; done
echo
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
