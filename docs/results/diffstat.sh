#!/usr/bin/env bash
# diffstat.sh: for every pair of neighbouring steps, how many lines of the
# earlier step's server.go the later one keeps, and how many it changes
# (removed + added), as `diff` counts them. Run from the repository root.
set -euo pipefail
steps=(step1_sequential step2_thread_per_conn step3_blocking step4_nonblocking_poll step5_select step6_epoll)
row() { # a b
  local del add kept
  del=$(diff "$1/server.go" "$2/server.go" | grep -c '^<' || true)
  add=$(diff "$1/server.go" "$2/server.go" | grep -c '^>' || true)
  kept=$(($(wc -l <"$1/server.go") - del))
  printf '| %s → %s | %d | %d | %s | %s |\n' "$1" "$2" "$kept" "$((del + add))" "$del/$add" \
    "$([ "$kept" -gt "$((del + add))" ] && echo yes || echo no)"
}
echo "| pair (server.go) | kept | changed | removed/added | kept > changed |"
echo "| --- | ---: | ---: | ---: | --- |"
for i in $(seq 0 $((${#steps[@]} - 2))); do row "${steps[i]}" "${steps[i+1]}"; done
row step1_sequential step3_blocking
