#!/bin/bash
# usage: measure.sh DIR LOADGEN_BIN TARGET LABEL [DURATION_S]
# Runs the write load against TARGET for DURATION (default 20 s); from 5 s into it,
# for 10 s, perf stat (task-clock, context switches) of c1, p1, the forwarders named in FWDS
# (default "f1 f4") and the load generator; RT=1 runs the generator under SCHED_FIFO.
# Prints p50/p90/p99, the cell's and proxy's SetContents handler means, CPU µs and context
# switches per write of each process.
FWDS=${FWDS:-f1 f4}
D=$1; LG=$2; T=$3; L=$4; DUR=${5:-20}
OUT=$D/out-$L-$(date +%H%M%S)
mkdir -p $OUT
${RT:+chrt -f 10} $LG loadtest run --target $T --sessions 64 --read-rate 0 --write-rate 1000 --duration ${DUR}s --json $OUT/r.json > $OUT/run.txt 2>&1 &
LGPID=$!
sleep 6
scrape() { for a in 17411 17412; do curl -s 127.0.0.1:$a/metrics | grep -E 'warren_rpc_duration_seconds_(sum|count)\{.*SetContents' | awk '{print $2}' | tr '\n' ' '; done; }
S0=$(scrape)
for n in c1 p1 $FWDS; do
  perf stat -x, -e task-clock,context-switches -p $(cat $D/$n.pid) -o $OUT/$n.perf -- sleep 10 &
done
perf stat -x, -e task-clock,context-switches -p $LGPID -o $OUT/lg.perf -- sleep 10 &
wait
S1=$(scrape)
ops=$(grep -E "^write" $OUT/run.txt | awk '{print $4}')
line=$(grep -E "^write" $OUT/run.txt | awk '{printf "p50 %s p90 %s p99 %s", $5,$6,$7}')
printf "%-10s %s ops/s %s load %s |" "$L" "$ops" "$line" "$(cut -d' ' -f1 /proc/loadavg)"
awk -v a="$S0" -v b="$S1" 'BEGIN{split(a,x," ");split(b,y," "); dc=y[2]-x[2]; dp=y[4]-x[4]; if (dc>0) printf " cellh %.3fms", (y[1]-x[1])*1000/dc; if (dp>0) printf " proxyh %.3fms", (y[3]-x[3])*1000/dp}'
for n in c1 p1 $FWDS lg; do
  tc=$(grep task-clock $OUT/$n.perf | cut -d, -f1); cs=$(grep context-switches $OUT/$n.perf | cut -d, -f1)
  awk -v n=$n -v tc=$tc -v cs=$cs -v ops=$ops 'BEGIN{ if (ops>0) printf " %s %.1fus %.2fcs", n, tc*1000/(ops*10), cs/(ops*10)}'
done
echo
