#!/bin/bash
# A prefork group of three step 6 processes: start, serve six classic sessions, SIGTERM the parent.
set -eu
bin=$(mktemp -d); trap 'rm -rf "$bin"' EXIT
go build -o "$bin/step6" ./step6_epoll; go build -o "$bin/client" ./client
log=$(mktemp)
"$bin/step6" --procs 3 --port 0 2>"$log" & pid=$!
until grep -q 'msg=listening' "$log"; do sleep 0.1; done
port=$(grep -o 'addr=[^ ]*' "$log" | head -1 | cut -d: -f2)
echo "\$ go run ./step6_epoll --procs 3 --port 0 &"
echo "\$ go run ./client -q -n 6 --scale 0.1 127.0.0.1 $port"
"$bin/client" -q -n 6 --scale 0.1 127.0.0.1 $port
echo "\$ kill \$!   # SIGTERM to the parent"
kill $pid; wait $pid; echo "exit status $?"
echo "# the server's log:"
sed 's/^time=[^ ]* //' "$log"
rm -f "$log"
