#!/usr/bin/env bash
# One-command demo on a fresh machine: installs what is missing, builds the tools, makes an ext4
# image with MMP in a temp dir and shows `mmp-tool` at work. As root it also plays two hosts on
# one disk: the kernel mounts the image through loop device A, and `mmp-tool check` through loop
# device B sees the holder within about a second (e2mmpstatus needs 11 s). Everything it creates
# is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ $(id -u) -eq 0 ]]; then bash scripts/setup.sh; fi
cargo build --release --quiet -p mmp-tool
tool="$PWD/target/release/mmp-tool"

work=$(mktemp -d /tmp/mmp-demo.XXXXXX)
loops=()
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
img="$work/shared.img"
truncate -s 64M "$img"
say "mkfs.ext4 -q -O mmp -E mmp_update_interval=1 shared.img"
mkfs.ext4 -q -F -O mmp -E mmp_update_interval=1 "$img"

say "mmp-tool status shared.img"
"$tool" status "$img"
say "mmp-tool check shared.img"
"$tool" check "$img"; echo "exit status $?"

if [[ $(id -u) -ne 0 || ! -e /dev/loop-control ]]; then
  echo
  echo "(run as root to see the two-host part: kernel mount on one loop device, check on another)"
  exit 0
fi

A=$(losetup -f --show "$img"); loops+=("$A")
B=$(losetup -f --show "$img"); loops+=("$B")
mkdir -p "$work/mnt"
say "mount $A $work/mnt     # host A mounts the shared disk (kmmpd starts)"
mount "$A" "$work/mnt"
say "mmp-tool check $B     # host B, same disk, before mounting"
set +e
time "$tool" check "$B"
echo "exit status $? (1 = in use: do not mount)"
say "mmp-tool status --json $B"
"$tool" status --json "$B"
set -e
say "umount $work/mnt     # host A releases (kmmpd writes CLEAN)"
umount "$work/mnt"
say "mmp-tool check $B"
"$tool" check "$B"; echo "exit status $?"
