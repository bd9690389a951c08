#!/bin/bash
# Scenario 5 (mmpd holder only): frozen holder.
#
# The active server hangs as a whole while the workload runs: its qemu is stopped (SIGSTOP, or
# with LAB_FREEZE=monitor the monitor's `stop`, which also stops the guest's clocks, as a
# hypervisor pause or a migration does). The other node takes over after the self-fence bound
# (the frozen node's block is stale and tagged), then the frozen node is continued: its watchdog
# (softdog, expired while it was stopped) must reset it before it serves or writes again.
# Pass when:
#   - scenario 1's criteria hold (takeover, lock-torture, probe, the writer's records);
#   - the continued VM is reset by its watchdog (qemu -no-reboot exits) within 30 s;
#   - with LAB_FREEZE=monitor, qemu's own count of the continued VM's writes to the shared disk
#     (`info blockstats`, polled until it exits) did not grow;
#   - `e2fsck -fn` of the shared disk on the host is clean (the new server holds it frozen
#     with fsfreeze meanwhile).
# With LAB_FREEZE=monitor it FAILS by design of any lease + watchdog fence (README.md).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_5() { scenario_frozen; }

scenario_frozen() {
    local rc=0 frozen=$ACTIVE p
    SCEN_NAME=frozen
    if [[ $HOLDER != mmpd ]]; then
        echo "lab.sh: scenario 5 needs --holder mmpd (the watchdog fence)" >&2
        return 1
    fi
    banner "scenario 5: frozen holder: ${VM_HOST[$ACTIVE]}'s qemu stopped (SIGSTOP), ${VM_HOST[$STANDBY]} takes over, then ${VM_HOST[$ACTIVE]} is continued: its watchdog must reset it" || return 1
    workload_start || return 1
    sleep 3
    p=$(vm_pid "$frozen")
    failover_once freeze ours || rc=1
    sleep 2
    continue_and_watch "$frozen" "$p" || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    judge_fsck || rc=1
    result "$SCEN_NAME holder=$HOLDER fence_tag_bound_ms=$(fence_tag_bound_ms) resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S reset_after_cont=${T_RESET:--} rc=$rc load=$(load_avg)"
    NEED_REBOOT=$frozen
    verdict $rc
    return $rc
}

# continue_and_watch NODE PID: continue the frozen VM, then wait up to 30 s for its watchdog to
# reset it, counting its writes to the shared disk meanwhile (LAB_FREEZE=monitor). Sets T_RESET
# and WRITES_AFTER (the count; empty without the monitor).
continue_and_watch() {
    local frozen=$1 p=$2 tc w0='' w w_last='' t_w='' t_end rc=0
    T_RESET='' WRITES_AFTER=''
    # Writes to the shared disk after the pause ended: qemu's count, before and while it runs.
    if freeze_by_monitor; then w0=$(mon_writes "$frozen"); fi
    tc=$(now)
    vm_continue "$frozen"
    if freeze_by_monitor; then
        log "continued ${VM_HOST[$frozen]} (monitor 'cont'; its shared-disk writes so far: ${w0:-?})"
    else
        log "continued ${VM_HOST[$frozen]} (SIGCONT)"
    fi
    t_end=$(($(date +%s) + 30))
    while [[ $(date +%s) -lt $t_end ]]; do
        kill -0 "$p" 2> /dev/null || break
        if [[ -n $w0 ]]; then
            w=$(mon_writes "$frozen")
            [[ -n $w ]] && { w_last=$w; t_w=$(dt "$tc"); }
        else
            sleep 0.1
        fi
    done
    if [[ -n $w0 && -n $w_last ]]; then
        WRITES_AFTER=$((w_last - w0))
        echo "  ${VM_HOST[$frozen]}'s writes to the shared disk after it was continued: $((w_last - w0)) (at least; last count $t_w s after cont)"
        if [[ $((w_last - w0)) -ne 0 ]]; then
            echo "  FAIL: the continued node wrote to the shared disk that ${VM_HOST[$ACTIVE]} has mounted, before its watchdog reset it"
            rc=1
        fi
    fi
    if kill -0 "$p" 2> /dev/null; then
        echo "  FAIL: ${VM_HOST[$frozen]} still runs 30 s after it was continued (its watchdog did not reset it)"
        return 1
    fi
    wait "$p" 2> /dev/null
    T_RESET=$(dt "$tc")
    echo "  ${VM_HOST[$frozen]} continued: its VM reset $T_RESET s later$([[ -n $w0 ]] && echo ' (up to 0.7 s late: the monitor poll)') (qemu -no-reboot exited); its console:"
    grep -aiE 'softdog|watchdog|reboot|EXT4|nfsd|mmp' "$LAB/vm/$frozen/console.log" | tail -8 | sed 's/^/    /' | cut -c1-200
    return $rc
}

# The shared filesystem after the hung node's return: frozen on the new server (journal
# flushed), checked read-only on the host.
judge_fsck() {
    local fsck frc rc=0
    vm_run "$ACTIVE" 60 fs-freeze || return 1
    fsck=$(e2fsck -fn "$LAB/shared.img" 2>&1)
    frc=$?
    vm_run "$ACTIVE" 60 fs-thaw || rc=1
    if [[ $frc -eq 0 ]]; then
        echo "  filesystem: e2fsck -fn clean ($(tail -1 <<< "$fsck"))"
    else
        echo "  FAIL filesystem: e2fsck -fn exit $frc:"
        head -20 <<< "$fsck" | sed 's/^/    /'
        rc=1
    fi
    return $rc
}
