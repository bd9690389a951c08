#!/usr/bin/env bash
# Benchmark: `mmp-tool check` next to `e2mmpstatus`, in one run, on
#  (a) a filesystem mounted by the kernel through loop device A, checked through loop device B
#      (two hosts sharing a disk; the answer is "in use", exit 1), and
#  (b) a clean filesystem (exit 0).
# Needs root, loop devices, e2fsprogs and hyperfine. Prints hyperfine's tables and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
cargo build --release --quiet -p mmp-tool
tool="$PWD/target/release/mmp-tool"
work=$(mktemp -d /tmp/mmp-bench.XXXXXX)
loops=()
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

img="$work/shared.img"
truncate -s 64M "$img"
mkfs.ext4 -q -F -O mmp -E mmp_update_interval=1 "$img"
A=$(losetup -f --show "$img"); loops+=("$A")
B=$(losetup -f --show "$img"); loops+=("$B")
mkdir -p "$work/mnt"
mount "$A" "$work/mnt"

echo "## (a) in use: kernel holds $A, checked through $B (runs: $runs)"
hyperfine -N -i --runs "$runs" --style basic --export-json "$work/a.json" \
  "$tool check --quiet $B" "e2mmpstatus $B"
umount "$work/mnt"

echo "## (b) clean (runs: $((runs * 4)))"
hyperfine -N --warmup 2 --runs "$((runs * 4))" --style basic --export-json "$work/b.json" \
  "$tool check --quiet $B" "e2mmpstatus $B"

python3 - "$work/a.json" "$work/b.json" <<'PY'
import json, sys
for label, path in (("(a) in use", sys.argv[1]), ("(b) clean", sys.argv[2])):
    r = json.load(open(path))["results"]
    ours, ref = r[0]["mean"], r[1]["mean"]
    print(f"{label}: mmp-tool {ours*1000:.1f} ms, e2mmpstatus {ref*1000:.1f} ms, ratio {ours/ref:.3f}")
PY
