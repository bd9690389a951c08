#!/bin/bash
# Scenario p6 (--manager pacemaker, our agents): the fence fails.
#
# The active server's qemu is killed while the power switch is gone ($LAB/fence.dead: the host
# answers no fence request; fence_lab times out after 40 s and fails). Pacemaker must not start
# the group on the survivor without a successful fence, however long that takes; once the switch
# works again (the file removed) its next attempt succeeds and the group starts.
# Pass when:
#   - for HOLD_S (90 s) after the kill the survivor never mounts the filesystem, and the host's
#     fence log shows Pacemaker's fence requests going unanswered;
#   - after the repair the dead server is fenced, then the filesystem mounted (in that order),
#     the group runs on the survivor within 300 s, and the workload's verdicts hold.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

HOLD_S=90

scenario_p6() {
    local rc=0 old new t0 th tg tw tr n
    SCEN_NAME=pcmk-fence-fails
    banner "scenario p6: Pacemaker (ours agents), the fence fails: the active server killed while the power switch answers nothing; the group must stay stopped until a fence succeeds" || return 1
    pcmk_open ours lab || return 1
    old=$ACTIVE new=$STANDBY
    touch "$LAB/fence.dead"
    th=$(vm_exec "$new" pcmk-hold-stopped "$HOLD_S")
    tw=$(vm_exec "$new" watch-recovery "$EXPECTED_LOCKS" $((HOLD_S + 300)))
    t0=$(now)
    vm_kill "$old"
    tl "killed VM ${VM_HOST[$old]}; the power switch answers no fence request"
    vm_wait "$new" "$th" $((HOLD_S + 20)) || rc=1
    tl_guest "$new" "$th"
    n=$(grep -c " off ${VM_HOST[$old]} -> no answer" "$LAB/fence.log")
    echo "  ${VM_HOST[$new]} kept the group stopped for $HOLD_S s; Pacemaker's unanswered fence requests: $n"
    ((n > 0)) || { echo "  FAIL: Pacemaker never asked to fence ${VM_HOST[$old]}"; rc=1; }
    tr=$(now)
    tg=$(vm_exec "$new" pcmk-wait-group "${VM_HOST[$new]}" 300)
    rm -f "$LAB/fence.dead"
    tl "power switch repaired"
    vm_wait "$new" "$tg" 320 || rc=1
    tl_guest "$new" "$tg"
    pcmk_mark_fence "$old" "$tr" || rc=1
    ACTIVE=$new STANDBY=$old
    mark_writes_resumed "$tr" || rc=1
    vm_wait "$new" "$tw" 320 > /dev/null 2>&1
    tl_guest "$new" "$tw"
    tl_print "$t0"
    pcmk_row "$t0" "$new" ours || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    pcmk_result_row "$rc" "hold_s=$HOLD_S unanswered_fences=$n"
    NEED_REBOOT=$old
    verdict $rc
    return $rc
}
