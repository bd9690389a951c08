#!/bin/bash
# Scenario 9 (mmpd holder only): the active server's disks fail under load.
#
# The workload runs on C and D (NFSv3 and NFSv4 locks, fsynced appends). The active server's
# shared disks fail: its qemu detaches their host side (the human monitor's `drive_del`), so
# every request it sends to them from then on completes with an I/O error, as on a lost SAN
# path. Nobody fences it: its mmpd must see the area fail and fence it (the watchdog fence with
# softdog: no heartbeat for --fail-intervals, then no more petting; the watchdog resets the VM,
# which qemu -no-reboot turns into an exit). The standby is told to take over at once, without
# a fence confirmation: its mmpd claims the area only after the old holder's published
# self-fence bound (the tag in its block) has passed, so the takeover must not depend on the
# lab noticing the reset.
# Pass when:
#   - the old server's VM is reset by its watchdog, and before the new server's mmpd holds the
#     area (never two holders); the time from the fault to the reset is printed beside the
#     bound the holder published;
#   - the new server's activate script succeeds; the client's writes resume within 60 s;
#   - no lock lost: lock-torture on C has every lock held throughout (I/O errors allowed: the
#     old server answered COMMIT with the failing disk's error until its reset), D's probes
#     were never granted a conflicting lock nor found a range free, D's flock probe of C's
#     NFSv4 file never granted;
#   - the appenders (NFSv3 on C, NFSv4.2 on C, NFSv4.1 on D) get no error after the old
#     server's reset (+ 2 s for a reply in flight; a lost NFSv4 lock is EIO on the next write),
#     and every record they had acknowledged is on the disk, in order (records the old server
#     failed may be missing or leave a hole: verify-writer tolerant);
#   - `e2fsck -fn` of the shared disk on the host is clean (the journal the new server replayed).
# The failed VM is booted again as the standby when the next scenario starts.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_9() {
    local rc=0 failed=$ACTIVE
    SCEN_NAME=disk-fault
    T_SELF_FENCE=-
    banner "scenario 9: the shared disks of ${VM_HOST[$ACTIVE]} fail under load; its mmpd must fence it, ${VM_HOST[$STANDBY]} takes over" || return 1
    workload_start || return 1
    sleep 3
    failover_once diskfail ours || rc=1
    judge_self_fence "$failed" || rc=1
    # Writes the old server failed (it answered until its reset, replies still in flight).
    DISK_FAULT_UNTIL=$(echo "$(cat "$LAB/vm/$failed/exited" 2> /dev/null || now) + 2" | bc)
    sleep 3
    workload_stop
    show_locks_left
    judge_workload || rc=1
    judge_fsck || rc=1
    DISK_FAULT_UNTIL=
    result "$SCEN_NAME holder=$HOLDER fence_tag_bound_ms=$(fence_tag_bound_ms) self_fence=$T_SELF_FENCE resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S v42_resumed=${V4C_S:--} v41_resumed=${V4D_S:--} eio_c=$(jq -r '.eio // "-"' <<< "${TORTURE_JSON:-null}") rc=$rc load=$(load_avg)"
    NEED_REBOOT=$failed
    verdict $rc
    return $rc
}

# judge_self_fence NODE: NODE's VM (its disks failed at T_FAULT) must have been reset by its
# watchdog, before the new server's mmpd held the area. Sets T_SELF_FENCE (s from the fault).
judge_self_fence() {
    local old=$1 t_exit t_held i
    for ((i = 0; i < 300; i++)); do
        [[ -s $LAB/vm/$old/exited ]] && break
        sleep 0.1
    done
    t_exit=$(cat "$LAB/vm/$old/exited" 2> /dev/null)
    t_held=$(tl_find "${VM_HOST[$ACTIVE]} area held by mmpd")
    echo "  ${VM_HOST[$old]}'s console (the failing disk, mmpd's fence, the watchdog):"
    grep -aiE 'I/O error|softdog|watchdog|reboot|mmpd|EXT4-fs error|Buffer I/O' "$LAB/vm/$old/console.log" | head -4 | sed 's/^/    /' | cut -c1-200
    grep -aiE 'softdog|watchdog|reboot|mmpd' "$LAB/vm/$old/console.log" | tail -3 | sed 's/^/    /' | cut -c1-200
    if [[ -z $t_exit ]]; then
        echo "  FAIL: ${VM_HOST[$old]} still runs 30 s after its disks failed and the takeover (its mmpd did not fence it)"
        return 1
    fi
    T_SELF_FENCE=$(tl_sub "$t_exit" "$T_FAULT")
    echo "  self-fence: ${VM_HOST[$old]} reset by its watchdog $T_SELF_FENCE s after its disks failed (qemu exited; the bound its block published: $(fence_tag_bound_ms) ms from its last heartbeat)"
    if [[ -z $t_held ]]; then
        echo "  FAIL: the new server's mmpd never held the area"
        return 1
    fi
    echo "  the new server's mmpd held the area $(tl_sub "$t_held" "$T_FAULT") s after the fault: $(tl_sub "$t_held" "$t_exit") s after the old server's reset"
    if [[ $(echo "$t_exit < $t_held" | bc) != 1 ]]; then
        echo "  FAIL: the new server held the area while the old server still ran"
        return 1
    fi
}

# What the new server still holds once every client's locker stopped.
show_locks_left() {
    local t
    sleep 2
    t=$(vm_exec "$ACTIVE" locks-left)
    vm_wait "$ACTIVE" "$t" 30 && vm_out "$ACTIVE" "$t" | sed 's/^/  locks left on the server: /' | cut -c1-250
}
