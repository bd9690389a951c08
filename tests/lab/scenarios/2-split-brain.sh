#!/bin/bash
# Scenario 2: split brain refused.
#
# The active server holds the filesystem (ext4 holder: kmmpd; mmpd holder: mmpd holds the MMP
# area), its ledger recorder paused so that the disk is quiet; the standby is told to take over
# (node.sh split-brain --kernel).
# Pass when:
#   - the standby's script reports the takeover refused (ext4: `mmp-tool mount` exits 1 and so
#     does a plain kernel mount; mmpd: mmpd exits 3 "in use", nothing mounted);
#   - the MMP block, sampled from the host every 0.2 s throughout, always names the active node;
#   - the shared disk without its MMP block (mmpd: the whole shared disk, and the area without
#     its MMP block) hashes the same before and after;
#   - the active server still serves: client C writes and reads back a file;
#   - then again under the clients' workload (NFSv3 and, with V4_WORKLOAD, NFSv4.1/4.2 clients
#     holding POSIX locks and flocks, writing with fsync; D probing C's locks): the standby's
#     takeover is refused again and the workload's verdicts of scenario 1 hold (no lost lock,
#     no EIO, no conflicting grant, every acknowledged record on the disk).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_2() { scenario_split_brain; }

scenario_split_brain() {
    local rc=0 t h1 h2 t0
    SCEN_NAME=split-brain
    banner "scenario 2: split brain refused: ${VM_HOST[$ACTIVE]} holds the filesystem$([[ $HOLDER == mmpd ]] && echo ' (mmpd holds the MMP area)'), ${VM_HOST[$STANDBY]} is told to take over" || return 1
    tl_start split-brain
    # Quiesce the active node's own writes (the ledger recorder rewrites its file every second)
    # so that the only writes left are kmmpd's (mmpd's) to the MMP block.
    vm_run "$ACTIVE" 30 record-pause
    vm_run "$ACTIVE" 30 sync
    sleep 2
    h1=$(disk_hash)
    mmp_sampler_start
    t0=$(now)
    tl "${VM_HOST[$STANDBY]} told to take over while ${VM_HOST[$ACTIVE]} is active"
    t=$(vm_exec "$STANDBY" split-brain --kernel)
    vm_wait "$STANDBY" "$t" 120 || rc=1
    tl_guest "$STANDBY" "$t"
    mmp_sampler_stop
    vm_run "$ACTIVE" 30 sync
    sleep 1
    h2=$(disk_hash)
    vm_run "$ACTIVE" 30 record-resume
    tl_print "$t0"
    vm_out "$STANDBY" "$t" | grep -E '^mmp-tool mount:|MMP|mmp|refused' | sed 's/^/  /' | cut -c1-300
    judge_mmp_samples || rc=1
    echo "  disk$([[ $HOLDER == mmpd ]] && echo ' (and area)') without the MMP block: before $h1, after $h2"
    [[ $h1 == "$h2" ]] || { echo "  FAIL: the disk changed"; rc=1; }
    # The active node still serves.
    if vm_run c 60 client-write-check; then echo "  ${VM_HOST[$ACTIVE]} still serves: client C wrote and read back a file"; else rc=1; fi
    split_under_load || rc=1
    verdict $rc
    return $rc
}

# The standby told to take over while the clients' workload runs on the active server.
split_under_load() {
    local rc=0 t
    workload_start || return 1
    sleep 3
    tl "${VM_HOST[$STANDBY]} told to take over again, under the clients' workload"
    t=$(vm_exec "$STANDBY" split-brain --kernel)
    vm_wait "$STANDBY" "$t" 120 || rc=1
    vm_out "$STANDBY" "$t" | grep -E '"message"|kernel mount exit|split-brain refused' | head -4 | sed 's/^ */  under load: /' | cut -c1-220
    sleep 3
    workload_stop
    judge_workload || rc=1
    return $rc
}

# Sample the MMP block from the host in the background (to $LAB/mmp-samples.txt): the holder's
# name must never change.
mmp_sampler_start() {
    local img
    img=$LAB/$([[ $HOLDER == mmpd ]] && echo area || echo shared).img
    (while :; do
        "$LAB/share/bin/mmp-tool" status --json "$img" 2> /dev/null |
            jq -r '"\(now) \(.node_name // .nodename // .node // "?") \(.sequence // .seq // "?")"' 2> /dev/null
        sleep 0.2
    done > "$LAB/mmp-samples.txt") &
    SAMPLER_PID=$!
}

mmp_sampler_stop() {
    kill "$SAMPLER_PID" 2> /dev/null
    wait "$SAMPLER_PID" 2> /dev/null
    SAMPLER_PID=
}

# Every sample named the active node.
judge_mmp_samples() {
    local holder
    holder=$(awk '{ print $2 }' "$LAB/mmp-samples.txt" | sort -u | tr '\n' ' ')
    echo "  MMP block sampled $(wc -l < "$LAB/mmp-samples.txt") times from the host: node names seen: $holder"
    if [[ $holder != "${VM_HOST[$ACTIVE]} " ]]; then
        echo "  FAIL: the MMP block named another node than ${VM_HOST[$ACTIVE]}"
        return 1
    fi
}

# Hash of an image without one 4 KiB block (the MMP block: kmmpd or mmpd rewrites it every second).
hash_without_block() {
    local img=$1 blk=$2 bs=4096
    { head -c $((blk * bs)) "$img"; tail -c +$(((blk + 1) * bs + 1)) "$img"; } | sha256sum | cut -c1-16
}

# The shared disk without its MMP block; with the mmpd holder the whole shared disk (it has no
# MMP block) and the area without its MMP block.
disk_hash() {
    if [[ $HOLDER == mmpd ]]; then
        echo "$(sha256sum < "$LAB/shared.img" | cut -c1-16)+area:$(hash_without_block "$LAB/area.img" "$AREA_MMP_BLOCK")"
    else
        hash_without_block "$LAB/shared.img" "$MMP_BLOCK"
    fi
}
