#!/bin/bash
# Scenario 6: the NFS service run by our OCF agents mmp-fs, nfs-grace and nfs-locks (mmp-tool and
# lockd-recover called through the package's symlinks, parameters as OCF_RESKEY_*), in the
# order of the Pacemaker group
#   fs (mmp-fs) -> nfs-grace -> nfsserver -> exportfs -> nfs-locks -> IPaddr2
# with the other members done by hand in their place (guest/ocf-group.sh; no Pacemaker in the
# guests). Either holder: with --holder mmpd, mmp-fs starts mmpd with the watchdog fence
# (softdog) on the MMP area, so the hard failover takes over from a node whose watchdog fence
# bound is published.
#
# Steps: ocf-tester on nfs-grace on the standby (real kernel, nfsd stopped) and the probe of
# nfs-locks there (7); the active node's scripts hand the service to the standby, which starts
# the group (X); the workload starts on C and D; planned failover X -> Y as the group would
# (IPaddr2 stop, nfs-locks stop: final ledger record and release, exportfs, nfsserver, nfs-grace,
# fs; then Y's start); then a hard failover: Y is killed and X starts the group.
# Pass when:
#   - ocf-tester passes on nfs-grace and the probe of nfs-locks on the standby says 7;
#   - mmp-fs: start mounts, the depth-10 monitor says the block is ours and moving, stop
#     unmounts and the probe then says 7, the MMP block is CLEAN after the planned stop;
#   - every activate/deactivate of the group succeeds (the nfs-locks worker reaches "recording"
#     and the agent's monitor says 0); on X's stop, nfs-locks first refuses to stop while the IP
#     is up, then releases: no lock left on the export;
#   - X's final ledger record names X and holds the workload's locks (EXPECTED_LOCKS);
#   - after each failover the new node's worker reports every ledger lock held again and grace
#     ended (early, from the ledger);
#   - the client's writes resume within 60 s of each takeover, lock-torture on C holds every lock
#     throughout, the probe on D gets no conflicting grant, the writer's file is complete.
# Runtime: about 4 min (221-248 s measured with a host load of 2-4, after the lab's 70 s setup).
# With --holder mmpd (mmp-fs starts mmpd with the watchdog fence): PASS in 343 s measured.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_6() {
    local rc=0 x y t
    # The group's nfsserver step serves NFSv3 only (rpc.nfsd -N 4): no NFSv4 workload here.
    local V4_WORKLOAD=0
    SCEN_NAME=ocf-agents
    banner "scenario 6: OCF agents nfs-grace + nfs-locks in group order (handoff and hard failover)" || return 1
    t=$(vm_exec "$STANDBY" ocf-tester-grace)
    vm_wait "$STANDBY" "$t" 120 || return 1
    echo "  standby: $(vm_out "$STANDBY" "$t" | grep -E 'passed all tests|^ocf nfs-locks monitor' | tr '\n' ' ')"
    # The scripts' service moves to the standby, started there by the agents.
    vm_run "$ACTIVE" 120 deactivate ours || return 1
    x=$STANDBY y=$ACTIVE
    t=$(vm_exec "$x" activate ocf)
    vm_wait "$x" "$t" 180 || return 1
    ACTIVE=$x STANDBY=$y
    echo "  ${VM_HOST[$x]} runs the group"
    workload_start || return 1
    sleep 3
    SCEN_NAME=ocf-handoff
    failover_once handoff ocf || rc=1
    judge_ocf_release "$x" || rc=1
    judge_ocf_takeover "$y" || rc=1
    SCEN_NAME=ocf-hard
    failover_once hard ocf || rc=1
    judge_ocf_takeover "$x" || rc=1
    sleep 3
    SCEN_NAME=ocf-agents
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME holder=$HOLDER resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S rc=$rc load=$(load_avg)"
    NEED_REBOOT=$y
    verdict $rc
    return $rc
}

# The old node's stop: the ledger's final record (node, locks) and no lock left on the export.
judge_ocf_release() {
    local old=$1 out f ledger n left
    # The newest (tags are numbered in order).
    for f in "$LAB/vm/$old/out/"*-deactivate.out; do out=$f; done
    ledger=$(sed -n 's/^ledger: //p' "$out")
    left=$(sed -n 's/^locks left on the export: //p' "$out")
    echo "  ${VM_HOST[$old]} stop: final ledger $ledger, locks left on the export: ${left:-?}"
    n=$(jq -r '.locks' <<< "$ledger" 2> /dev/null)
    [[ $(jq -r '.node' <<< "$ledger" 2> /dev/null) == "${VM_HOST[$old]}" && ${n:-0} -ge $EXPECTED_LOCKS && $left == 0 ]] || {
        echo "  FAIL: the final ledger record or the release"
        return 1
    }
}

# The new node's worker: every ledger lock held again and grace ended (its takeover report).
judge_ocf_takeover() {
    local new=$1 out f held ended
    for f in "$LAB/vm/$new/out/"*-activate.out; do out=$f; done
    held=$(grep -Eo '[0-9]+ of [0-9]+ recorded locks held again[^)]*\)' "$out" | tail -1)
    ended=$(grep -Eo 'grace ended after [0-9]+ ms' "$out" | tail -1)
    echo "  ${VM_HOST[$new]} nfs-locks worker: ${held:-no reclaim report}; ${ended:-grace NOT ended}"
    [[ -n $ended && $held =~ ^([0-9]+)\ of\ ([0-9]+) && ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" && ${BASH_REMATCH[2]} -ge $EXPECTED_LOCKS ]] || {
        echo "  FAIL: the worker did not see every ledger lock back and end grace"
        return 1
    }
}
