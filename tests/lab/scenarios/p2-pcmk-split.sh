#!/bin/bash
# Scenario p2 (--manager pacemaker, our agents): split brain refused by the MMP gate after a
# false fence confirmation.
#
# With real fencing a failed fence leaves the group stopped; a double mount needs a fence that
# says "off" while the node still runs (a lying PDU, a fence wired to the wrong outlet, an
# operator's `stonith_admin --confirm`). The lab makes one: fence_lab's host side answers ok
# without powering anything off ($LAB/fence.lie, lib/fence.sh), and the servers are cut off
# from each other but not from the clients (bridge port isolation, lib/net.sh). Each side loses
# corosync's token, fences the other (falsely confirmed), and the standby starts the group:
# mmp-fs's claim (the fence-confirmed watch, or the full wait when the fence is not after the
# block's last update) sees the active server's kmmpd still writing and refuses. Nothing is
# written to the block by the refused claim.
# Pass when:
#   - the standby fenced the active server (fence_lab "off" answered ok) and then recorded a
#     failed start of fs; the filesystem was never mounted on it;
#   - the active server still has the filesystem mounted and its kernel never saw another
#     writer on the MMP block;
#   - the workload (served by the active server throughout) lost no lock and saw no error, D was
#     never granted a conflicting lock.
# Afterwards the standby, which believes the active server is off, is powered off for real
# before the partition heals, and boots again as a fresh standby.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_p2() {
    local rc=0 old new th
    SCEN_NAME=pcmk-split-ours
    banner "scenario p2: Pacemaker (our agents), split brain: the servers partitioned, the fence lies; the MMP gate must refuse the second mount" || return 1
    pcmk_open ours lab || return 1
    old=$ACTIVE new=$STANDBY
    p2_split "$old" "$new" || rc=1
    sleep 5
    th=$(vm_exec "$old" pcmk-holder-check)
    vm_wait "$old" "$th" 60 || rc=1
    tl_guest "$old" "$th"
    tl_print "$SPLIT_T0"
    p2_evidence "$new" "$SPLIT_TAG"
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME manager=pacemaker stack=ours refused=$(p2_refused_after "$SPLIT_T0") fenced=$([[ -n $SPLIT_TF ]] && tl_sub "$SPLIT_TF" "$SPLIT_T0") rc=$rc load=$(load_avg)"
    p2_heal "$new"
    verdict $rc
    return $rc
}

# p2_split OLD NEW: the servers partitioned while the fence lies, until Pacemaker on NEW has
# falsely fenced OLD and recorded mmp-fs's refusal to start fs. Sets SPLIT_T0 (the partition),
# SPLIT_TF (the false fence of OLD, empty if none) and SPLIT_TAG (NEW's watch, for its output).
# Returns 1 when a check failed. The fence keeps lying and the partition stays.
p2_split() {
    local old=$1 new=$2 rc=0
    SPLIT_TAG=$(vm_exec "$new" pcmk-wait-refused "${VM_HOST[$new]}" 240)
    touch "$LAB/fence.lie"
    SPLIT_T0=$(now)
    net_partition_servers on || { echo "  FAIL: could not isolate the servers' bridge ports"; rc=1; }
    tl "servers partitioned (bridge ports isolated); fence_lab answers off without powering off"
    vm_wait "$new" "$SPLIT_TAG" 260 || rc=1
    tl_guest "$new" "$SPLIT_TAG"
    SPLIT_TF=$(fence_time "${VM_HOST[$old]}" "$SPLIT_T0")
    if [[ -n $SPLIT_TF ]]; then
        tl_at "$SPLIT_TF" host "fence_lab off ${VM_HOST[$old]}: ok, a lie (the VM runs on)"
    else
        echo "  FAIL: ${VM_HOST[$new]} never fenced ${VM_HOST[$old]}: no false confirmation to refuse"
        rc=1
    fi
    if [[ -n $SPLIT_TF ]] && ! (($(echo "$(tl_find "fs start refused") > $SPLIT_TF" | bc 2> /dev/null || echo 0))); then
        echo "  FAIL: the refusal is not after the false fence: the scenario did not test a false confirmation"
        rc=1
    fi
    return $rc
}

# The refusal as Pacemaker and the agent recorded it (the guest command's output).
p2_evidence() { grep -v '^MARK ' "$LAB/vm/$1/out/$2.out" | sed 's/^/  /'; }

p2_refused_after() { tl_sub "$(tl_find "fs start refused")" "$1"; }

# The standby believes the active server is off (and the active server believes the same of
# it): power it off for real, heal the partition, let the next banner boot it again.
p2_heal() {
    vm_kill "$1"
    rm -f "$LAB/fence.lie"
    net_partition_servers off
    NEED_REBOOT=$1
}
