#!/usr/bin/env bash
# Runs Warren's cargo-afl fuzz targets (crate fuzz/, docs/fuzzing.md).
#
#   tools/fuzz.sh TARGET DURATION   one target, e.g. `tools/fuzz.sh cell_requests 30` (minutes)
#   tools/fuzz.sh all DURATION      every target in turn, one at a time (CI: `all 20s`)
#   tools/fuzz.sh cmin TARGET       minimise TARGET's corpus together with its last run's queue
#                                   (afl-cmin's rule, tools/fuzz_cmin.py) and write it back
#
# DURATION is minutes, or seconds with an `s` suffix. Each run starts from the committed
# corpus (fuzz/corpus/TARGET), writes AFL++'s output under $FUZZ_OUT (default
# target/fuzz-out), prints one line of figures (the table row of docs/fuzzing.md), and
# fails if AFL++ saved any crash or hang: reproduce one with
# `cargo run -p warren-fuzz --bin TARGET -- FILE`. Needs cargo-afl (`cargo install
# cargo-afl`, which builds the AFL++ it bundles). Builds go to $CARGO_TARGET_DIR/afl (or
# target/afl): cargo afl's instrumented RUSTFLAGS must not share the normal build's dir.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -eq 2 ] || usage

targets=(cell_requests proxy_requests router partition_map config store_records)
base_target_dir=${CARGO_TARGET_DIR:-target}
export CARGO_TARGET_DIR=$base_target_dir/afl
out_root=${FUZZ_OUT:-target/fuzz-out}
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# Other work shares this machine's cores: do not insist on one to ourselves.
export AFL_NO_AFFINITY=1

if ! cargo afl --version >/dev/null 2>&1; then
  echo "cargo-afl is missing: cargo install cargo-afl (docs/fuzzing.md)" >&2
  exit 1
fi

# With an explicit --target, cargo afl's RUSTFLAGS (instrumentation, -C opt-level,
# codegen-units=1) reach only the crates linked into the targets, not build scripts and
# proc macros, which then build as usual: much less to compile at -C codegen-units=1.
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$CARGO_TARGET_DIR/$host/debug
# Optimisation of the instrumented build (cargo-afl's default is 3): 1 builds the ~230
# crates in well under half the time, and the targets still run thousands of inputs a
# second (the figures in docs/fuzzing.md are at 1).
export AFL_OPT_LEVEL=${AFL_OPT_LEVEL:-1}

build() {
  local bins=()
  for t in "$@"; do bins+=(--bin "$t"); done
  cargo afl build --locked -q -p warren-fuzz --target "$host" "${bins[@]}"
}

seconds_of() {
  case $1 in
    *s) echo "${1%s}" ;;
    *) echo $(( $1 * 60 )) ;;
  esac
}

# The value of `key` in an AFL++ fuzzer_stats file.
stat() { sed -n "s/^$1 *: *//p" "$2"; }

run_one() {
  local target=$1 secs=$2
  local out=$out_root/$target
  rm -rf "$out"
  mkdir -p "$out"
  # -t: a run over 1 s is a hang (a finding); -V: stop after this many seconds; -x: the
  # target's tokens (field names, prefixes: stable Rust gets no AFL++ compare plugins).
  local dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-x "fuzz/dict/$target.dict")
  cargo afl fuzz -i "fuzz/corpus/$target" -o "$out" -t 1000 -V "$secs" "${dict[@]}" \
    "$bin_dir/$target" >"$out/afl.log" 2>&1 || {
    echo "afl-fuzz failed for $target; the end of its log:" >&2
    tail -20 "$out/afl.log" >&2
    return 1
  }
  local s=$out/default/fuzzer_stats
  local execs rate edges total paths crashes hangs
  execs=$(stat execs_done "$s")
  rate=$(stat execs_per_sec "$s")
  edges=$(stat edges_found "$s")
  total=$(stat total_edges "$s")
  paths=$(stat corpus_count "$s")
  crashes=$(stat saved_crashes "$s")
  hangs=$(stat saved_hangs "$s")
  printf '| %s | %s | %s | %s | %s | %s/%s | %s | %s |\n' \
    "$target" "$(awk -v s="$secs" 'BEGIN { printf "%.1f", s / 60 }')" "$execs" "$rate" \
    "$paths" "$edges" "$total" "$crashes" "$hangs"
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    echo "$target: AFL++ saved $crashes crash(es) and $hangs hang(s) in $out/default/{crashes,hangs}" >&2
    ls "$out/default/crashes" "$out/default/hangs" >&2 || true
    return 1
  fi
}

case $1 in
  cmin)
    target=$2
    build "$target"
    # afl-cmin's rule, in tools/fuzz_cmin.py: AFL++'s afl-cmin.bash takes many minutes per
    # thousand inputs here, and its Python afl-cmin (what `cargo afl cmin` runs) recorded no
    # edges for these persistent-mode targets.
    afl_bin=$(ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-*/afl.rs-*/afl/bin | tail -1)
    python3 tools/fuzz_cmin.py "$afl_bin/afl-showmap" "$bin_dir/$target" \
      "fuzz/corpus/$target" "$out_root/$target/default/queue"
    ;;
  all)
    secs=$(seconds_of "$2")
    build "${targets[@]}"
    echo '| target | minutes | executions | execs/s | corpus | edges found | crashes | hangs |'
    failed=0
    for t in "${targets[@]}"; do run_one "$t" "$secs" || failed=1; done
    exit $failed
    ;;
  *)
    target=$1
    printf '%s\n' "${targets[@]}" | grep -qx "$target" || {
      echo "no target $target; the targets: ${targets[*]}" >&2
      exit 2
    }
    secs=$(seconds_of "$2")
    build "$target"
    echo '| target | minutes | executions | execs/s | corpus | edges found | crashes | hangs |'
    run_one "$target" "$secs"
    ;;
esac
