#!/bin/bash
# Scenario p4 (--manager pacemaker, our agents; p4w: the same with sbd fencing): frozen holder.
#
# While C holds locks and writes, the active server's VM is paused with its clocks stopped (the
# qemu monitor's `stop`, as a hypervisor pause or a live migration does): nothing on it runs,
# neither its MMP updates nor its sbd nor its watchdog's countdown. corosync on the other server
# loses it and Pacemaker fences it before starting the group there.
#   p4  (fence_lab, power fencing from outside the node): the host kills the paused VM's qemu,
#       so the frozen node can never write again. Pass when the fence (the host saw the qemu
#       exit) came before the mount on the survivor, the frozen node's qemu is gone, and
#       scenario p1's criteria hold, plus the survivor's kernel never saw another writer on the
#       MMP block and `e2fsck -fn` of the shared disk is clean.
#   p4w (sbd): the fence is a poison pill in the frozen node's slot; sbd counts it delivered
#       after msgwait, but the frozen node reads nothing while it is paused. After the group
#       runs on the survivor the lab continues the paused VM (the hypervisor resumes it): its
#       sbd then finds the pill and powers it off, or its watchdog fires. qemu's own count of
#       its writes to the shared disk from its `cont` to its exit (`info blockstats`) is what
#       the pause costs: anything above 0 is a write by a node the cluster believes dead onto
#       a filesystem another node has mounted. The scenario FAILS then, by design of any fencing
#       that relies on the fenced node's own clock (sbd, a lease, a watchdog: README.md), and
#       reports the count, the survivor's kernel (kmmpd: "multiply mounted") and e2fsck.
# The row: p1's, plus the frozen node's writes after the survivor's mount and the fsck verdict.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_p4() { scenario_pcmk_frozen lab p4; }
scenario_p4w() { scenario_pcmk_frozen sbd p4w; }

scenario_pcmk_frozen() {
    local fence=$1 rc=0 old new t0 tw tg p LAB_FREEZE=monitor
    SCEN_NAME=pcmk-frozen-$fence
    banner "scenario $2: Pacemaker (ours agents, $fence fencing), frozen holder: the active server paused with its clocks stopped, Pacemaker fences it and starts the group on the other" || return 1
    pcmk_open ours "$fence" || return 1
    old=$ACTIVE new=$STANDBY p=$(vm_pid "$ACTIVE")
    tw=$(vm_exec "$new" watch-recovery "$EXPECTED_LOCKS" 300)
    tg=$(vm_exec "$new" pcmk-wait-group "${VM_HOST[$new]}" 260)
    t0=$(now)
    vm_pause "$old"
    tl "paused VM ${VM_HOST[$old]} (qemu monitor stop: its clocks stop; the cluster is not told)"
    vm_wait "$new" "$tg" 280 || rc=1
    tl_guest "$new" "$tg"
    pcmk_mark_fence "$old" "$t0" || rc=1
    ACTIVE=$new STANDBY=$old
    if [[ $fence == lab ]]; then
        frozen_gone "$old" "$p" || rc=1
    else
        continue_and_watch "$old" "$p" || rc=1
        tl "continued ${VM_HOST[$old]}: its writes to the shared disk until it stopped: ${WRITES_AFTER:-?}"
    fi
    mark_writes_resumed "$t0" || rc=1
    vm_wait "$new" "$tw" 300 > /dev/null 2>&1
    tl_guest "$new" "$tw"
    tl_print "$t0"
    pcmk_row "$t0" "$new" ours || rc=1
    pcmk_save_ops "$new"
    vm_run "$new" 60 pcmk-holder-check || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    judge_fsck || rc=1
    pcmk_result_row "$rc" "writes_after_mount=${WRITES_AFTER:-0}"
    NEED_REBOOT=$old
    verdict $rc
    return $rc
}

# frozen_gone NODE PID: power fencing left nothing of the frozen node (its qemu exited when the
# host fenced it, which pcmk_row checks came before the mount).
frozen_gone() {
    WRITES_AFTER=0
    if kill -0 "$2" 2> /dev/null; then
        echo "  FAIL: ${VM_HOST[$1]}'s qemu still runs after its fence"
        WRITES_AFTER=
        return 1
    fi
    echo "  ${VM_HOST[$1]}'s qemu exited at its fence: no write of it can follow the mount"
}
