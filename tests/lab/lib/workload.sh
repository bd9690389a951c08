#!/bin/bash
# The client workload and its judgement (sourced by lab.sh). C runs lock-torture failover (4
# POSIX locks, write+fsync every 0.5 s) and guest/writer.pl (a flock-protected appender whose
# progress log $LAB/vm/c/writer.log is host-visible); D probes C's ranges for conflicting grants.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

# lock-torture's 4 adjacent ranges (one lock on the server) + the writer's; with the NFSv4
# workload, + the v4.2 writer's flock on C and the v4.1 writer's on D.
EXPECTED_LOCKS=2
# The NFSv4 workload (C: v4.2 appender; D: v4.1 appender and a flock probe of C's file): on
# unless a scenario turns it off (6: the OCF group serves NFSv3 only).
V4_WORKLOAD=${V4_WORKLOAD:-1}

# Start C's and D's workload; returns once the writer is appending.
# How long lock-torture's first locks may take. Under Pacemaker the group may have just started
# (a stack switch, a server booted again): new locks wait for the grace that nfsd's start began,
# 90 s with the stock agents (the kernel's default) and up to 240 s with ours (nfs-grace; it
# ends early once the ledger's locks are back). A ps3 run after a switch timed out at 60 s.
workload_start_limit() { if [[ $MANAGER == pacemaker ]]; then echo 300; else echo 60; fi; }

workload_start() {
    : > "$LAB/vm/c/writer.log"
    local t1 t2 t3
    t1=$(vm_exec c torture-start)
    vm_wait c "$t1" "$(workload_start_limit)" || return 1
    t2=$(vm_exec c writer-start)
    t3=$(vm_exec d probe-start)
    vm_wait c "$t2" 30 || return 1
    vm_wait d "$t3" 30 || return 1
    EXPECTED_LOCKS=2
    if [[ $V4_WORKLOAD == 1 ]]; then
        v4_workload_start || return 1
        EXPECTED_LOCKS=4
    fi
    # Steady state: the writer is appending.
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(grep -c ' ok ' "$LAB/vm/c/writer.log") -ge 3 ]] && return 0
        sleep 0.1
    done
    echo "lab: the writer on C makes no progress" >&2
    return 1
}

# The v4.2 appender on C and the v4.1 one on D, then D's flock probe of C's file; returns
# once both appenders append.
v4_workload_start() {
    local n t
    for n in c d; do
        : > "$LAB/vm/$n/writer4.log"
        t=$(vm_exec $n writer4-start)
        vm_wait $n "$t" 30 || return 1
    done
    : > "$LAB/vm/d/probe4.log"
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(grep -c ' ok ' "$LAB/vm/c/writer4.log") -ge 3 && $(grep -c ' ok ' "$LAB/vm/d/writer4.log") -ge 3 ]] && break
        sleep 0.1
    done
    if [[ $i -ge 300 ]]; then
        echo "lab: the NFSv4 writers make no progress" >&2
        for n in c d; do
            t=$(vm_exec $n writer4-state)
            vm_wait $n "$t" 30 && vm_out $n "$t" | sed "s/^/  ${VM_HOST[$n]} v4 appender: /" | cut -c1-200
        done
        return 1
    fi
    t=$(vm_exec d probe4-start "writer4-${VM_HOST[c]}.dat")
    vm_wait d "$t" 30
}

# Stops the v4 probe and appenders; sets WRITER4_ACKED_C/_D.
v4_workload_stop() {
    local n t
    t=$(vm_exec d probe4-stop)
    vm_wait d "$t" 30
    for n in c d; do
        t=$(vm_exec $n writer4-stop)
        vm_wait $n "$t" 30
        cp "$LAB/vm/$n/writer4.log" "$LAB/writer4-$n-$SCEN_NAME.log"
    done
    cp "$LAB/vm/d/probe4.log" "$LAB/probe4-$SCEN_NAME.log"
    WRITER4_ACKED_C=$(awk '$2 == "ok" { n = $3 } END { print n + 0 }' "$LAB/vm/c/writer4.log")
    WRITER4_ACKED_D=$(awk '$2 == "ok" { n = $3 } END { print n + 0 }' "$LAB/vm/d/writer4.log")
}

# Stop C's and D's workload; sets TORTURE_JSON PROBE_JSON WRITER_ACKED.
workload_stop() {
    local tw tt tp
    [[ $V4_WORKLOAD == 1 ]] && v4_workload_stop
    tw=$(vm_exec c writer-stop)
    vm_wait c "$tw" 30
    WRITER_ACKED=$(awk '$2 == "ok" { n = $3 } END { print n + 0 }' "$LAB/vm/c/writer.log")
    cp "$LAB/vm/c/writer.log" "$LAB/writer-$SCEN_NAME.log"
    # The probe first: once the holder has stopped, its ranges are free for anyone.
    tp=$(vm_exec d probe-stop)
    vm_wait d "$tp" 60
    tt=$(vm_exec c torture-stop)
    vm_wait c "$tt" 60
    TORTURE_JSON=$(vm_out c "$tt" | sed -n 's/^REPORT //p')
    PROBE_JSON=$(vm_out d "$tp" | sed -n 's/^REPORT //p')
}

# First writer record acknowledged after time T.
writer_resumed_after() { awk -v t="$1" '$2 == "ok" && $1 > t { print $1; exit }' "$LAB/vm/c/writer.log"; }
# wait_writer_resumed T LIMIT: prints that record's time, or fails after LIMIT seconds.
wait_writer_resumed() {
    local t=$1 limit=$2 i r
    for ((i = 0; i < limit * 10; i++)); do
        r=$(writer_resumed_after "$t")
        [[ -n $r ]] && { echo "$r"; return 0; }
        sleep 0.1
    done
    return 1
}

# Verdict lines from the reports and the writer's file; returns 1 on any violation.
judge_workload() {
    local bad=0
    judge_torture || bad=1
    judge_probe || bad=1
    judge_writer_file || bad=1
    if [[ $V4_WORKLOAD == 1 ]]; then judge_v4 || bad=1; fi
    return $bad
}

# NFSv4: no error on either appender (a lost lock shows as EIO on the next write), D's probe
# never granted C's lock, both files complete on the disk.
judge_v4() {
    local bad=0 n errs granted busy vers
    for n in c d; do
        vers=$([[ $n == c ]] && echo 4.2 || echo 4.1)
        errs=$(late_errors "$LAB/vm/$n/writer4.log")
        if [[ -n ${DISK_FAULT_UNTIL:-} ]]; then
            echo "  NFSv$vers appender (${VM_HOST[$n]}): $(grep -c ' ok ' "$LAB/vm/$n/writer4.log") records acknowledged, $errs errors after the old server's reset (EIO = lost lock)$(disk_fault_errors "$LAB/vm/$n/writer4.log")"
        else
            echo "  NFSv$vers appender (${VM_HOST[$n]}): $(grep -c ' ok ' "$LAB/vm/$n/writer4.log") records acknowledged, $errs errors (EIO = lost lock)$(grep -m1 ' err ' "$LAB/vm/$n/writer4.log" | sed 's/^/: first /')"
        fi
        [[ $errs -eq 0 ]] || bad=1
    done
    granted=$(grep -c ' granted' "$LAB/vm/d/probe4.log")
    busy=$(grep -c ' busy' "$LAB/vm/d/probe4.log")
    echo "  NFSv4 flock probe (D on C's file): $busy refused, $granted conflicting grants, $(grep -c ' err' "$LAB/vm/d/probe4.log") errors"
    [[ $granted -eq 0 && $busy -gt 0 ]] || bad=1
    judge_file "$WRITER4_ACKED_C" "writer4-${VM_HOST[c]}.dat" || bad=1
    judge_file "$WRITER4_ACKED_D" "writer4-${VM_HOST[d]}.dat" || bad=1
    return $bad
}

judge_file() {
    local t
    t=$(vm_exec "$ACTIVE" verify-writer "$1" "$2" "$(verify_mode)")
    if vm_wait "$ACTIVE" "$t" 60; then
        echo "  data ($2): $(vm_out "$ACTIVE" "$t" | tail -1)"
    else
        echo "  FAIL data ($2): $(vm_out "$ACTIVE" "$t" | tail -3)"
        return 1
    fi
}

# First v4 record acknowledged after T on client N's appender.
writer4_resumed_after() { awk -v t="$2" '$2 == "ok" && $1 > t { print $1; exit }' "$LAB/vm/$1/writer4.log"; }

# lock-torture on C: every lock held throughout, no I/O error (after a disk fault: I/O errors
# allowed, every lock still held throughout and exclusive).
judge_torture() {
    if [[ -z $TORTURE_JSON ]]; then
        echo "  FAIL: no lock-torture report from C"
        return 1
    fi
    echo "  $(jq -r '"lock-torture (C): verdict \(.verdict), locks held at end \(.locks_held_at_end)/\(.locks), lost \(.locks_lost), writes ok \(.writes_ok), ENOLCK \(.enolck), EIO \(.eio), write errors \(.write_errors), longest write gap \(.longest_io_gap_ms|floor) ms"' <<< "$TORTURE_JSON")"
    if [[ -n ${DISK_FAULT_UNTIL:-} ]]; then
        jq -e '.locks_lost == 0 and .locks_held_at_end == .locks and .conflicting_grants + .free_observations + .foreign_holder_observations == 0' <<< "$TORTURE_JSON" > /dev/null
    else
        [[ $(jq -r .verdict <<< "$TORTURE_JSON") == pass ]]
    fi
}

# Scenario 9 (a disk that failed under the old server) sets DISK_FAULT_UNTIL: the epoch until
# which a write may fail with the failing disk's error (the old server answered COMMIT with it
# until its watchdog reset it). A write error after it, from the new server, counts as before.
# late_errors LOG: the appender's errors after DISK_FAULT_UNTIL (all of them without a fault).
late_errors() { awk -v t="${DISK_FAULT_UNTIL:-0}" '$2 == "err" && $1 > t { n++ } END { print n + 0 }' "$1"; }
# disk_fault_errors LOG: ", N errors from the failing disk" for the verdict line (or nothing).
disk_fault_errors() {
    [[ -n ${DISK_FAULT_UNTIL:-} ]] || return 0
    awk -v t="$DISK_FAULT_UNTIL" '$2 == "err" && $1 <= t { n++; if (n == 1) { $1 = $2 = $3 = ""; sub(/^ +/, ""); first = $0 } }
        END { printf ", %d while its disk failed (allowed%s)\n", n, n ? "; first: " first : "" }' "$1"
}
# verify-writer's mode: strict (every record in order, nothing else), or after a disk fault
# tolerant (every acknowledged record present in order; unacknowledged ones may be missing or
# leave a hole).
verify_mode() { if [[ -n ${DISK_FAULT_UNTIL:-} ]]; then echo tolerant; else echo strict; fi; }

# The probe on D: never granted a conflicting lock nor found a range free.
judge_probe() {
    if [[ -z $PROBE_JSON ]]; then
        echo "  FAIL: no probe report from D"
        return 1
    fi
    echo "  $(jq -r '"probe (D, another client): \(.probe_rounds) rounds, conflicting grants \(.conflicting_grants), free observations \(.free_observations), probe errors \(.probe_errors)"' <<< "$PROBE_JSON")"
    [[ $(jq -r '.conflicting_grants + .free_observations' <<< "$PROBE_JSON") == 0 ]]
}

# The writer's file on the disk (read on the active server) holds every acknowledged record in order.
judge_writer_file() {
    local t errs
    if [[ -n ${DISK_FAULT_UNTIL:-} ]]; then
        errs=$(late_errors "$LAB/vm/c/writer.log")
        echo "  NFSv3 appender (C): $(grep -c ' ok ' "$LAB/vm/c/writer.log") records acknowledged, $errs errors after the old server's reset$(disk_fault_errors "$LAB/vm/c/writer.log")"
        [[ $errs -eq 0 ]] || return 1
    fi
    t=$(vm_exec "$ACTIVE" verify-writer "$WRITER_ACKED" writer.dat "$(verify_mode)")
    if vm_wait "$ACTIVE" "$t" 60; then
        echo "  data: $(vm_out "$ACTIVE" "$t" | tail -1)"
    else
        echo "  FAIL data: $(vm_out "$ACTIVE" "$t" | tail -3)"
        return 1
    fi
}
