# Median idle and held VmRSS per step and N from docs/results/hold-*.txt,
# and the difference per held connection.
function med(a, n,   i, j, t) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
  return a[int((n + 1) / 2)]
}
/ idle threads=/ || / held\(established=/ {
  step = $1; n = $2; sub(/n=/, "", n)
  rss = $0; sub(/.*rss_kib=/, "", rss); sub(/ .*/, "", rss)
  est = $0; sub(/.*established=/, "", est); sub(/\).*/, "", est)
  key = step " " n
  # A run counts only when all N connections were established.
  if ($0 ~ / idle /) pending[key] = rss
  else if (est == n) { ni[key]++; idle[key, ni[key]] = pending[key]; nh[key]++; held[key, nh[key]] = rss }
  if (!(key in seen)) { seen[key] = 1; order[++k] = key }
}
END {
  printf "%-32s %6s %10s %10s %8s\n", "step", "N", "idle KiB", "held KiB", "KiB/conn"
  for (i = 1; i <= k; i++) {
    key = order[i]; split(key, p, " ")
    if (!nh[key]) continue
    for (j = 1; j <= ni[key]; j++) a[j] = idle[key, j]; mi = med(a, ni[key])
    for (j = 1; j <= nh[key]; j++) b[j] = held[key, j]; mh = med(b, nh[key])
    printf "%-32s %6d %10d %10d %8.1f\n", p[1], p[2], mi, mh, (mh - mi) / p[2]
  }
}
