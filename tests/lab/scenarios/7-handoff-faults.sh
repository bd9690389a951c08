#!/bin/bash
# Scenarios 7 and 8 (ours): a planned handoff that does not complete, under NFS load with locks
# (HANDOFF.md's rollback, and fault cases 1 and 7: the target dies during the handoff).
#
# 7, rolled back: the active server releases the service and offers the device to the standby
#   (`deactivate ours --to`), then takes it back (`mmp-tool handoff --rollback`) before the
#   standby claims; the standby, told late, claims with the nonce: refused (the block is CLEAN
#   again: "no_offer", naming the rolled-back handoff), nothing mounted; the active server takes its service back (a normal activate).
# 8, target killed: the standby starts its claim with the nonce and its VM is killed 0-4.9 s
#   later (before, during or after its claim write or its mount: the scenario prints where);
#   the source's confirm must be refused (the target's holder never writes), its rollback must
#   succeed (at once if the target had not claimed, after the full wait if it had), and the
#   source takes its service back.
# Pass when those steps end as said and the workload's verdicts hold (no lost lock, no error,
# D never granted a conflicting lock, every acknowledged record on the disk); the client's
# writes resume within 60 s of the source's takeback.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_7() {
    local rc=0 old=$ACTIVE new=$STANDBY n ta tk t0 t_out
    handoff_open handoff-rollback "scenario 7: planned handoff ${VM_HOST[$old]} -> ${VM_HOST[$new]} rolled back before the target claims; the target's claim with the nonce must then be refused" || return 1
    n=$HANDOFF_NONCE t0=$H_T0 t_out=$H_TOUT
    tk=$(vm_exec "$old" handoff-rollback "$n")
    vm_wait "$old" "$tk" 120 || rc=1
    handoff_step_out "$old" "$tk"
    [[ $(handoff_rollback_path "$old" "$tk") == fast ]] || { echo "  FAIL: the rollback before any claim did not take the fast path"; rc=1; }
    ta=$(vm_exec "$new" activate ours --handoff "$n")
    tl "${VM_HOST[$new]} told to take over with the rolled-back nonce"
    if vm_wait "$new" "$ta" 120 2> /dev/null; then
        echo "  FAIL: ${VM_HOST[$new]} took over with a nonce the source had rolled back"
        rc=1
    fi
    tl_guest "$new" "$ta"
    vm_out "$new" "$ta" | sed -n 's/^mmp-tool mount: /  target: mmp-tool mount: /p' | cut -c1-240
    # Refused with nothing mounted: the fast rollback left the block CLEAN ("no_offer", naming
    # the rolled-back handoff), or the record still says rolled back ("rolled_back").
    vm_out "$new" "$ta" | grep -Eq '^mmp-tool mount: .*"mounted":false,"result":"(no_offer|rolled_back)"' ||
        { echo "  FAIL: the target's claim was not refused (no offer / rolled back)"; rc=1; }
    handoff_takeback "$old" "$t_out" || rc=1
    tl_print "$t0"
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME holder=$HOLDER rollback=$(handoff_rollback_path "$old" "$tk") resumed=$(tl_sub "$(tl_find "writes resumed")" "$t0") rc=$rc load=$(load_avg)"
    verdict $rc
    return $rc
}

scenario_8() {
    local rc=0 old=$ACTIVE new=$STANDBY n ta tc tk t0 t_out delay
    handoff_open handoff-target-killed "scenario 8: planned handoff ${VM_HOST[$old]} -> ${VM_HOST[$new]}, the target's VM killed during its claim; confirm must be refused and the rollback succeed" || return 1
    n=$HANDOFF_NONCE t0=$H_T0 t_out=$H_TOUT
    ta=$(vm_exec "$new" activate ours --handoff "$n")
    tl "${VM_HOST[$new]} told to take over with the nonce"
    handoff_wait_mark "$new" "$ta" "activate start" 60 || rc=1
    delay=$(awk -v r="${LAB_KILL_DELAY_DS:-$((RANDOM % 50))}" 'BEGIN { printf "%.1f", r / 10 }')
    sleep "$delay"
    vm_kill "$new"
    NEED_REBOOT=$new
    tl "killed VM ${VM_HOST[$new]} ${delay} s into its activate"
    tl_guest "$new" "$ta"
    vm_out "$new" "$ta" | sed -n 's/^mmp-tool mount: /  target (before the kill): mmp-tool mount: /p' | cut -c1-240
    tc=$(vm_exec "$old" handoff-confirm "$n")
    if vm_wait "$old" "$tc" 90 2> /dev/null; then
        echo "  FAIL: the source confirmed a handoff to a target that is dead"
        rc=1
    fi
    vm_out "$old" "$tc" | sed -n 's/^handoff confirm: /  source: handoff confirm: /p' | cut -c1-240
    tk=$(vm_exec "$old" handoff-rollback "$n")
    vm_wait "$old" "$tk" 180 || rc=1
    handoff_step_out "$old" "$tk"
    handoff_takeback "$old" "$t_out" || rc=1
    tl_print "$t0"
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME holder=$HOLDER kill_after=$delay target_mounted=$(handoff_target_mounted "$new" "$ta") rollback=$(handoff_rollback_path "$old" "$tk") resumed=$(tl_sub "$(tl_find "writes resumed")" "$t0") rc=$rc load=$(load_avg)"
    verdict $rc
    return $rc
}

# handoff_open NAME BANNER: the scenario's banner, the workload, its timeline, then the active
# server's release with the offer to the standby (release_old). Sets HANDOFF_NONCE, H_T0 (the
# source's deactivate start) and H_TOUT (its nfsd stopped: writes after it are the next
# server's). Returns 1 when any of it failed (no nonce: nothing to roll back or claim; the
# workload is stopped again).
handoff_open() {
    SCEN_NAME=$1
    banner "$2" || return 1
    workload_start || return 1
    sleep 3
    tl_start "$SCEN_NAME"
    release_old "$ACTIVE" ours "$STANDBY" || { workload_stop; return 1; }
    H_T0=$(tl_find "${VM_HOST[$ACTIVE]} deactivate start")
    H_TOUT=$(tl_find "${VM_HOST[$ACTIVE]} nfsd stopped")
}

# handoff_wait_mark NODE TAG TEXT LIMIT: until NODE's command TAG has marked TEXT.
handoff_wait_mark() {
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        grep -q "^MARK .* $3" "$LAB/vm/$1/out/$2.out" 2> /dev/null && return 0
        sleep 0.1
    done
    echo "  FAIL: ${VM_HOST[$1]} did not mark '$3' within $4 s"
    return 1
}

# The source's rollback or confirm line, on the timeline and printed.
handoff_step_out() {
    tl_guest "$1" "$2"
    vm_out "$1" "$2" | sed -n 's/^handoff \(rollback\|confirm\): /  source: handoff \1: /p' | cut -c1-240
}

handoff_rollback_path() { jq -r '.rollback_path // "none"' <<< "$(sed -n 's/^handoff rollback: exit [0-9]* //p' "$LAB/vm/$1/out/$2.out")" 2> /dev/null || echo none; }

# Whether the killed target had mounted (its mark, from what its VM wrote before the kill).
# Whether it had written its claim shows in the rollback's path: fast (no claim) or after the
# full wait (its claim or holder was on the block).
handoff_target_mounted() {
    if grep -q '^MARK .* mounted$' "$LAB/vm/$1/out/$2.out" 2> /dev/null; then echo yes; else echo no; fi
}

# handoff_takeback OLD T_OUT: the source takes its service back with a normal activate (the
# rollback left the block CLEAN under its name); the client's writes must resume after T_OUT.
handoff_takeback() {
    local old=$1 tw ta rc=0
    tw=$(vm_exec "$old" watch-recovery "$EXPECTED_LOCKS" 150)
    ta=$(vm_exec "$old" activate ours)
    tl "${VM_HOST[$old]} takes its service back"
    vm_wait "$old" "$ta" 180 || rc=1
    tl_guest "$old" "$ta"
    mark_writes_resumed "$2" || rc=1
    if [[ $V4_WORKLOAD == 1 ]]; then mark_v4_resumed "$2" || rc=1; fi
    vm_wait "$old" "$tw" 200 > /dev/null 2>&1
    tl_guest "$old" "$tw"
    check_still_runs "$old" || rc=1
    return $rc
}
