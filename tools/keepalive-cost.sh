#!/bin/bash
# CPU per client KeepAlive at the proxy and in the load generator, from /proc: idle
# sessions through one proxy (`warren loadtest run --deploy dev:cells=1,proxies=1`,
# 12 s ramp); from 27 s after the start, 20 s of the proxy's and the load generator's
# utime+stime divided by the growth of the proxy's warren_rpc_total{method="KeepAlive"}.
# docs/performance.md, "Memory per session at the proxy, and 150k sessions".
#
# usage: tools/keepalive-cost.sh BIN SESSIONS OUT   (appends one line to OUT; the run's
#        report goes to OUT.run)
set -euo pipefail
BIN=$1; N=$2; OUT=$3
"$BIN" loadtest run --deploy dev:cells=1,proxies=1 --sessions "$N" --connections 32 \
    --ramp 12s --duration 45s --read-rate 0 --write-rate 0 > "$OUT.run" 2>&1 &
LT=$!
P=
for _ in $(seq 1 60); do
    P=$(pgrep -P "$LT" -f " proxy " || true)
    [ -n "$P" ] && break
    sleep 0.5
done
[ -n "$P" ] || { echo "no proxy started; see $OUT.run" >&2; exit 1; }
ADMIN=$(tr '\0' ' ' < "/proc/$P/cmdline" | sed 's/.*--admin \([^ ]*\).*/\1/')
sleep 27
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
ka() { curl -s "http://$ADMIN/metrics" | awk '/^warren_rpc_total.*method="KeepAlive"/ {s+=$2} END {print s}'; }
p0=$(cpu "$P"); l0=$(cpu "$LT"); k0=$(ka); t0=$(date +%s.%N)
sleep 20
p1=$(cpu "$P"); l1=$(cpu "$LT"); k1=$(ka); t1=$(date +%s.%N)
wait "$LT"
TCK=$(getconf CLK_TCK)
KA=$((k1 - k0))
echo "$(uptime | sed 's/.*load/load/') bin=$(basename "$BIN") sessions=$N KA=$KA over $(echo "$t1-$t0" | bc) s;" \
    "proxy CPU $(echo "scale=1; ($p1-$p0)*1000000/$TCK/$KA" | bc) us/KA" \
    "($(echo "scale=1; ($p1-$p0)*100/$TCK/($t1-$t0)" | bc)% core);" \
    "loadgen $(echo "scale=1; ($l1-$l0)*1000000/$TCK/$KA" | bc) us/KA;" \
    "$(grep -o 'jeopardy [0-9]* ([^)]*)' "$OUT.run")" | tee -a "$OUT"
