#!/usr/bin/env bash
# Regenerate the seed inputs of the fuzz corpora (fuzz/corpus/<target>/seed-*) from real
# producers: tiny ext4 images made by mkfs.ext4, tune2fs -O mmp and debugfs (e2fsprogs), one
# mounted by the kernel (kmmpd's live block), one held by mmpd with the watchdog fence (its
# fence tag, its state file), an MMP area from mmp-tool, ledgers written by
# `lockd-recover record` over real kernel locks and by `record --final` on the kernel's mount,
# this host's /proc/locks and mountinfo, and rpcbind/rpc.statd replies captured in a network
# namespace. Root (loop mounts, namespaces).
#
# Usage: bash scripts/fuzz-seeds.sh        (builds the debug binaries it runs)
# The seeds are small on purpose (64 KiB images at most); scripts/fuzz.sh grows the corpora.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
C=fuzz/corpus
BIN=target/debug
work=$(mktemp -d)
pids=()
mounted=()
netns=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
  [[ -n $netns ]] && ip netns del "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# mmpd with the testing feature (the fake watchdog), the tools.
cargo test -p mmpd --no-run -q >/dev/null 2>&1 || cargo build -p mmpd -q
cargo build -q -p mmp-tool -p lockd-recover -p lock-torture

seed() { mkdir -p "$C/$1"; cat >"$C/$1/seed-$2"; }
# Raw CRC32C as the kernel's ext4_chksum(~0, uuid): the metadata checksum seed.
csum_seed() {
  python3 - "$1" <<'PY'
import sys, struct
d = open(sys.argv[1], 'rb').read()[1024 + 0x68:1024 + 0x78]
crc = 0xffffffff
for b in d:
    crc ^= b
    for _ in range(8):
        crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
sys.stdout.buffer.write(struct.pack('<I', crc))
PY
}
field() { dumpe2fs -h "$1" 2>/dev/null | sed -n "s/^$2: *//p"; }
# Seeds of the block parsers and the whole-image targets from one image.
from_image() {
  local img=$1 name=$2 bs mmp desc
  bs=$(field "$img" "Block size")
  dd if="$img" bs=1024 skip=1 count=1 status=none | seed superblock "$name"
  desc=$(field "$img" "Group descriptor size"); desc=${desc:-32}
  local gdt=$(( bs == 1024 ? 2048 : bs )) mode=1
  [[ $(field "$img" "Filesystem features") == *metadata_csum* ]] && mode=2
  { printf "\\x0$(( desc == 64 ? 1 : 0 ))\\x00\\x00\\x00\\x00\\x0$mode"
    dd if="$img" bs=1 skip="$gdt" count="$desc" status=none; } | seed group_desc "$name"
  mmp=$(field "$img" "MMP block number")
  if [[ -n $mmp ]]; then
    { csum_seed "$img"; dd if="$img" bs="$bs" skip="$mmp" count=1 status=none | head -c 1024; } |
      seed mmp_block "$name"
  fi
  seed fs_image "$name" <"$img"
  seed edit_image "$name" <"$img"
}
mkimg() { rm -f "$1"; truncate -s "${3:-64k}" "$1"; mkfs.ext4 -q -F -b 1024 -N 16 -O "$2" "$1"; }

# e2fsprogs: mkfs with MMP (metadata_csum, 64bit), without checksums, tune2fs -O mmp, debugfs.
mkimg "$work/mmp.img" mmp,^has_journal,^resize_inode
from_image "$work/mmp.img" mkfs-mmp-csum
mkimg "$work/old.img" mmp,^has_journal,^resize_inode,^metadata_csum,^64bit,uninit_bg
from_image "$work/old.img" mkfs-mmp-gdtcsum
mkimg "$work/tune.img" ^has_journal,^resize_inode
from_image "$work/tune.img" mkfs-nommp
tune2fs -O mmp -E mmp_update_interval=7 "$work/tune.img" >/dev/null 2>&1
from_image "$work/tune.img" tune2fs-mmp
cp "$work/mmp.img" "$work/fsck.img"
debugfs -w -R "set_mmp_value sequence 0xE24D4D50" "$work/fsck.img" >/dev/null 2>&1
debugfs -w -R "set_mmp_value nodename other-node" "$work/fsck.img" >/dev/null 2>&1
from_image "$work/fsck.img" debugfs-fsck-seq
"$BIN/mmp-tool" format-area "$work/area.img" --size 8192 >/dev/null 2>&1 ||
  { truncate -s 8k "$work/area.img"; "$BIN/mmp-tool" format-area "$work/area.img" >/dev/null; }
seed fs_image mmp-tool-area <"$work/area.img"
seed superblock mmp-tool-area < <(dd if="$work/area.img" bs=1024 skip=1 count=1 status=none)
{ csum_seed "$work/area.img"; dd if="$work/area.img" bs=4096 skip=1 count=1 status=none | head -c 1024; } |
  seed mmp_block mmp-tool-area

# The kernel's live block: mounted through a loop device, kmmpd writes a live sequence.
cp "$work/mmp.img" "$work/live.img"
mkdir -p "$work/mnt"
if mount -o loop "$work/live.img" "$work/mnt" 2>/dev/null; then
  mounted+=("$work/mnt")
  sleep 2
  dev=$(findmnt -n -o SOURCE "$work/mnt")
  { csum_seed "$work/live.img"; dd if="$dev" bs=1024 skip=17 count=1 iflag=direct status=none; } |
    seed mmp_block kernel-live
  findmnt -n -o SOURCE "$work/mnt" >/dev/null
  sed -n '1,40p' /proc/self/mountinfo | seed mountinfo host
  # The uevent of the block device under it, as the final ledger's mark reads it.
  read -r maj min < <(stat -c '%Hd %Ld' "$work/mnt")
  seed sysfs_uevent loop <"/sys/dev/block/$maj:$min/uevent"
  # A final ledger (format 3, marked with this mount): `record --final` once the floating IP
  # is down (192.0.2.1, TEST-NET-1, is on no interface here).
  mkdir -p "$work/fproc/fs/lockd" "$work/fproc/fs/nfsd" "$work/final"
  ln -s /proc/locks "$work/fproc/locks"
  "$BIN/lockd-recover" --proc-root "$work/fproc" record --final --ip 192.0.2.1 \
    --fs "$work/mnt" --state-dir "$work/final" >/dev/null 2>&1 &&
    seed lockd_ledger final-ledger.json <"$work/final/lockd-recover-ledger.json"
  umount "$work/mnt"; mounted=()
fi

# mmpd holding an image with the (fake, MMPD_TEST_FAKE_WATCHDOG=1) watchdog fence: a live block
# with its fence tag, and its state file.
cp "$work/mmp.img" "$work/held.img"
: >"$work/watchdog"
MMPD_TEST_FAKE_WATCHDOG=1 "$BIN/mmpd" --run-dir "$work/run" --fence watchdog \
  --watchdog-device "$work/watchdog" "$work/held.img" 2>"$work/mmpd.log" &
pids+=($!)
for _ in $(seq 150); do grep -q "ready:" "$work/mmpd.log" && break; sleep 0.2; done
sleep 2
{ csum_seed "$work/held.img"; dd if="$work/held.img" bs=1024 skip=17 count=1 status=none; } |
  seed mmp_block mmpd-watchdog-tag
for f in "$work"/run/*.state; do [[ -f $f ]] && seed mmpd_holder_state holding <"$f"; done
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
for f in "$work"/run/*.state; do [[ -f $f ]] && seed mmpd_holder_state released <"$f"; done
seed fs_image mmpd-released <"$work/held.img"

# A ledger written by `lockd-recover record` over locks this shell holds (flock and fcntl).
mkdir -p "$work/proc/fs/lockd" "$work/proc/fs/nfsd" "$work/state"
ln -s /proc/locks "$work/proc/locks"
exp=$(mktemp -d /dev/shm/fuzz-seeds.XXXX)
python3 -c '
import fcntl, sys, time
a = open(sys.argv[1] + "/a", "w"); fcntl.lockf(a, fcntl.LOCK_EX, 10, 0)
b = open(sys.argv[1] + "/b", "w"); fcntl.flock(b, fcntl.LOCK_EX)
time.sleep(30)' "$exp" &
pids+=($!)
sleep 1
"$BIN/lockd-recover" record --fs "$exp" --state-dir "$work/state" --proc-root "$work/proc" --count 1 >/dev/null 2>&1 || true
for f in "$work"/state/*; do [[ -f $f ]] && seed lockd_ledger "$(basename "$f")" <"$f"; done
seed lockd_proc_locks host </proc/locks
kill "${pids[-1]}" 2>/dev/null || true
rm -rf "$exp"

# rpc.statd's sm/ records, the format nfs-utils' support/nsm/file.c writes, and rpcbind and
# rpc.statd replies captured from the real daemons in a network namespace.
printf '%s\n' "0100007f 000186b5 00000003 00000010 0a000005000000000000000000000000 10.0.0.5 nfs1.example.com" \
  "0100007f 000186b5 00000003 00000010 c6120014000000000000000000000000 198.18.0.20 server-a" |
  seed lockd_statd_record sm-two-hosts
if command -v rpcbind >/dev/null && command -v rpc.statd >/dev/null; then
  netns=fuzzseeds$$
  ip netns add "$netns" && ip netns exec "$netns" ip link set lo up
  mkdir -p /run/rpcbind "$work/statd/sm"
  ip netns exec "$netns" rpcbind -f -w & pids+=($!)
  sleep 1
  ip netns exec "$netns" rpc.statd -F -L -P "$work/statd" & pids+=($!)
  sleep 2
  ip netns exec "$netns" python3 - "$C/lockd_rpc_reply" <<'PY' || true
import socket, struct, sys, os
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
def call(xid, prog, vers, proc, args):
    return struct.pack('>IIIIII', xid, 0, 2, prog, vers, proc) + b'\0' * 16 + args
def xdr_str(s):
    b = s.encode(); return struct.pack('>I', len(b)) + b + b'\0' * (-len(b) % 4)
def udp(port, msg):
    # From a privileged port, as the kernel's lockd calls: rpc.statd refuses SM_MON otherwise.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.bind(('127.0.0.1', 700 + struct.unpack('>I', msg[:4])[0]))
    s.sendto(msg, ('127.0.0.1', port)); return s.recv(65536)
def keep(name, data):
    open(os.path.join(out, 'seed-' + name), 'wb').write(data)
getport = call(1, 100000, 2, 3, struct.pack('>IIII', 100024, 1, 17, 0))
keep('call-pmap-getport', getport)
r = udp(111, getport); keep('reply-pmap-getport', r)
port = struct.unpack('>I', r[-4:])[0]
stat = call(2, 100024, 1, 1, xdr_str('client1.example'))
keep('call-sm-stat', stat); keep('reply-sm-stat', udp(port, stat))
mon = call(3, 100024, 1, 2, xdr_str('127.9.0.1') + xdr_str('127.0.0.1') + struct.pack('>III', 100021, 4, 16) + b'\x0a\0\0\x05' + b'\0' * 12)
keep('call-sm-mon', mon); keep('reply-sm-mon', udp(port, mon))
notify = call(4, 100024, 1, 6, xdr_str('client1.example') + struct.pack('>I', 5))
keep('call-sm-notify', notify)
keep('reply-sm-unknown-proc', udp(port, call(5, 100024, 1, 99, b'')))
PY
  sleep 1
  for f in "$work"/statd/sm/*; do [[ -f $f ]] && seed lockd_statd_record rpc-statd-sm-mon <"$f"; done
fi

# mmpd's configuration (the README's example and its variants), the OCF environment as
# Pacemaker sets it for our agents, lock-torture's wire lines, records and durations.
sed -n "/^cat > \/etc\/mmpd\/ost0.toml/,/^TOML/p" README.md | sed '1d;$d' | seed mmpd_config readme
seed mmpd_config watchdog-two-devices <<'TOML'
node_name = "node-a"
run_dir = "/run/mmpd"
fence = "watchdog"
watchdog_device = "/dev/watchdog"
watchdog_timeout = 10
interval = 1.0
fail_intervals = 3

[[device]]
path = "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"

[[device]]
path = "/dev/disk/by-id/wwn-0x5000c500a1b2c3d5"
fence = "command"
fence_command = "/usr/local/sbin/fence-me"
interval = 2.5
TOML
seed ocf_env mmp-fs-start <<'ENV'
OCF_ROOT=/usr/lib/ocf
OCF_RESOURCE_INSTANCE=shared-fs
OCF_RESKEY_device=/dev/disk/by-id/wwn-0x5000c500a1b2c3d4
OCF_RESKEY_directory=/srv/nfs
OCF_RESKEY_fstype=xfs
OCF_RESKEY_options=noatime
OCF_RESKEY_area_device=/dev/disk/by-id/wwn-0x5000c500a1b2c3d5
OCF_RESKEY_holder=mmpd
OCF_RESKEY_fence=watchdog
OCF_RESKEY_watchdog_device=/dev/watchdog
OCF_RESKEY_watchdog_timeout=10
OCF_RESKEY_force_unmount=true
OCF_RESKEY_CRM_meta_timeout=60000
OCF_RESKEY_CRM_meta_interval=0
OCF_CHECK_LEVEL=10
ENV
seed ocf_env nfs-grace-monitor <<'ENV'
OCF_RESKEY_filesystems=/srv/nfs
OCF_RESKEY_grace_time=90
OCF_RESKEY_lease_time=90
OCF_RESKEY_mon_name=nfs-service
OCF_RESKEY_CRM_meta_timeout=20000
OCF_RESKEY_CRM_meta_interval=10000
OCF_RESKEY_CRM_meta_op_target_rc=7
OCF_CHECK_LEVEL=0
ENV
printf '10s' | seed lock_torture_duration secs
printf '1h30m' | seed lock_torture_duration compound
printf '250ms' | seed lock_torture_duration millis
for l in '{"op":"hello"}' '{"op":"open","slot":1,"name":"testfile","create":true}' \
  '{"op":"close","slot":1}' '{"op":"reset"}' '{"r":"ok"}' '{"r":"failed","message":"EAGAIN"}'; do
  printf '%s\n' "$l" | seed lock_torture_protocol "$(printf '%s' "$l" | md5sum | head -c 8)"
done
# Records: magic LTR1, writer, seq, count, FNV-1a 64 of the first 24 bytes.
python3 - "$C/lock_torture_record" <<'PY'
import struct, sys, os
def rec(w, seq, count):
    b = b'LTR1' + struct.pack('<IQQ', w, seq, count)
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
    return b + struct.pack('<Q', h)
os.makedirs(sys.argv[1], exist_ok=True)
open(os.path.join(sys.argv[1], 'seed-one'), 'wb').write(rec(3, 17, 42))
open(os.path.join(sys.argv[1], 'seed-file'), 'wb').write(rec(1, 1, 1) + bytes(32) + rec(2, 9, 5))
PY
