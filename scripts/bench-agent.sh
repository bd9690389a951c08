#!/usr/bin/env bash
# Benchmark: our OCF agent `mmp-fs` next to the stock `ocf:heartbeat:Filesystem`, in one run, on
# loop devices over one ext4 image with MMP (update interval 1 s), both started the way an
# operator (or crmsh without op timeouts) does: `crm_resource --force-start`, whose default
# timeout is 20 s, and again with `--timeout 60s` (the start timeout both agents advertise):
#  (a) the device is in use on another node: the kernel holds it through loop device B, we start
#      on loop device A. Time to the refusal, and what the reason says.
#  (b) the holder died: a live MMP sequence nobody updates (`mmp-tool claim --node-name dead-node`
#      through B, which leaves its sequence in the block and exits). Time to mounted, and whether
#      it fits the 20 s default.
# Needs root, loop devices, e2fsprogs, pacemaker-cli-utils and resource-agents. Prints a markdown
# table and the ratios. The agent is installed for the run as ocf:mmp-ha-bench-PID:mmp-fs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p mmp-tool
tool="$PWD/target/release/mmp-tool"
work=$(mktemp -d /tmp/mmp-bench-agent.XXXXXX)
provider="mmp-ha-bench-$$"
pdir="/usr/lib/ocf/resource.d/$provider"
loops=()
cleanup() {
  for m in "$work/mnt-a" "$work/mnt-b"; do
    mountpoint -q "$m" 2>/dev/null && umount "$m"
  done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work" "$pdir"
}
trap cleanup EXIT
mkdir -p "$pdir" "$work/mnt-a" "$work/mnt-b"
ln -s "$tool" "$pdir/mmp-fs"

img="$work/shared.img"
truncate -s 64M "$img"
mkfs.ext4 -q -F -O mmp -E mmp_update_interval=1 "$img"
A=$(losetup -f --show "$img"); loops+=("$A")
B=$(losetup -f --show "$img"); loops+=("$B")
rows=()

# start AGENT LABEL TIMEOUT CASE: crm_resource --force-start on A; records a table row and
# leaves A unmounted.
start() {
  local agent=$1 label=$2 timeout=$3 case=$4 t0 t1 rc out reason secs
  local args=(--force-start --class ocf --agent "$agent")
  if [ "$agent" = mmp-fs ]; then
    args+=(--provider "$provider" --option "run_dir=$work/run")
  else
    args+=(--provider heartbeat --option fstype=ext4)
  fi
  args+=(--option "device=$A" --option "directory=$work/mnt-a")
  [ "$timeout" = default ] || args+=(--timeout "$timeout")
  t0=$(date +%s.%N)
  out=$(crm_resource "${args[@]}" 2>&1) && rc=0 || rc=$?
  t1=$(date +%s.%N)
  reason=$(grep -m1 -oE '(returned|could not be executed) .*' <<<"$out" | cut -c1-220 | tr '|' '/' || true)
  [ -n "$reason" ] || reason=$(head -c 220 <<<"$out" | tr '\n|' ' /')
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  rows+=("| $case | $label | $timeout | $rc | $secs | $reason |")
  echo "$case / $label / $timeout: rc $rc in $secs s" >&2
  # A timed-out start leaves its mount(8) running, and the kernel mount may still complete:
  # wait for every process naming our mount point to end, then unmount.
  for _ in $(seq 60); do
    pgrep -f "$work/mnt-a" >/dev/null || break
    sleep 0.5
  done
  for _ in $(seq 15); do
    mountpoint -q "$work/mnt-a" || break
    umount "$work/mnt-a" 2>/dev/null || sleep 1
  done
}

# (a) in use on another node. The kernel mounts B in a mount namespace of its own, as another
# host's mount would be: a namespace that some other program creates meanwhile (ip netns exec,
# unshare) would otherwise keep a copy of the mount, and kmmpd running, after our umount.
unshare -m --propagation private sh -c "mount -t ext4 $B $work/mnt-b && touch $work/b-up &&
  while [ ! -e $work/b-stop ]; do sleep 0.2; done; umount $work/mnt-b" &
other=$!
while [ ! -e "$work/b-up" ]; do sleep 0.1; done
for timeout in default 60s; do
  start Filesystem "stock Filesystem" "$timeout" "(a) in use elsewhere"
  start mmp-fs "mmp-fs" "$timeout" "(a) in use elsewhere"
done
touch "$work/b-stop"
wait "$other"

# (b) the holder died: its live sequence stays in the block.
dead_holder() {
  # kmmpd may still be finishing its last write just after an unmount: retry then.
  for _ in 1 2 3; do
    "$tool" claim --quiet --node-name dead-node --run-dir "$work/run-dead" "$B" >/dev/null && return
    sleep 2
  done
  return 1
}
for timeout in default 60s; do
  dead_holder; start Filesystem "stock Filesystem" "$timeout" "(b) after a dead holder"
  dead_holder; start mmp-fs "mmp-fs" "$timeout" "(b) after a dead holder"
done

echo
echo "| case | agent | crm_resource timeout | rc | seconds | what crm_resource reports |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
# Time to an answer (mounted, or a refusal with its reason), stock over ours.
printf '%s\n' "${rows[@]}" | awk -F'|' '
  { gsub(/^ +| +$/, "", $2); gsub(/ /, "", $4); key = $2 ", timeout " $4
    who = ($3 ~ /mmp-fs/) ? "ours" : "stock"; t[key, who] = $6 + 0; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
  END { for (i = 0; i < n; i++) { k = order[i]
          printf "%s: stock %.1f s, mmp-fs %.1f s, ratio %.1f\n", k, t[k, "stock"], t[k, "ours"], t[k, "stock"] / t[k, "ours"] } }'
