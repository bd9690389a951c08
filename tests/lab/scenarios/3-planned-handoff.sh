#!/bin/bash
# Scenario 3 (and s3, the same with the stock tools): planned handoff.
#
# The workload runs on C and D; `deactivate` on the active server (floating IP down, unexport,
# release the locks, save the statd records, stop, unmount: the MMP block is CLEAN), then
# `activate` on the other one: the mount needs no crash wait, clients reclaim after the notify.
# Pass when:
#   - both scripts succeed and the new server's VM still runs;
#   - the client's writes resume within 60 s of the takeover;
#   - lock-torture on C: every lock held throughout, no I/O error (verdict pass);
#   - the probe on D: no conflicting grant, no range found free;
#   - the writer's file on the disk holds every acknowledged record, in order.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_3() { scenario_handoff ours; }
scenario_s3() { scenario_handoff stock; }

scenario_handoff() {
    local mode=$1 rc=0
    SCEN_NAME=handoff-$mode
    banner "scenario 3$([[ $mode == stock ]] && echo ' (stock tools: unlock_filesystem, kernel mount, sm-notify, default grace)'): planned handoff ${VM_HOST[$ACTIVE]} -> ${VM_HOST[$STANDBY]}" || return 1
    workload_start || return 1
    sleep 3
    failover_once handoff "$mode" || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME holder=$HOLDER resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S scope_mismatch=${SCOPE_MISMATCHES:--} rc=$rc load=$(load_avg)"
    verdict $rc
    return $rc
}
