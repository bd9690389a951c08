#!/bin/bash
# Scenario 1 (and s1, the same with the stock tools): hard failover.
#
# The workload runs on C and D; the active server's qemu is killed (power fencing); the standby
# activates (ours: `mmp-tool mount` or mmpd + mount, lockd-recover takeover; stock: kernel
# mount, sm-notify, default grace).
# Pass when:
#   - the new server's activate script succeeds and its VM still runs;
#   - the client's writes resume within 60 s of the takeover;
#   - lock-torture on C reports every lock held throughout and no I/O error (verdict pass);
#   - the probe on D was never granted a conflicting lock nor found a range free;
#   - the writer's file on the disk holds every acknowledged record, in order;
#   - NFSv4 (V4_WORKLOAD=1, the default): the v4.2 appender on C and the v4.1 one on D get no
#     error (a lost lock is EIO on the next write) and resume within 60 s, D's flock probe of
#     C's v4 file is never granted, both files are complete on the disk.
# Reported, not judged: "client writes resumed within 30 s of the kill" (the target).
# The killed VM is booted again as the standby when the next scenario starts.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_1() { scenario_hard ours; }
scenario_s1() { scenario_hard stock; }

scenario_hard() {
    local mode=$1 rc=0 killed
    SCEN_NAME=hard-$mode
    banner "scenario 1$([[ $mode == stock ]] && echo ' (stock tools: kernel mount, sm-notify, default grace)'): hard failover ${VM_HOST[$ACTIVE]} -> ${VM_HOST[$STANDBY]}, ${VM_HOST[$ACTIVE]} killed" || return 1
    workload_start || return 1
    sleep 3
    killed=$ACTIVE
    failover_once hard "$mode" || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    echo "  target: client writes resumed within 30 s of the kill: $RESUMED_S s $(awk -v r="$RESUMED_S" 'BEGIN { print (r != "-" && r + 0 <= 30) ? "(met)" : "(NOT met)" }')"
    result "$SCEN_NAME holder=$HOLDER fence_tag_bound_ms=$(fence_tag_bound_ms) resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S v4_grace=${V4GRACE_S:--} v42_resumed=${V4C_S:--} v41_resumed=${V4D_S:--} scope_mismatch=${SCOPE_MISMATCHES:--} stock=${LAB_STOCK:-plain} rc=$rc load=$(load_avg)"
    NEED_REBOOT=$killed
    verdict $rc
    return $rc
}
