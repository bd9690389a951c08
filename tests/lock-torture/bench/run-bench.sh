#!/usr/bin/env bash
# Benchmark lock-torture torture mode on tmpfs and on ext4 (loop device), 1/2/8/32 processes,
# with stress-ng's fcntl-lock stressor (`--locka`) run on the same mount in the same loop as a
# reference. Needs root (mount, losetup), e2fsprogs, stress-ng, python3.
#
#   bash tests/lock-torture/bench/run-bench.sh [path/to/lock-torture] [seconds]
#
# Prints Markdown table rows. Everything it mounts or attaches is undone on exit.
set -euo pipefail
BIN=${1:-target/release/lock-torture}
SECS=${2:-5}
W=$(mktemp -d /tmp/lt-bench.XXXXXX)
LOOPDEV=""
cleanup() {
  for m in "$W/ext4" "$W/tmpfs"; do mountpoint -q "$m" && umount "$m"; done
  [[ -n "$LOOPDEV" ]] && losetup -d "$LOOPDEV"
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/tmpfs" "$W/ext4"
mount -t tmpfs -o size=256m lt-bench "$W/tmpfs"
truncate -s 256M "$W/ext4.img"
mkfs.ext4 -q -F "$W/ext4.img"
LOOPDEV=$(losetup -f --show "$W/ext4.img")
mount -t ext4 "$LOOPDEV" "$W/ext4"

echo "| fs | procs | lock-torture ops/s | lock p50 µs | lock p99 µs | unlock p99 µs | conflicts/s | violations | stress-ng --locka bogo ops/s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for fs in tmpfs ext4; do
  d="$W/$fs"
  for n in 1 2 8 32; do
    "$BIN" torture --dir "$d" --procs "$n" --duration "${SECS}s" --json > "$W/ours.json"
    stress-ng --locka "$n" --timeout "${SECS}s" --temp-path "$d" --metrics-brief --yaml "$W/sng.yaml" >/dev/null 2>&1 || true
    python3 - "$fs" "$n" "$W/ours.json" "$W/sng.yaml" <<'PY'
import json, re, sys
fs, n, ours, sng = sys.argv[1:5]
r = json.load(open(ours))
m = re.search(r"stressor: locka\s.*?bogo-ops-per-second-real-time: ([0-9.]+)", open(sng).read(), re.S)
ref = f"{float(m.group(1)):,.0f}" if m else "n/a"
print(f"| {fs} | {n} | {r['ops_per_sec']:,.0f} | {r['lock_latency']['p50_us']:.1f} | "
      f"{r['lock_latency']['p99_us']:.1f} | {r['unlock_latency']['p99_us']:.1f} | "
      f"{r['conflicts'] / r['elapsed_s']:,.0f} | {r['violations']} | {ref} |")
PY
  done
done
