#!/usr/bin/env bash
# Run the fuzz targets (fuzz/fuzz_targets) with libFuzzer, one after another, each for a number
# of executions or seconds; keep what they find.
#
#   bash scripts/fuzz.sh [--runs N] [--time SECONDS] [--no-merge] [TARGET...]
#
# Default: every target, 1,000,000 executions each; with both --runs and --time, a target stops
# at whichever comes first. Each target starts from its checked-in corpus fuzz/corpus/<target>/
# (the seeds from scripts/fuzz-seeds.sh and what earlier runs kept); new inputs go to a scratch
# corpus under fuzz/target/, and at the end libFuzzer's -set_cover_merge=1 keeps a small set
# with the same coverage in fuzz/corpus/<target>/ (seed-* files always stay); `--runs 0` only
# re-minimises the checked-in corpora.
#
# A crash, a timeout (an input running over 1 s) or an out-of-memory (over 1 GiB RSS) fails the
# run, and its input is copied to fuzz/regressions/<target>/, where the replay test
# (tests/fuzz-entries, run by CI) keeps it: fix the parser, then commit the input with the fix.
# A results line per target (executions, coverage, time) goes to stdout and to
# fuzz/target/fuzz-results.tsv (FUZZING.md).
#
# The build is cargo-fuzz's (`cargo fuzz build -O -a -s none`): sancov instrumentation with
# libfuzzer-sys on a stable toolchain, release code with debug assertions and overflow checks.
# No sanitizer by default (the targets are safe Rust; AddressSanitizer halves the execution rate
# on a shared machine); FUZZ_SANITIZER=address adds it (nightly, or RUSTC_BOOTSTRAP=1 on stable,
# which this script sets). Runs at nice 10, one fuzzer process at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

runs=
time_limit=
merge=1
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --time) time_limit=$2; shift 2 ;;
    --no-merge) merge=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ -n $runs || -n $time_limit ]] || runs=1000000
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^mmp-fuzz$')
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
if [[ -n ${FUZZ_SANITIZER:-} ]]; then
  flags+=" -Zsanitizer=$FUZZ_SANITIZER"
  export RUSTC_BOOTSTRAP=1
fi
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
# --target: the flags must not reach build scripts and proc macros (as cargo-fuzz does it).
(cd fuzz && RUSTFLAGS="$flags" nice -n 10 cargo build --release --target "$triple" "${bins[@]}")
bindir=fuzz/target/$triple/release

work=fuzz/target/fuzz-work
results=fuzz/target/fuzz-results.tsv
mkdir -p "$work"
[[ -f $results ]] || printf 'date\ttarget\texecutions\tcov\tft\tcorpus\tseconds\texec/s\tresult\n' >"$results"
# A timeout input that runs well within the limit on its own was a stall of this shared machine
# (load), not of the target: it is set aside (fuzz/artifacts/<target>/unreproduced-*) and the
# fuzzer resumes, at most 5 times per target.
reproduces() {
  local bin=$1 input=$2
  nice -n 10 "$bin" -runs=3 -timeout=1 "$input" >/dev/null 2>&1 && return 1
  return 0
}
stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=()
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  scratch=$work/$t
  art=fuzz/artifacts/$t
  mkdir -p "$corpus" "$scratch" "$art"
  log=$work/$t.log
  : >"$log"
  start=$(date +%s)
  execs=0
  result=ok
  for attempt in 1 2 3 4 5 6; do
    limit=()
    [[ -n $runs ]] && limit+=(-runs=$(( runs - execs )))
    if [[ -n $time_limit ]]; then
      left=$(( time_limit - ($(date +%s) - start) ))
      # Out of time after a resumed stall: the stall was not the target's failure.
      [[ $left -gt 0 ]] || { rc=0; break; }
      limit+=(-max_total_time=$left)
    fi
    rc=0
    # The scratch corpus comes first: libFuzzer writes new inputs to the first directory only.
    # libFuzzer's timeout handler runs in a signal handler and can deadlock (seen once, on a
    # heavily loaded machine): with a time limit, a run that outlives it by 2 minutes is killed.
    guard=()
    [[ -n $time_limit ]] && guard=(timeout -s KILL $(( left + 120 )))
    "${guard[@]}" nice -n 10 "$bindir/$t" "${limit[@]}" -timeout=1 -rss_limit_mb=1024 \
      -print_final_stats=1 -artifact_prefix="$art/" "$scratch" "$corpus" >"$log.$attempt" 2>&1 || rc=$?
    cat "$log.$attempt" >>"$log"
    n=$(stat_of number_of_executed_units "$log.$attempt")
    # A killed run prints no final stats: count its last progress line.
    [[ -n $n ]] || n=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log.$attempt" | tail -1)
    execs=$(( execs + ${n:-0} ))
    [[ $rc -eq 0 ]] && break
    if [[ $rc -eq 137 ]] && grep -q '^ALARM: working on the last Unit' "$log.$attempt"; then
      echo "$t: libFuzzer hung in its timeout handler (machine load): resuming"
      continue
    fi
    timeout_input=$(sed -n "s|.*Test unit written to \($art/timeout-[0-9a-f]*\).*|\1|p" "$log.$attempt")
    if [[ -n $timeout_input && $attempt -lt 6 ]] && ! reproduces "$bindir/$t" "$timeout_input"; then
      mv "$timeout_input" "$art/unreproduced-$(basename "$timeout_input")"
      echo "$t: a timeout did not reproduce on its own (machine load): resuming"
      [[ -n $runs && $execs -ge $runs ]] && { rc=0; break; }
      continue
    fi
    break
  done
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  if [[ $rc -ne 0 ]]; then
    result="FAILED (exit $rc)"
    failed+=("$t")
    mkdir -p "fuzz/regressions/$t"
    for a in "$art"/crash-* "$art"/timeout-* "$art"/oom-*; do
      [[ -f $a ]] && cp "$a" "fuzz/regressions/$t/" && echo "$t: kept $(basename "$a") in fuzz/regressions/$t/"
    done
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -5 || true
  fi
  if [[ $merge -eq 1 && $rc -eq 0 ]]; then
    rm -rf "$work/$t.merged" && mkdir -p "$work/$t.merged"
    nice -n 10 "$bindir/$t" -set_cover_merge=1 -timeout=1 "$work/$t.merged" "$corpus" "$scratch" >"$work/$t.merge.log" 2>&1
    find "$corpus" -type f ! -name 'seed-*' -delete
    cp -n "$work/$t.merged"/* "$corpus"/ 2>/dev/null || true
    # The seeds stay under their names; their merged copies (named by hash) go.
    for s in "$corpus"/seed-*; do
      [[ -f $s ]] && rm -f "$corpus/$(sha1sum "$s" | cut -c1-40)"
    done
  fi
  corp=$(find "$corpus" -type f | wc -l)
  rate=$(( secs > 0 ? execs / secs : 0 ))
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%F)" "$t" "$execs" "${cov:-?}" "${ft:-?}" "$corp" "$secs" "$rate" "$result")
  echo "$line" | tee -a "$results"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/regressions/, logs in $work/)" >&2
  exit 1
fi
