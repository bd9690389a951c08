#!/bin/bash
# Scenario 4: rounds. N hard failovers (--rounds, default 10), alternating A -> B -> A ...,
# with the workload running throughout; the killed node is rebooted as the standby after each
# round. One RESULT line per round.
# Pass when every round passes scenario 1's takeover checks (activate succeeds, the new VM still
# runs, writes resume within 60 s of the takeover), every reboot succeeds, and at the end
# scenario 1's workload checks hold over all the rounds (lock-torture pass, no conflicting grant
# or free range seen by the probe, every acknowledged record in order on the disk).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_4() { scenario_rounds "$rounds"; }

scenario_rounds() {
    local rounds=$1 rc=0 i killed
    SCEN_NAME=rounds
    banner "scenario 4: $rounds alternating hard failovers with the client workload running throughout" || return 1
    workload_start || return 1
    sleep 3
    for ((i = 1; i <= rounds; i++)); do
        echo "--- round $i: ${VM_HOST[$ACTIVE]} -> ${VM_HOST[$STANDBY]}"
        killed=$ACTIVE
        SCEN_NAME=round$i
        failover_once hard ours || { rc=1; echo "  round $i FAILED"; }
        result "round$i holder=$HOLDER fence_tag_bound_ms=$(fence_tag_bound_ms) resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S load=$(load_avg)"
        vm_reboot_server "$killed" || { rc=1; break; }
    done
    SCEN_NAME=rounds
    workload_stop
    judge_workload || rc=1
    echo "  per round (kill -> writes resumed, s): $(awk '/^RESULT round/ { for (i = 3; i <= NF; i++) if ($i ~ /^resumed=/) { sub(/resumed=/, "", $i); printf "%s ", $i } }' "$LAB/phases.txt")"
    verdict $rc
    return $rc
}
