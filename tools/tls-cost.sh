#!/usr/bin/env bash
# The cost of mutual TLS at one proxy, plaintext against TLS in one session on one machine
# (docs/performance.md, "The cost of TLS"). Every run launches its own deployment
# (`--deploy dev:cells=1,proxies=1` or `…,tls=on`); the two modes alternate, ROUNDS times:
#   1. cached reads: 200 sessions, 10 hot files, read-only, at each of RATES reads/s asked:
#      reads served per second, p99, and the proxy's CPU per read over the window (the
#      report's `processes`, from /proc);
#   2. idle sessions: `proxy_bench --sessions-steps 1000,20000` (with `--tls` for TLS): the
#      proxy's CPU per client KeepAlive at 20k sessions and its memory per idle session
#      (RSS growth from 1k to 20k sessions ÷ 19k).
# Then one markdown table per part, a row per run.
#
# usage: tools/tls-cost.sh [--bin target/release/warren] [--rates 10000,20000]
#                          [--rounds 2] [--duration 20s] [--out DIR]
#   build first: cargo build --release --bin warren --example proxy_bench
set -euo pipefail
BIN=target/release/warren
RATES=10000,20000
ROUNDS=2
DURATION=20s
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "tls-cost: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$(mktemp -d /tmp/tls-cost.XXXXXX)}
mkdir -p "$OUT"
BENCH=$(dirname "$BIN")/examples/proxy_bench
for b in "$BIN" "$BENCH"; do
    [ -x "$b" ] || { echo "tls-cost: $b is not an executable (cargo build --release --bin warren --example proxy_bench)" >&2; exit 2; }
done
WORKLOAD=(--sessions 200 --connections 16 --ramp 2s --duration "$DURATION" --write-rate 0 --files 10)
mode_spec() { if [ "$1" = tls ]; then echo "dev:cells=1,proxies=1,tls=on"; else echo "dev:cells=1,proxies=1"; fi; }

for round in $(seq "$ROUNDS"); do
    for rate in ${RATES//,/ }; do
        for mode in plain tls; do
            echo "round $round, $rate reads/s asked, $mode" >&2
            cut -d' ' -f1 /proc/loadavg >"$OUT/reads-$round-$rate-$mode.load"
            "$BIN" loadtest run --deploy "$(mode_spec $mode)" "${WORKLOAD[@]}" --read-rate "$rate" \
                --json "$OUT/reads-$round-$rate-$mode.json" >"$OUT/reads-$round-$rate-$mode.out" 2>&1 ||
                echo "tls-cost: the run exited with $? (see $OUT/reads-$round-$rate-$mode.out)" >&2
        done
    done
    for mode in plain tls; do
        echo "round $round, 1k and 20k idle sessions, $mode" >&2
        flag=(); [ "$mode" = tls ] && flag=(--tls)
        cut -d' ' -f1 /proc/loadavg >"$OUT/idle-$round-$mode.load"
        "$BENCH" --bin "$BIN" --sessions-steps 1000,20000 "${flag[@]}" \
            >"$OUT/idle-$round-$mode.md" 2>"$OUT/idle-$round-$mode.err" ||
            echo "tls-cost: proxy_bench exited with $? (see $OUT/idle-$round-$mode.err)" >&2
    done
done

python3 - "$OUT" "$RATES" "$ROUNDS" <<'PY'
import json, re, sys
out, rates, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
print(f"results in {out}\n")
print("| round | asked reads/s | mode | load avg | served reads/s | p50 ms | p99 ms | proxy CPU % of a core | proxy CPU µs/read | errors |")
print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for r in range(1, rounds + 1):
    for rate in rates:
        for mode in ["plain", "tls"]:
            base = f"{out}/reads-{r}-{rate}-{mode}"
            try:
                j = json.load(open(base + ".json"))
            except Exception as e:
                print(f"| {r} | {rate} | {mode} | - | (no report: {e}) |||||")
                continue
            p1 = next(x for x in j["processes"] if x["member"] == "p1")
            rd = j["ops"]["read"]
            us = p1["cpu_s"] * 1e6 / rd["count"] if rd["count"] else float("nan")
            load = open(base + ".load").read().strip()
            print(f"| {r} | {rate} | {mode} | {load} | {rd['throughput_per_s']:.0f} | {rd['p50_ms']:.2f} "
                  f"| {rd['p99_ms']:.2f} | {p1['cpu_s'] / p1['window_s'] * 100:.1f} | {us:.1f} | {j['errors']} |")
print()
print("| round | mode | load avg | proxy RSS MiB at 1k / 20k | memory per idle session | proxy CPU µs per client KeepAlive at 20k | jeopardy at 20k |")
print("|---:|---|---:|---:|---:|---:|---:|")
for r in range(1, rounds + 1):
    for mode in ["plain", "tls"]:
        base = f"{out}/idle-{r}-{mode}"
        text = open(base + ".md").read()
        rows = [l.split("|")[1:-1] for l in text.splitlines() if re.match(r"^\| \d", l)]
        rows = {int(c[0]): [x.strip() for x in c] for c in rows}
        per = re.search(r"memory per idle session at the proxy: ([0-9.]+) KiB", text)
        a, b = rows.get(1000), rows.get(20000)
        load = open(base + ".load").read().strip()
        if not (a and b):
            print(f"| {r} | {mode} | {load} | (missing rows; see {base}.err) |||")
            continue
        print(f"| {r} | {mode} | {load} | {a[4]} / {b[4]} | {per.group(1) if per else '-'} KiB | {b[6]} | {b[8]} |")
PY
