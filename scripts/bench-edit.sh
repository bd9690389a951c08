#!/usr/bin/env bash
# Benchmark: `mmp-tool enable|disable|interval` next to the tune2fs commands that do the same,
# in one run, each on a fresh copy of the same 64 MiB image (hyperfine --prepare). Needs
# e2fsprogs and hyperfine; image files only, no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
cargo build --release --quiet -p mmp-tool
tool="$PWD/target/release/mmp-tool"
work=$(mktemp -d /tmp/mmp-bench-edit.XXXXXX)
trap 'rm -rf "$work"' EXIT

truncate -s 64M "$work/plain.img" "$work/mmp.img"
mkfs.ext4 -q -F -O ^mmp "$work/plain.img"
mkfs.ext4 -q -F -O mmp -E mmp_update_interval=5 "$work/mmp.img"
w="$work/w.img"

bench() { # name base ours theirs
  echo "## $1"
  hyperfine -N --runs "$runs" --style basic --export-json "$work/$1.json" \
    --prepare "cp $2 $w" "$3" "$4"
}
bench enable "$work/plain.img" "$tool enable --interval 5 $w" "tune2fs -O mmp -E mmp_update_interval=5 $w"
bench disable "$work/mmp.img" "$tool disable $w" "tune2fs -O ^mmp $w"
bench interval "$work/mmp.img" "$tool interval $w 3" "tune2fs -E mmp_update_interval=3 $w"

python3 - "$work" <<'PY'
import json, sys
for op in ("enable", "disable", "interval"):
    r = json.load(open(f"{sys.argv[1]}/{op}.json"))["results"]
    o, t = r[0], r[1]
    print(f"| {op} | {o['mean']*1000:.0f} ms ± {o['stddev']*1000:.0f} | {t['mean']*1000:.0f} ms ± {t['stddev']*1000:.0f} | {o['mean']/t['mean']:.3f} |")
PY
