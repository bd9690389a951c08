#!/bin/bash
# Scenario p3 (--manager pacemaker; ps3: the same with the stock agents; p8: by migration): a
# planned move.
#
# `crm resource move nfs STANDBY` while C holds locks and writes: Pacemaker stops the group on
# the active server in reverse order (the floating IP first; ours: nfs-locks records the ledger
# a last time and releases the locks, mmp-fs unmounts and leaves the MMP block CLEAN; stock:
# exportfs unlock_on_stop, Filesystem unmounts) and starts it on the standby. The group is a
# group, so Pacemaker does not migrate mmp-fs (README: a migrating mmp-fs must stand outside
# the group): its start claims the CLEAN block with the normal claim.
#
# p8, the planned move by migration (the handoff of HANDOFF.md under Pacemaker): the lab's
# migrate.crm (fs outside the group, allow-migrate=true, the group ordered after and colocated
# with fs), `crm resource move fs STANDBY`. Pacemaker stops the group on the old server, runs
# fs's migrate_to there (the unmount, then the offer naming the new server, with its nonce) and
# migrate_from on the new server (the MMP gate with the offer's nonce: no full wait), then
# starts the group there. Passes as p3, and the new server's history of fs must end in a
# successful migrate_from (not a start: a failed migration is recovered with a stop and a
# normal start). The row adds migrate_to's and migrate_from's run times.
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
scenario_p8() { scenario_pcmk_move migrate; }

declare -A P3_ID=([ours]=p3 [stock]=ps3 [migrate]=p8)

scenario_pcmk_move() {
    local stack=$1 rc=0 old new t0 tw tg tu tm tr rsc=nfs
    [[ $stack == migrate ]] && rsc=fs
    P8_TO_MS='' P8_FROM_MS=''
    SCEN_NAME=pcmk-move-$stack
    banner "scenario ${P3_ID[$stack]}: Pacemaker ($stack agents), planned move with crm resource move $rsc" || return 1
    pcmk_open "$stack" "$FENCE" || return 1
    old=$ACTIVE new=$STANDBY
    tw=$(vm_exec "$new" watch-recovery "$EXPECTED_LOCKS" $((MOVE_LIMIT + 60)))
    tg=$(vm_exec "$new" pcmk-wait-group "${VM_HOST[$new]}" "$MOVE_LIMIT")
    tu=$(vm_exec "$old" pcmk-watch-release "$MOVE_LIMIT")
    t0=$(now)
    tm=$(vm_exec "$old" pcmk-move "${VM_HOST[$new]}" "$rsc")
    tl "crm resource move $rsc ${VM_HOST[$new]}"
    # crm_resource --move only adds the constraint, but under TCG on a loaded host (load 11-18,
    # the 13:06 run of p3) it took more than 60 s to return.
    vm_wait "$old" "$tm" 180 || rc=1
    vm_wait "$old" "$tu" $((MOVE_LIMIT + 20)) || rc=1
    tl_guest "$old" "$tu"
    vm_wait "$new" "$tg" $((MOVE_LIMIT + 20)) || rc=1
    tl_guest "$new" "$tg"
    tr=$(tl_find "filesystem released")
    mark_writes_resumed "${tr:-$t0}" || rc=1
    vm_wait "$new" "$tw" $((MOVE_LIMIT + 80)) > /dev/null 2>&1
    tl_guest "$new" "$tw"
    vm_run "$new" 60 pcmk-clear "$rsc" || rc=1
    # Where the group runs now (on the old server still, if the move failed).
    pcmk_find_active "$new" 60 || rc=1
    pcmk_save_ops "$new"
    if [[ $stack == migrate ]]; then p8_migrated "$old" "$new" || rc=1; fi
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
    local mig="" to from
    if [[ $2 == migrate ]]; then
        to=$(p8_secs "${P8_TO_MS:-}") from=$(p8_secs "${P8_FROM_MS:-}")
        echo "  migrate_to $to s (old server: stop, offer), migrate_from $from s (new server: MMP gate with the nonce, mount)"
        mig="migrate_to=$to migrate_from=$from "
    fi
    result "$SCEN_NAME manager=pacemaker stack=$2 ${mig}released=$(tl_sub "$(tl_find "filesystem released")" "$t0") mounted=$(tl_sub "$(tl_find "filesystem on")" "$t0") group=$(tl_sub "$(tl_find "group started")" "$t0") pause=${pause:-} rc=$3 load=$(load_avg)"
}

# p8: Pacemaker migrated fs, the planned handoff. The new server's history of fs ends in a
# successful migrate_from, not a start (a failed migrate_to or migrate_from is recovered with a
# stop and a normal start, the full wait); P8_TO_MS, P8_FROM_MS: their run times (the old
# server's stop and offer; the new server's MMP gate with the offer's nonce and its mount). The
# agents' own lines about the offer are printed from both journals.
p8_migrated() {
    local old=$1 new=$2 ops="$LAB/pcmk-ops-$SCEN_NAME.txt" from n
    from=$(p8_fs_ops "${VM_HOST[$new]}" < "$ops")
    P8_TO_MS=$(p8_fs_ops "${VM_HOST[$old]}" < "$ops" | sed -n 's/.*migrate_to:.*exec-time="\([0-9]*\)ms".*/\1/p' | tail -1)
    P8_FROM_MS=$(sed -n 's/.*migrate_from:.*exec-time="\([0-9]*\)ms".*/\1/p' <<< "$from" | tail -1)
    for n in "$old" "$new"; do pcmk_print_handoff_log "$n" 4; done
    if ! grep -q "migrate_from:.*rc=0 (ok)" <<< "$from"; then
        echo "  FAIL: Pacemaker did not migrate fs to ${VM_HOST[$new]}: no successful migrate_from in its history ($ops):"
        printf '%s\n' "$from" | sed 's/^/    /'
        return 1
    fi
    echo "  fs migrated: migrate_to ${P8_TO_MS:-?} ms on ${VM_HOST[$old]}, migrate_from ${P8_FROM_MS:-?} ms on ${VM_HOST[$new]}"
}

# p8_fs_ops NODE < OPS: the lines of fs's operations on NODE in crm_mon's operation history.
p8_fs_ops() {
    awk -v node="* Node: $1:" '
        index($0, "* Node: ") { on = index($0, node) > 0; fs = 0; next }
        on && /^    \* / { fs = ($2 == "fs:"); next }
        on && fs'
}

p8_secs() { if [[ -n ${1:-} ]]; then awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; else echo "?"; fi; }

# pcmk_print_handoff_log NODE N: NODE's last N journal lines about a handoff (p8, p9).
pcmk_print_handoff_log() {
    local t
    t=$(vm_exec "$1" pcmk-handoff-log "$2")
    vm_wait "$1" "$t" 30 > /dev/null 2>&1
    echo "  ${VM_HOST[$1]}'s journal on the handoff:"
    vm_out "$1" "$t" 2> /dev/null | sed 's/^/    /'
}
