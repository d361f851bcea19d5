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
# Then a markdown table: the proxy's and the echo server's CPU per read, their ratio, and
# the load generator's CPU per read (on the echo server: it has the least to wait for).
#
# usage: tools/reads-bench.sh [--bin WARREN] [--echo-bin WARREN] [--rates 10000,2500]
#                             [--duration 20s] [--out DIR]
#   --bin       the warren binary of the proxy, the cell and the load generator
#               (default target/release/warren)
#   --echo-bin  the warren binary of the echo server (default: --bin); a build older than
#               the echo server measures with a newer one's
set -euo pipefail

BIN=target/release/warren
ECHO_BIN=
RATES=10000,2500
DURATION=20s
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --echo-bin) ECHO_BIN=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
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

echo_pid=
cleanup() { [ -n "$echo_pid" ] && kill "$echo_pid" 2>/dev/null || true; }
trap cleanup EXIT

for rate in ${RATES//,/ }; do
    # 1. the echo server.
    pidfile=$OUT/loadgen-echo-$rate.pid
    rm -f "$pidfile"
    "$ECHO_BIN" loadtest echo --listen 127.0.0.1:0 --watch-pid-file "$pidfile" \
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
    "$BIN" loadtest run --target "proxies=$addr" "${WORKLOAD[@]}" --read-rate "$rate" \
        --json "$OUT/echo-run-$rate.json" >"$OUT/echo-run-$rate.out" 2>&1 &
    lg=$!
    echo $lg >"$pidfile"
    wait $lg || echo "reads-bench: the run against the echo server exited with $? (see $OUT/echo-run-$rate.out)" >&2
    # The echo server prints its span once reads have stopped for 3 s.
    for _ in $(seq 100); do
        [ -s "$OUT/echo-$rate.jsonl" ] && break
        sleep 0.1
    done
    kill "$echo_pid"; wait "$echo_pid" 2>/dev/null || true; echo_pid=
    # 2. the proxy.
    echo "rate $rate: through one proxy" >&2
    "$BIN" loadtest run --deploy dev:cells=1,proxies=1 "${WORKLOAD[@]}" --read-rate "$rate" \
        --json "$OUT/proxy-run-$rate.json" >"$OUT/proxy-run-$rate.out" 2>&1 ||
        echo "reads-bench: the run through the proxy exited with $? (see $OUT/proxy-run-$rate.out)" >&2
done

python3 - "$OUT" "$RATES" <<'EOF'
import json, sys
out, rates = sys.argv[1], sys.argv[2].split(",")
print(f"results in {out}\n")
print("| asked reads/s | proxy: served/s | proxy CPU µs/read | echo: served/s | echo CPU µs/read "
      "| proxy ÷ echo | load generator CPU µs/read (on echo) | (on the proxy) | p99 ms proxy / echo |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for rate in rates:
    e = json.load(open(f"{out}/echo-run-{rate}.json"))
    p = json.load(open(f"{out}/proxy-run-{rate}.json"))
    span = json.loads(open(f"{out}/echo-{rate}.jsonl").read().splitlines()[-1])
    p1 = next(x for x in p["processes"] if x["member"] == "p1")
    reads = p["ops"]["read"]["count"]
    proxy_us = p1["cpu_s"] * 1e6 / reads
    echo_us = span["echo_us_per_read"]
    lg = span.get("watched_us_per_read")
    g = p.get("load_generator")
    lg_proxy = g["cpu_s"] * 1e6 / reads if g and g.get("cpu_s") is not None else None
    f = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"| {rate} | {p['ops']['read']['throughput_per_s']:.0f} | {proxy_us:.1f} "
          f"| {e['ops']['read']['throughput_per_s']:.0f} | {echo_us:.1f} | {proxy_us / echo_us:.2f} "
          f"| {f(lg)} | {f(lg_proxy)} | {p['ops']['read']['p99_ms']:.1f} / {e['ops']['read']['p99_ms']:.1f} |")
EOF
