#!/bin/bash
# One failover of the NFS service from ACTIVE to STANDBY (sourced by lab.sh), the step that
# scenarios 1, 3, 4 and 5 are made of. The workload must be running.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

# failover_once KIND MODE: KIND hard (kill ACTIVE's qemu: power fencing), freeze (stop it, not
# fenced: scenario 5), diskfail (its shared disks fail: it must fence itself, scenario 9) or
# handoff (planned release); MODE ours or stock (the tools on the servers). Prints the timeline, the phases and the takeover's report; swaps ACTIVE and STANDBY.
# Returns 1 if a step failed.
failover_once() {
    local kind=$1 mode=$2 old=$ACTIVE new=$STANDBY t0 t_out ta tw rc=0
    tl_start "$SCEN_NAME"
    tw=$(vm_exec "$new" watch-recovery "$EXPECTED_LOCKS" 150)
    if [[ ${LAB_DIAG:-0} == 1 ]]; then vm_exec c net-watch > /dev/null; fi
    if [[ $HOLDER == mmpd ]]; then show_fence_tag; fi
    SCOPE_MISMATCHES=-
    if [[ $V4_WORKLOAD == 1 ]]; then scope_watch_on; fi
    t0=$(now)
    t_out=$t0
    case $kind in
    hard)
        vm_kill "$old"
        tl "killed VM ${VM_HOST[$old]} (qemu pid, power fencing)"
        ;;
    freeze) freeze_old "$old" ;;
    diskfail) fail_disks_old "$old" || { tl_print "$t0"; return 1; } ;;
    *)
        release_old "$old" "$mode" "$new" || { tl_print "$t0"; return 1; }
        # Clock starts when the old node's handoff script starts (not when the lab sent it);
        # writes go on until its floating IP goes down.
        t0=$(tl_find "${VM_HOST[$old]} deactivate start")
        # Writes go on until the old node stops nfsd: a write in flight when its floating IP
        # went down can still be acknowledged (seen: one 0.2 s after "floating IP down", which
        # read as "writes resumed" 5 s into a handoff). After "nfsd stopped" only the new
        # server can acknowledge one.
        t_out=$(tl_find "${VM_HOST[$old]} nfsd stopped")
        ;;
    esac
    # After a hard kill the old node is surely off (its qemu is gone): a cluster whose power
    # fence confirmed that lets the gate take the fence-confirmed path (LAB_FENCED=0: the full
    # MMP wait, as without fencing).
    if [[ $kind == hard && $mode == ours && ${LAB_FENCED:-1} == 1 ]]; then
        ta=$(vm_exec "$new" activate "$mode" --fenced "${VM_HOST[$old]}")
    elif [[ $kind == handoff && -n ${HANDOFF_NONCE:-} ]]; then
        ta=$(vm_exec "$new" activate "$mode" --handoff "$HANDOFF_NONCE")
    else
        ta=$(vm_exec "$new" activate "$mode")
    fi
    tl "${VM_HOST[$new]} told to take over"
    vm_wait "$new" "$ta" 180 || rc=1
    tl_guest "$new" "$ta"
    if [[ $kind == handoff && -n ${HANDOFF_NONCE:-} ]]; then
        # The old node confirms: the new node's kmmpd (or mmpd) writes the block.
        local tc
        tc=$(vm_exec "$old" handoff-confirm "$HANDOFF_NONCE")
        vm_wait "$old" "$tc" 60 || rc=1
        vm_out "$old" "$tc" | sed -n 's/^handoff confirm: /  handoff confirm: /p'
        tl_guest "$old" "$tc"
    fi
    mark_writes_resumed "$t_out" || rc=1
    if [[ $V4_WORKLOAD == 1 ]]; then
        mark_v4_resumed "$t_out" || rc=1
        scope_watch_judge "$mode" || rc=1
    fi
    # The watcher ends when locks are back and both graces are over (or at its time limit).
    vm_wait "$new" "$tw" 200 > /dev/null 2>&1
    tl_guest "$new" "$tw"
    if [[ ${LAB_DIAG:-0} == 1 ]]; then save_client_diag; fi
    ACTIVE=$new STANDBY=$old
    check_still_runs "$new" || rc=1
    if [[ $V4_WORKLOAD == 1 ]]; then
        local tn
        tn=$(vm_exec "$new" nfsd-log 4)
        vm_wait "$new" "$tn" 30 && vm_out "$new" "$tn" | sed "s/^/  ${VM_HOST[$new]} kernel: /"
    fi
    tl_print "$t0"
    print_phases "$t0" "$new"
    if [[ $mode == ours ]]; then report_takeover "$new" "$ta"; fi
    return $rc
}

# scope_watch_on, scope_watch_judge MODE: the NFSv4 clients C and D record the kernel's
# "server_scope mismatch detected" around the failover (guest scope-watch-start/-stop: NFS
# client debugging on meanwhile), the sign that a v4.1+ client will reclaim nothing. Ours
# starts nfsd under the one service scope on both servers (lockd-recover start-nfsd --scope):
# any mismatch fails. The stock drills report theirs (LAB_STOCK=plain: each server's own host
# name, so every failover to the other server is one; best: the resource-agents way, one
# scope). Sets SCOPE_MISMATCHES for the RESULT line.
scope_watch_on() {
    local n
    for n in c d; do vm_run "$n" 30 scope-watch-start > /dev/null || echo "  (client$n: no NFS client debugging: scope mismatches not recorded)"; done
}

scope_watch_judge() {
    local n t out count total=0
    for n in c d; do
        t=$(vm_exec "$n" scope-watch-stop)
        vm_wait "$n" "$t" 30 > /dev/null 2>&1
        out=$(vm_out "$n" "$t" 2> /dev/null)
        count=$(sed -n 's/^scope mismatches: //p' <<< "$out")
        total=$((total + ${count:-0}))
        if [[ ${count:-0} -gt 0 ]]; then grep "server_scope" <<< "$out" | head -2 | sed "s/^/  client$n kernel: /"; fi
    done
    SCOPE_MISMATCHES=$total
    echo "  NFSv4 clients' \"server_scope mismatch detected\" during the failover: $total"
    if [[ $1 == ours && $total -gt 0 ]]; then
        echo "  FAIL: the new server answered under another server scope: the v4.1+ clients reclaim nothing"
        return 1
    fi
}

# mmpd holder: what the next claim will see: does the holder's block carry a self-fence tag?
# Sets FENCE_TAG (JSON, for the RESULT line).
show_fence_tag() {
    local fj
    fj=$("$LAB/share/bin/mmp-tool" check --json --timeout 1 "$LAB/area.img" 2> /dev/null)
    FENCE_TAG=$(jq -c '.fence_tag' <<< "$fj" 2> /dev/null)
    echo "  before: the area's MMP block ($(jq -r '.last_update.node_name // .first_read.node_name // "?"' <<< "$fj" 2> /dev/null), check interval $(jq -r .check_interval <<< "$fj" 2> /dev/null) s) carries fence tag: ${FENCE_TAG:-?}"
}

# The whole node hangs, not fenced (LAB_FREEZE picks how: see vm_pause).
freeze_old() {
    local old=$1
    vm_pause "$old"
    if freeze_by_monitor; then
        tl "paused VM ${VM_HOST[$old]} (monitor 'stop': its clocks stop too; not fenced)"
    else
        tl "froze VM ${VM_HOST[$old]} (SIGSTOP of its qemu: the whole node hangs, not fenced)"
    fi
}

# The old node's shared disks fail (vm_fail_disks), not fenced by anyone: its mmpd must fence
# it. Sets T_FAULT; a watcher writes the time its qemu exits (the watchdog's reset, qemu
# -no-reboot) to $LAB/vm/OLD/exited.
fail_disks_old() {
    local old=$1
    rm -f "$LAB/vm/$old/exited"
    T_FAULT=$(now)
    vm_fail_disks "$old" || return 1
    tl "the shared disks of VM ${VM_HOST[$old]} fail (qemu drive_del: every request gets an I/O error; not fenced)"
    (
        while vm_alive "$old"; do sleep 0.1; done
        now > "$LAB/vm/$old/exited"
    ) &
}

# Planned handoff: the old node releases the service (deactivate MODE). With our tools (and
# LAB_HANDOFF=1, the default) it then offers the device to the new node (mmp-tool handoff) and
# HANDOFF_NONCE is set for the new node's gate; LAB_HANDOFF=0 leaves the block CLEAN (the
# normal claim on the new node).
release_old() {
    local old=$1 mode=$2 new=$3 tr rc=0
    local to=()
    HANDOFF_NONCE=
    [[ $mode == ours && ${LAB_HANDOFF:-1} == 1 ]] && to=(--to "${VM_HOST[$new]}")
    tl "planned handoff starts"
    tr=$(vm_exec "$old" deactivate "$mode" "${to[@]}")
    vm_wait "$old" "$tr" 120 || rc=1
    tl_guest "$old" "$tr"
    if [[ ${#to[@]} -gt 0 ]]; then
        HANDOFF_NONCE=$(vm_out "$old" "$tr" | sed -n 's/^handoff-nonce: //p' | tail -1)
        [[ -n $HANDOFF_NONCE ]] || { tl "no handoff nonce from ${VM_HOST[$old]}"; rc=1; }
    fi
    return $rc
}

# The client's first fsynced record under the lock after T_OUT, on the timeline (60 s limit).
mark_writes_resumed() {
    local res
    if res=$(wait_writer_resumed "$1" 60); then
        tl_at "$res" clientc "client writes resumed (first fsynced record under the lock)"
    else
        tl "client writes did NOT resume within 60 s of the takeover"
        return 1
    fi
}

# Each NFSv4 appender's first fsynced record after T_OUT (60 s limit), and nfsd's grace lines
# from the new server's kernel log.
mark_v4_resumed() {
    local n r i rc=0 vers
    for n in c d; do
        vers=$([[ $n == c ]] && echo 4.2 || echo 4.1)
        r=
        for ((i = 0; i < 600; i++)); do
            r=$(writer4_resumed_after $n "$1")
            [[ -n $r ]] && break
            sleep 0.1
        done
        if [[ -n $r ]]; then
            tl_at "$r" "client${n}" "NFSv$vers locked writes back"
        else
            tl "NFSv$vers locked writes on ${VM_HOST[$n]} did NOT come back within 60 s"
            rc=1
        fi
    done
    return $rc
}

# LAB_DIAG=1: stop C's socket watcher, keep its kernel log of the failover.
save_client_diag() {
    vm_exec c net-watch-stop > /dev/null
    local td
    td=$(vm_exec c dmesg 60)
    vm_wait c "$td" 30 && vm_out c "$td" > "$LAB/dmesg-c-$SCEN_NAME.txt"
}

# The new server's VM must still run (with mmpd, its watchdog may have reset it).
check_still_runs() {
    local new=$1
    vm_alive "$new" && return 0
    tl "the new server's VM exited (qemu: $(tail -1 "$LAB/vm/$new/qemu.log" 2> /dev/null); a watchdog reset?)"
    return 1
}

# Our tools' own reports from the activate script's output: lockd-recover takeover, mmpd, mmp-tool mount.
report_takeover() {
    local new=$1 ta=$2 tj mj
    tj=$(vm_out "$new" "$ta" | sed -n 's/^takeover: //p')
    if [[ -n $tj ]]; then
        jq -r '.reclaim.v4 // empty | "  lockd-recover takeover, NFSv4: grace ended by \(if .ended == "already-ended" then "the kernel, before takeover looked" elif .ended == "kernel" then "the kernel, \(.ended_after_ms) ms into the wait" elif .ended == "deadline" then "takeover at its deadline" else "nobody" end); clients recorded \(.expected | length), never reconnected \(.never_reconnected | length), without RECLAIM_COMPLETE \(.not_completed // [] | length)"' <<< "$tj" 2> /dev/null
        jq -r '"  lockd-recover takeover: notified \(.notify.notified) clients, failed \(.notify.failed), in \(.notify.elapsed_ms) ms; ledger locks \(.reclaim.expected // "-"), all held again after \(.reclaim.reclaimed_after_ms // "-") ms, missing \(.reclaim.missing // [] | length), grace ended: \(.reclaim.grace_ended != null)"' <<< "$tj" 2> /dev/null
        jq -r '.notify.clients[] | select(.status != "notified") | "  WARNING: takeover could not notify \(.host): \(.status): \(.detail)"' <<< "$tj" 2> /dev/null
    fi
    if [[ $HOLDER == mmpd ]]; then
        vm_out "$new" "$ta" | grep -E '^mmpd: .*(claimed|armed|fence)' | sed 's/^/  /' | cut -c1-300
    fi
    mj=$(vm_out "$new" "$ta" | sed -n 's/^mmp-tool mount: //p')
    [[ -z $mj ]] || jq -r '"  mmp-tool mount: \(.result), claim \(.claim_seconds) s, mount \(.mount_seconds) s, handoff window \(.handoff_window_ms) ms"' <<< "$mj" 2> /dev/null
}
