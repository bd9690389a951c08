#!/bin/bash
# The client workload and its judgement (sourced by lab.sh). C runs lock-torture failover (4
# POSIX locks, write+fsync every 0.5 s) and guest/writer.pl (a flock-protected appender whose
# progress log $LAB/vm/c/writer.log is host-visible); D probes C's ranges for conflicting grants.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

# lock-torture's 4 adjacent ranges (one lock on the server) + the writer's.
EXPECTED_LOCKS=2

# Start C's and D's workload; returns once the writer is appending.
workload_start() {
    : > "$LAB/vm/c/writer.log"
    local t1 t2 t3
    t1=$(vm_exec c torture-start)
    vm_wait c "$t1" 60 || return 1
    t2=$(vm_exec c writer-start)
    t3=$(vm_exec d probe-start)
    vm_wait c "$t2" 30 || return 1
    vm_wait d "$t3" 30 || return 1
    # Steady state: the writer is appending.
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(grep -c ' ok ' "$LAB/vm/c/writer.log") -ge 3 ]] && return 0
        sleep 0.1
    done
    echo "lab: the writer on C makes no progress" >&2
    return 1
}

# Stop C's and D's workload; sets TORTURE_JSON PROBE_JSON WRITER_ACKED.
workload_stop() {
    local tw tt tp
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
    return $bad
}

# lock-torture on C: every lock held throughout, no I/O error.
judge_torture() {
    if [[ -z $TORTURE_JSON ]]; then
        echo "  FAIL: no lock-torture report from C"
        return 1
    fi
    echo "  $(jq -r '"lock-torture (C): verdict \(.verdict), locks held at end \(.locks_held_at_end)/\(.locks), lost \(.locks_lost), writes ok \(.writes_ok), ENOLCK \(.enolck), EIO \(.eio), longest write gap \(.longest_io_gap_ms|floor) ms"' <<< "$TORTURE_JSON")"
    [[ $(jq -r .verdict <<< "$TORTURE_JSON") == pass ]]
}

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
    local t
    t=$(vm_exec "$ACTIVE" verify-writer "$WRITER_ACKED")
    if vm_wait "$ACTIVE" "$t" 60; then
        echo "  data: $(vm_out "$ACTIVE" "$t" | tail -1)"
    else
        echo "  FAIL data: $(vm_out "$ACTIVE" "$t" | tail -3)"
        return 1
    fi
}
