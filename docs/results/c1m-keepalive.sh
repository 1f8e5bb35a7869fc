#!/bin/bash
# The keepalive wall at a scale that runs in two minutes: hold N
# connections with TCP keepalive probes every KA (or off), and read the
# kernel's keepalive and abort counters and the per-CPU backlog drops
# (second column of /proc/net/softnet_stat) before and after.
#
#   docs/results/c1m-keepalive.sh 1s 100000; docs/results/c1m-keepalive.sh 0 100000
set -eu
ka=$1; n=$2; np=$(( n/16000 + 1 ))
bin=$(mktemp -d)
go build -o "$bin/client" ./client
go build -o "$bin/step6" ./step6_epoll
ports=$(seq -s, 23001 $((23000+np)))
pids=()
for p in ${ports//,/ }; do "$bin/step6" --port "$p" --log-level warn & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$bin"' EXIT
sleep 1
snap() {
	nstat -saz TcpExtTCPKeepAlive TcpExtTCPAbortOnTimeout | grep -v '^#'
	cpu=0
	while read -r processed dropped _; do
		echo "softnet cpu$cpu processed $((16#$processed)) dropped $((16#$dropped))"
		cpu=$((cpu+1))
	done </proc/net/softnet_stat
}
echo "\$ client hold --conns $n --sources 4 --per-proc 15000 --hold 60s --keepalive $ka 127.0.0.1 $ports   # $np step6 servers"
echo "== before"; snap
"$bin/client" hold --conns "$n" --sources 4 --per-proc 15000 --hold 60s --keepalive "$ka" 127.0.0.1 "$ports" 2>&1 | tr '\r' '\n' | grep -v 'conns *$' || true
echo "== after"; snap
