#!/usr/bin/env bash
# usage: close.sh STEPDIR N   hold N connections, SIGKILL the client, and time
# how long the server takes to see them all go, and how much CPU it spends.
set -u
# Run from the repository root, with nothing else on 127.0.0.1:8080.
step=$1; n=$2
tck=$(getconf CLK_TCK)
cpu() { awk -v t=$tck '{printf "%d", ($14 + $15) * 1000 / t}' /proc/$1/stat; }  # utime+stime in ms
taskset -c 0 go run ./$step --port 8080 > /tmp/close-server.log 2>&1 &
gopid=$!
pid=
for i in $(seq 100); do pid=$(ss -ltnp 'sport = :8080' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2); [ -n "$pid" ] && break; sleep 0.1; done
taskset -c 1 go run ./client -q --scale 20 -n $n 127.0.0.1 8080 > /tmp/close-client.out 2>&1 &
cpid=$!
for i in $(seq 800); do est=$(ss -Htn state established '( sport = :8080 )' | wc -l); [ "$est" -ge "$n" ] && break; sleep 0.05; done
sleep 3
c0=$(cpu $pid); sleep 2; c1=$(cpu $pid)
echo "established=$est server cpu ms over 2 s of holding them idle: $((c1 - c0))"
bin=$(pgrep -P $cpid | head -1)
c0=$(cpu $pid); t0=$(date +%s%N)
kill -KILL $bin
for i in $(seq 2000); do fds=$(ls /proc/$pid/fd | wc -l); [ "$fds" -le 12 ] && break; sleep 0.01; done
t1=$(date +%s%N); c1=$(cpu $pid)
echo "after SIGKILL of the client: server fds=$fds after $(( (t1 - t0) / 1000000 )) ms, server cpu ms spent: $((c1 - c0))"
echo "time-wait to :8080 right after: $(ss -Htn state time-wait '( dport = :8080 )' | wc -l)  (sockstat: $(grep ^TCP: /proc/net/sockstat))"
wait $cpid 2>/dev/null
kill -INT $pid; wait $gopid; echo "server exit=$?"
