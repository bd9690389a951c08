#!/bin/bash
# Scenario p3 (--manager pacemaker; ps3: the same with the stock agents): a planned move.
#
# `crm resource move nfs STANDBY` while C holds locks and writes: Pacemaker stops the group on
# the active server in reverse order (the floating IP first; ours: nfs-locks records the ledger
# a last time and releases the locks, mmp-fs unmounts and leaves the MMP block CLEAN; stock:
# exportfs unlock_on_stop, Filesystem unmounts) and starts it on the standby. The group is a
# group, so Pacemaker does not migrate mmp-fs (README: a migrating mmp-fs must stand outside
# the group): its start claims the CLEAN block with the normal claim.
# Pass when:
#   - the old server released the filesystem and the group's last member runs on the new server
#     within MOVE_LIMIT (600 s) of the move. Under TCG, four guests on two cores, each shell
#     agent's stop and start takes 10 to 100 s (the 05:31 run of ps3: the stock group's stops
#     221 s, nfsserver's alone 101 s; Filesystem's start 59 s): the bound catches a move that
#     hangs, not a slow one;
#   - the client's writes resume and the workload's verdicts of scenario 1 hold (no lost lock,
#     no conflicting grant, complete files, NFSv4 too).
# The row: move -> released on the old server, -> mounted on the new, -> group started,
# the client's longest pause (lock-torture's longest gap between two successful writes).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

MOVE_LIMIT=${LAB_MOVE_LIMIT:-600}

scenario_p3() { scenario_pcmk_move ours; }
scenario_ps3() { scenario_pcmk_move stock; }

scenario_pcmk_move() {
    local stack=$1 rc=0 old new t0 tw tg tu tm tr
    SCEN_NAME=pcmk-move-$stack
    banner "scenario $([[ $stack == ours ]] && echo p3 || echo ps3): Pacemaker ($stack agents), planned move of the group with crm resource move" || return 1
    pcmk_open "$stack" "$FENCE" || return 1
    old=$ACTIVE new=$STANDBY
    tw=$(vm_exec "$new" watch-recovery "$EXPECTED_LOCKS" $((MOVE_LIMIT + 60)))
    tg=$(vm_exec "$new" pcmk-wait-group "${VM_HOST[$new]}" "$MOVE_LIMIT")
    tu=$(vm_exec "$old" pcmk-watch-release "$MOVE_LIMIT")
    t0=$(now)
    tm=$(vm_exec "$old" pcmk-move "${VM_HOST[$new]}")
    tl "crm resource move nfs ${VM_HOST[$new]}"
    vm_wait "$old" "$tm" 60 || rc=1
    vm_wait "$old" "$tu" $((MOVE_LIMIT + 20)) || rc=1
    tl_guest "$old" "$tu"
    vm_wait "$new" "$tg" $((MOVE_LIMIT + 20)) || rc=1
    tl_guest "$new" "$tg"
    tr=$(tl_find "filesystem released")
    mark_writes_resumed "${tr:-$t0}" || rc=1
    vm_wait "$new" "$tw" $((MOVE_LIMIT + 80)) > /dev/null 2>&1
    tl_guest "$new" "$tw"
    vm_run "$new" 60 pcmk-clear || rc=1
    # Where the group runs now (on the old server still, if the move failed).
    pcmk_find_active "$new" 60 || rc=1
    pcmk_save_ops "$new"
    tl_print "$t0"
    sleep 3
    workload_stop
    judge_workload || rc=1
    # A stop that fails makes Pacemaker fence the old server: boot it again for what follows.
    if ! vm_alive "$old"; then
        echo "  FAIL: ${VM_HOST[$old]} was fenced during the move (a stop failed; its journal is in vm/$old/console.log)"
        rc=1
        NEED_REBOOT=$old
    fi
    p3_row "$t0" "$stack" "$rc"
    verdict $rc
    return $rc
}

p3_row() {
    local t0=$1 pause
    pause=$(jq -r '(.longest_io_gap_ms // 0) / 1000 | . * 100 | floor / 100' <<< "${TORTURE_JSON:-null}" 2> /dev/null)
    PCMK_STACK=$2
    echo "  phases (s from the move): released $(tl_sub "$(tl_find "filesystem released")" "$t0"), mounted $(tl_sub "$(tl_find "filesystem on")" "$t0"), group started $(tl_sub "$(tl_find "group started")" "$t0"); the client's longest pause ${pause:-?} s"
    result "$SCEN_NAME manager=pacemaker stack=$2 released=$(tl_sub "$(tl_find "filesystem released")" "$t0") mounted=$(tl_sub "$(tl_find "filesystem on")" "$t0") group=$(tl_sub "$(tl_find "group started")" "$t0") pause=${pause:-} rc=$3 load=$(load_avg)"
}
