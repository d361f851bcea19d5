#!/usr/bin/env bash
# CPU per cached read: one Warren proxy against a bare tonic server of the same protocol,
# driven by the same load generator, at each rate (docs/performance.md, "Cached reads: CPU
# per read against a bare tonic server").
#
# For each rate, one after the other:
#   1. `warren loadtest echo` (loadtest/src/echo.rs), a bare tonic server that answers every
#      GetContentsAndStat with the same empty file, and `warren loadtest run` against it. The
#      echo server reads its own CPU and the load generator's from /proc over the span of
#      its reads (first to last GetContentsAndStat).
#   2. `warren loadtest run --deploy dev:cells=1,proxies=1`, the same workload through one
#      proxy; the proxy's CPU over the measured window comes from the report (`processes`).
# Before the rates, the same two runs with no reads at all (`--read-rate 0`): what the
# 200 sessions' KeepAlives and each server's own upkeep cost per second, the idle CPU.
# Then a markdown table: the proxy's and the echo server's CPU per read, their ratio, the
# same net of the idle CPU over the span, and the load generator's CPU per read (on the
# echo server: it has the least to wait for).
#
# usage: tools/reads-bench.sh [--bin WARREN] [--echo-bin WARREN] [--rates 10000,2500]
#                             [--duration 20s] [--out DIR] [--threads N] [--lg-threads N]
#   --bin       the warren binary of the proxy, the cell and the load generator
#               (default target/release/warren)
#   --echo-bin  the warren binary of the echo server (default: --bin); a build older than
#               the echo server measures with a newer one's
#   --threads   worker threads of the proxy (WARREN_THREADS) and of the echo server and the
#               load generator (`warren loadtest --threads`); default: each build's default.
#               Builds older than these settings ignore the variable and refuse the flag.
#   --lg-threads  worker threads of the load generator alone (`warren loadtest --threads`),
#               after --threads; one is its cheapest on a 2-core host (docs/performance.md)
set -euo pipefail

BIN=target/release/warren
ECHO_BIN=
RATES=10000,2500
DURATION=20s
OUT=
THREADS=
LG_THREADS=
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --echo-bin) ECHO_BIN=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --lg-threads) LG_THREADS=$2; shift 2 ;;
        *) echo "reads-bench: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done
ECHO_BIN=${ECHO_BIN:-$BIN}
OUT=${OUT:-$(mktemp -d /tmp/reads-bench.XXXXXX)}
mkdir -p "$OUT"
for b in "$BIN" "$ECHO_BIN"; do
    [ -x "$b" ] || { echo "reads-bench: $b is not an executable (build it: cargo build --release)" >&2; exit 2; }
done
# 200 clients, 10 hot files, read-only: after a client's first Open of a file every read is
# a GetContentsAndStat the proxy answers from its cache.
WORKLOAD=(--sessions 200 --connections 16 --ramp 2s --duration "$DURATION" --write-rate 0 --files 10)

LT=()
if [ -n "$THREADS" ]; then
    LT=(--threads "$THREADS")
    export WARREN_THREADS=$THREADS
fi
# The load generator's own (the echo server keeps LT's).
GEN=("${LT[@]}")
[ -n "$LG_THREADS" ] && GEN=(--threads "$LG_THREADS")
# utime + stime of a process, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo_pid=
cleanup() { [ -n "$echo_pid" ] && kill "$echo_pid" 2>/dev/null || true; }
trap cleanup EXIT

for rate in 0 ${RATES//,/ }; do
    # The machine's 1-minute load average as each rate starts (it is shared: see the table).
    cut -d' ' -f1 /proc/loadavg >"$OUT/loadavg-$rate"
    # 1. the echo server.
    pidfile=$OUT/loadgen-echo-$rate.pid
    rm -f "$pidfile"
    # Created before the server starts, so that the wait below never reads a missing file.
    : >"$OUT/echo-$rate.err"
    "$ECHO_BIN" loadtest "${LT[@]}" echo --listen 127.0.0.1:0 --watch-pid-file "$pidfile" \
        >"$OUT/echo-$rate.jsonl" 2>"$OUT/echo-$rate.err" &
    echo_pid=$!
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^echo: serving on //p' "$OUT/echo-$rate.err")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "reads-bench: the echo server did not start: $(cat "$OUT/echo-$rate.err")" >&2; exit 1; }
    echo "rate $rate: against the echo server at $addr" >&2
    "$BIN" loadtest "${GEN[@]}" run --target "proxies=$addr" "${WORKLOAD[@]}" --read-rate "$rate" \
        --json "$OUT/echo-run-$rate.json" >"$OUT/echo-run-$rate.out" 2>&1 &
    lg=$!
    echo $lg >"$pidfile"
    if [ "$rate" = 0 ]; then
        # No reads, so no span from the echo server: its CPU from /proc over the middle of
        # the window (from a second after the 2 s ramp, for the window less 2 s).
        secs=${DURATION%s}
        sleep 3
        t0=$(ticks "$echo_pid"); s0=$(date +%s.%N)
        sleep $((secs - 2))
        t1=$(ticks "$echo_pid"); s1=$(date +%s.%N)
        python3 -c "import json,sys; print(json.dumps({'echo_idle_ticks': $t1 - $t0, 'secs': $s1 - $s0, 'hz': $(getconf CLK_TCK)}))" \
            >"$OUT/echo-idle.json"
    fi
    wait $lg || echo "reads-bench: the run against the echo server exited with $? (see $OUT/echo-run-$rate.out)" >&2
    # The echo server prints its span once reads have stopped for 3 s.
    for _ in $(seq 100); do
        { [ "$rate" = 0 ] || [ -s "$OUT/echo-$rate.jsonl" ]; } && break
        sleep 0.1
    done
    kill "$echo_pid"; wait "$echo_pid" 2>/dev/null || true; echo_pid=
    # 2. the proxy.
    echo "rate $rate: through one proxy" >&2
    "$BIN" loadtest "${GEN[@]}" run --deploy dev:cells=1,proxies=1 "${WORKLOAD[@]}" --read-rate "$rate" \
        --json "$OUT/proxy-run-$rate.json" >"$OUT/proxy-run-$rate.out" 2>&1 ||
        echo "reads-bench: the run through the proxy exited with $? (see $OUT/proxy-run-$rate.out)" >&2
done

python3 - "$OUT" "$RATES" <<'EOF'
import json, sys
out, rates = sys.argv[1], sys.argv[2].split(",")
print(f"results in {out}\n")
idle_e = json.load(open(f"{out}/echo-idle.json"))
echo_idle = idle_e["echo_idle_ticks"] / idle_e["hz"] / idle_e["secs"]
p0 = json.load(open(f"{out}/proxy-run-0.json"))
i1 = next(x for x in p0["processes"] if x["member"] == "p1")
proxy_idle = i1["cpu_s"] / i1["window_s"]
print(f"idle CPU, 200 sessions and no reads: proxy {proxy_idle * 100:.2f} % of a core, "
      f"echo server {echo_idle * 100:.2f} %")
loads = [open(f"{out}/loadavg-{r}").read().strip() for r in ["0"] + rates]
print(f"load average (1 min) as each rate began (idle, {', '.join(rates)}): {' / '.join(loads)}\n")
print("| asked reads/s | proxy: served/s | proxy CPU µs/read | echo: served/s | echo CPU µs/read "
      "| proxy ÷ echo | net of idle: proxy / echo µs/read | load generator CPU µs/read (on echo) "
      "| (on the proxy) | p99 ms proxy / echo |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for rate in rates:
    e = json.load(open(f"{out}/echo-run-{rate}.json"))
    p = json.load(open(f"{out}/proxy-run-{rate}.json"))
    span = json.loads(open(f"{out}/echo-{rate}.jsonl").read().splitlines()[-1])
    p1 = next(x for x in p["processes"] if x["member"] == "p1")
    reads = p["ops"]["read"]["count"]
    proxy_us = p1["cpu_s"] * 1e6 / reads
    proxy_net = (p1["cpu_s"] - proxy_idle * p1["window_s"]) * 1e6 / reads
    echo_us = span["echo_us_per_read"]
    echo_net = (span["echo_cpu_s"] - echo_idle * span["secs"]) * 1e6 / span["reads"]
    lg = span.get("watched_us_per_read")
    g = p.get("load_generator")
    lg_proxy = g["cpu_s"] * 1e6 / reads if g and g.get("cpu_s") is not None else None
    f = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"| {rate} | {p['ops']['read']['throughput_per_s']:.0f} | {proxy_us:.1f} "
          f"| {e['ops']['read']['throughput_per_s']:.0f} | {echo_us:.1f} | {proxy_us / echo_us:.2f} "
          f"| {proxy_net:.1f} / {echo_net:.1f} "
          f"| {f(lg)} | {f(lg_proxy)} | {p['ops']['read']['p99_ms']:.1f} / {e['ops']['read']['p99_ms']:.1f} |")
EOF
