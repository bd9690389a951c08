#!/bin/bash
# Scenario p9 (--manager pacemaker, the lab's migrate.crm): the target of a planned move by
# migration is killed mid-handoff.
#
# `crm resource move fs STANDBY` as in p8. Once the old server has released the filesystem (the
# unmount inside migrate_to; the offer to the new server follows), the new server's qemu is
# killed LAB_KILL_DELAY_DS tenths of a second later (default: random, 0 to 9.9 s: before the
# offer, during it, during migrate_from's claim, or after the new server's mount). Nothing
# tells the old server: Pacemaker loses the node, fences it, abandons the partial migration
# (pacemaker's scheduler: "Forcing recovery of fs because it can no longer migrate"), and
# recovers fs where it can run, on the old server, with a stop and a normal start. That start's
# MMP gate decides from the block alone: an open offer, or the dead target's claim, is a live
# block that it waits out; the fence-confirmed short path is never taken on a block with a
# handoff record (HANDOFF.md, "Why two nodes never both hold the device").
# Pass when:
#   - the killed server was fenced (fence_lab "off" answered ok), and the group runs on the old
#     server again within MOVE_LIMIT of the kill;
#   - the old server has the filesystem mounted and its kernel never saw another writer on the
#     MMP block (kmmpd's "multiply mounted");
#   - the workload's verdicts of scenario 1 hold (no lost lock, no conflicting grant, complete
#     files, NFSv4 too).
# The row: the kill (s after the release), kill -> fenced, -> mounted again on the old server,
# -> group back, -> client's writes resumed.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_p9() {
    local rc=0 old new t0 tu tm tw tg tk delay
    SCEN_NAME=pcmk-migrate-killed
    banner "scenario p9: Pacemaker (our agents, fs migrates), the migration's target killed mid-handoff" || return 1
    pcmk_open migrate lab || return 1
    old=$ACTIVE new=$STANDBY
    tu=$(vm_exec "$old" pcmk-watch-release "$MOVE_LIMIT")
    t0=$(now)
    tm=$(vm_exec "$old" pcmk-move "${VM_HOST[$new]}" fs)
    tl "crm resource move fs ${VM_HOST[$new]}"
    if ! vm_wait "$old" "$tu" $((MOVE_LIMIT + 20)); then
        echo "  FAIL: ${VM_HOST[$old]} never released the filesystem"
        vm_run "$old" 60 pcmk-clear fs
        verdict 1
        return 1
    fi
    tl_guest "$old" "$tu"
    # The group stopped before migrate_to: its restart here is what the watchers wait for.
    tw=$(vm_exec "$old" watch-recovery "$EXPECTED_LOCKS" $((MOVE_LIMIT + 120)))
    tg=$(vm_exec "$old" pcmk-wait-group "${VM_HOST[$old]}" "$MOVE_LIMIT")
    delay=$(awk -v r="${LAB_KILL_DELAY_DS:-$((RANDOM % 100))}" 'BEGIN { printf "%.1f", r / 10 }')
    sleep "$delay"
    tk=$(now)
    vm_kill "$new"
    tl "killed VM ${VM_HOST[$new]} $delay s after the release (qemu SIGKILL, mid-migration)"
    vm_wait "$old" "$tm" 180 > /dev/null 2>&1
    tl_guest "$old" "$tm"
    p9_recovered "$old" "$new" "$tk" "$tg" "$tw" || rc=1
    tl_print "$t0"
    sleep 3
    workload_stop
    judge_workload || rc=1
    p9_row "$tk" "$delay" "$rc"
    NEED_REBOOT=$new
    verdict $rc
    return $rc
}

# p9_recovered OLD NEW TK TG TW: NEW fenced after the kill at TK, the group back on OLD (TG, TW:
# OLD's pcmk-wait-group and watch-recovery), OLD the only writer; the move's constraint dropped
# (NEW is booted again before the next scenario).
p9_recovered() {
    local old=$1 new=$2 tk=$3 tg=$4 tw=$5 rc=0
    if fence_wait "${VM_HOST[$new]}" "$tk" 240; then
        pcmk_mark_fence "$new" "$tk"
    else
        echo "  FAIL: no fence of ${VM_HOST[$new]} within 240 s of the kill"
        rc=1
    fi
    vm_wait "$old" "$tg" $((MOVE_LIMIT + 20)) || rc=1
    tl_guest "$old" "$tg"
    mark_writes_resumed "$tk" || rc=1
    if [[ $V4_WORKLOAD == 1 ]]; then mark_v4_resumed "$tk" || rc=1; fi
    vm_wait "$old" "$tw" $((MOVE_LIMIT + 140)) > /dev/null 2>&1
    tl_guest "$old" "$tw"
    vm_run "$old" 60 pcmk-holder-check || rc=1
    vm_run "$old" 60 pcmk-clear fs || rc=1
    pcmk_find_active "$old" 60 || rc=1
    if [[ $ACTIVE != "$old" ]]; then
        echo "  FAIL: the group runs on ${VM_HOST[$ACTIVE]}, not on ${VM_HOST[$old]}"
        rc=1
    fi
    pcmk_save_ops "$old"
    pcmk_print_handoff_log "$old" 6
    return $rc
}

p9_row() {
    local tk=$1 new=${VM_HOST[$ACTIVE]} f m g r
    f=$(tl_sub "$(tl_find "fence off")" "$tk")
    m=$(tl_sub "$(tl_find "$new filesystem on")" "$tk")
    g=$(tl_sub "$(tl_find "$new group started")" "$tk")
    r=$(tl_sub "$(tl_find "writes resumed")" "$tk")
    echo "  phases (s from the kill, $2 s after the release): fenced $f, mounted again on $new $m, group back $g, writes resumed $r"
    result "$SCEN_NAME manager=pacemaker stack=migrate kill_after_release=$2 fenced=$f mounted=$m group=$g resumed=$r rc=$3 load=$(load_avg)"
}
