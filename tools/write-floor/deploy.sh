#!/bin/bash
# The standing deployment of docs/performance.md, "The floor: what one more gRPC hop costs
# here": a meta cell, one data cell c1, one proxy p1 (as `loadtest --deploy` starts them)
# and two `warren loadtest forward`s in front of c1 (1 and 4 upstream connections).
# usage: deploy.sh BIN DIR BASEPORT   (FWDBIN=... to take the forwarder from another binary)
# ports: meta P, c1 P+1, p1 P+2, forwarders P+3 (1 conn) and P+4 (4 conns); admins P+10..P+12.
# Each member's pid is in DIR/NAME.pid; stop.sh DIR stops them. measure.sh's admin ports
# (17411, 17412) assume P = 17400. Isolate with: chrt -a -f -p 10 $(cat DIR/NAME.pid)
set -e
BIN=$1; D=$2; P=$3
rm -rf $D; mkdir -p $D/logs
$BIN cell --name meta --listen 127.0.0.1:$P --admin 127.0.0.1:$((P+10)) --data $D/meta > $D/logs/meta.log 2>&1 & echo $! > $D/meta.pid
sleep 1.5
$BIN ctl deployment init --meta 127.0.0.1:$P --cell c1=127.0.0.1:$((P+1)) >/dev/null
$BIN cell --name c1 --listen 127.0.0.1:$((P+1)) --admin 127.0.0.1:$((P+11)) --data $D/c1 --meta 127.0.0.1:$P > $D/logs/c1.log 2>&1 & echo $! > $D/c1.pid
sleep 1.5
$BIN proxy --listen 127.0.0.1:$((P+2)) --admin 127.0.0.1:$((P+12)) --meta 127.0.0.1:$P --id p1 > $D/logs/p1.log 2>&1 & echo $! > $D/p1.pid
FB=${FWDBIN:-$BIN}
$FB loadtest forward --listen 127.0.0.1:$((P+3)) --upstream 127.0.0.1:$((P+1)) --channels 1 > $D/logs/f1.log 2>&1 & echo $! > $D/f1.pid
$FB loadtest forward --listen 127.0.0.1:$((P+4)) --upstream 127.0.0.1:$((P+1)) --channels 4 > $D/logs/f4.log 2>&1 & echo $! > $D/f4.pid
sleep 2
echo up
