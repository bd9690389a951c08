#!/usr/bin/env bash
# Benchmark: a planned move of a CLEAN ext4 filesystem with MMP (update interval 1 s) from host A
# to host B (two loop devices over one image), three ways, interleaved in one run:
#  (a) stock: `umount` on A, then the kernel's `mount` on B. No protection against a racing
#      node: any node that sees CLEAN may mount too.
#  (b) our normal gate: `umount` on A, then `mmp-tool mount` on B (a claim of the CLEAN block,
#      9 s of verification, then the mount).
#  (c) the planned handoff: `umount` on A, `mmp-tool handoff A --to host-b` on A (the offer,
#      verified for 2.2 s; prints the nonce), then `mmp-tool mount B --handoff NONCE` on B
#      (and, untimed in the totals, `handoff --confirm` on A).
# Each step is timed on its own (date +%s.%N around it; hyperfine cannot hand the nonce of
# one timed command to the next). Prints a markdown table of the means (min-max) over RUNS
# runs (default 5) with the ratio of B's gate + mount to stock's mount.
# Needs root, loop devices, e2fsprogs and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
cargo build --release --quiet -p mmp-tool
tool="$PWD/target/release/mmp-tool"
work=$(mktemp -d /tmp/mmp-bench-handoff.XXXXXX)
loops=()
cleanup() {
  for m in "$work/mnt-a" "$work/mnt-b"; do
    mountpoint -q "$m" 2>/dev/null && umount "$m"
  done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mnt-a" "$work/mnt-b" "$work/run"

img="$work/shared.img"
truncate -s 64M "$img"
mkfs.ext4 -q -F -O mmp -E mmp_update_interval=1 "$img"
A=$(losetup -f --show "$img"); loops+=("$A")
B=$(losetup -f --show "$img"); loops+=("$B")
times="$work/times"

now() { date +%s.%N; }
# record CASE STEP T0 T1: one timed step.
record() { echo "$1 $2 $3 $4" >>"$times"; }
# The source holds the filesystem: a kernel mount of the CLEAN block (no wait).
source_mounts() { mount -t ext4 "$A" "$work/mnt-a"; }
target_unmounts() { umount "$work/mnt-b"; }

for i in $(seq "$runs"); do
  # (a) stock
  source_mounts
  t0=$(now); umount "$work/mnt-a"; t1=$(now)
  mount -t ext4 "$B" "$work/mnt-b"; t2=$(now)
  record stock source "$t0" "$t1"; record stock target "$t1" "$t2"
  target_unmounts

  # (b) our normal gate
  source_mounts
  t0=$(now); umount "$work/mnt-a"; t1=$(now)
  "$tool" mount --json -q --run-dir "$work/run" "$B" "$work/mnt-b" >"$work/gate.json"; t2=$(now)
  record gate source "$t0" "$t1"; record gate target "$t1" "$t2"
  target_unmounts

  # (c) the planned handoff
  source_mounts
  t0=$(now); umount "$work/mnt-a"; t1=$(now)
  "$tool" handoff --json -q --run-dir "$work/run" "$A" --to host-b >"$work/offer.json"; t2=$(now)
  nonce=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nonce"])' "$work/offer.json")
  t3=$(now)
  "$tool" mount --json -q --run-dir "$work/run" --node-name host-b "$B" "$work/mnt-b" \
    --handoff "$nonce" >"$work/target.json"
  t4=$(now)
  record handoff source "$t0" "$t1"; record handoff offer "$t1" "$t2"
  record handoff target "$t3" "$t4"
  # Off the critical path: the source learns that the target's holder writes.
  "$tool" handoff --json -q "$A" --confirm "$nonce" >"$work/confirm.json"; t5=$(now)
  record handoff confirm "$t4" "$t5"
  target_unmounts
  echo "run $i/$runs done" >&2
done

python3 - "$times" "$runs" <<'PY'
import sys
from collections import defaultdict
steps = defaultdict(list)
for line in open(sys.argv[1]):
    case, step, t0, t1 = line.split()
    steps[(case, step)].append(float(t1) - float(t0))
def mean(v): return sum(v) / len(v)
def cell(case, step):
    v = steps.get((case, step))
    if not v: return "-", 0.0
    return f"{mean(v):.3f} ({min(v):.3f}-{max(v):.3f})", mean(v)
stock = mean(steps[("stock", "target")])
print(f"\nPlanned move A -> B of a CLEAN filesystem, means in seconds (min-max) over {sys.argv[2]} runs each, interleaved:\n")
print("| path | A: umount | A: offer | B: MMP gate + mount | A offer + B gate + mount | B vs stock mount |")
print("|---|---|---|---|---|---|")
names = {
    "stock": "(a) stock: umount, kernel mount on B (no protection against a racing node)",
    "gate": "(b) ours, normal gate: umount, `mmp-tool mount` on B",
    "handoff": "(c) ours, planned handoff: umount, `handoff --to`, `mount --handoff` on B",
}
for case in ("stock", "gate", "handoff"):
    src, _ = cell(case, "source")
    offer, o = cell(case, "offer")
    tgt, t = cell(case, "target")
    print(f"| {names[case]} | {src} | {offer} | {tgt} | {o + t:.3f} | {t / stock:.0f}x |")
c, _ = cell("handoff", "confirm")
print(f"\n`handoff --confirm` on A after the target's mount (off the critical path): {c} s.")
PY
