#!/usr/bin/env bash
# OS threads of a server before, at most during, and after a run of N
# clients: Threads: in /proc/PID/status, sampled every 100 ms (Linux).
#
#   docs/results/threads.sh PORT N SERVER [SERVER FLAGS...]
#   docs/results/threads.sh 9330 50 bin/step3_blocking --threads
#
# Run from the repository root after building bin/client and the server
# (chapter 3 shows the go build lines). CLIENT_FLAGS is passed to the
# client, e.g. CLIENT_FLAGS="--scale 0.5".
set -euo pipefail
port=$1 n=$2
shift 2
threads() { awk '/^Threads:/ {print $2}' /proc/$1/status; }
log=$(mktemp) out=$(mktemp)
trap 'rm -f "$log" "$out"' EXIT
"$@" --port "$port" 2> "$log" &
pid=$!
# Wait for the server's "listening" line rather than guessing a delay.
for _ in $(seq 100); do grep -q msg=listening "$log" && break; sleep 0.05; done
sleep 0.3
before=$(threads $pid)
# shellcheck disable=SC2086 # CLIENT_FLAGS is a list of flags
bin/client -q ${CLIENT_FLAGS:-} -n "$n" 127.0.0.1 "$port" > "$out" &
cpid=$!
peak=$before
while kill -0 $cpid 2> /dev/null; do
  t=$(threads $pid) && [ "$t" -gt "$peak" ] && peak=$t
  sleep 0.1
done
wait $cpid
sleep 0.5
after=$(threads $pid)
kill -INT $pid
wait $pid
label=$(basename "$1")
[ $# -gt 1 ] && label="$label ${*:2}"
echo "$label -n $n: threads before=$before peak=$peak after=$after $(tail -1 "$out")"
