#!/bin/bash
# Scenario p1 (--manager pacemaker; ps1: the same with the stock agents, stock.crm of lib/pcmk.sh,
# switched to in the same cluster): hard failover under Pacemaker with real fencing.
#
# The workload runs on C and D; the active server's qemu is killed (SIGKILL: the node dies
# without a word). Nothing from the lab tells the survivor: corosync loses the token, Pacemaker
# fences the dead node through fence_lab (the host's power switch, lib/fence.sh) and only then
# starts the group on the survivor (ours: mmp-fs, which finds the fence in Pacemaker's history
# and takes the fence-confirmed path; stock: Filesystem, the kernel's own MMP wait).
# Pass when:
#   - the dead server was fenced (fence_lab "off" answered ok) before the filesystem was mounted
#     on the survivor, and the group's last member runs on the survivor within 200 s of the kill;
#   - the client's writes resume within 60 s of the group's start;
#   - lock-torture on C reports every lock held throughout and no I/O error, the probe on D was
#     never granted a conflicting lock nor found a range free, the writer's file is complete;
#   - NFSv4: neither appender sees an error, D's flock probe is never granted, both files complete.
# p1w: the same with sbd fencing (sbd's poison pill on the sbd disk, qemu's i6300esb watchdog):
# kill -> fenced takes msgwait more.
# The row (RESULT and the table printed): kill -> fenced, -> mounted on the survivor, -> client's
# locked writes resumed, grace (lockd and v4, from the mount), locks lost, conflicting grants.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_p1() { scenario_pcmk_hard ours lab p1; }
scenario_ps1() { scenario_pcmk_hard stock lab ps1; }
scenario_p1w() { scenario_pcmk_hard ours sbd p1w; }

scenario_pcmk_hard() {
    local stack=$1 fence=$2 rc=0 old new t0 tw tg
    SCEN_NAME=pcmk-hard-$stack$([[ $fence == sbd ]] && echo -sbd)
    banner "scenario $3: Pacemaker ($stack agents, $fence fencing), hard failover: the active server killed, Pacemaker fences it and starts the group on the other" || return 1
    pcmk_open "$stack" "$fence" || return 1
    old=$ACTIVE new=$STANDBY
    tw=$(vm_exec "$new" watch-recovery "$EXPECTED_LOCKS" 240)
    tg=$(vm_exec "$new" pcmk-wait-group "${VM_HOST[$new]}" 200)
    t0=$(now)
    vm_kill "$old"
    tl "killed VM ${VM_HOST[$old]} (qemu SIGKILL; the cluster is not told)"
    vm_wait "$new" "$tg" 220 || rc=1
    tl_guest "$new" "$tg"
    pcmk_mark_fence "$old" "$t0" || rc=1
    mark_writes_resumed "$t0" || rc=1
    if [[ $V4_WORKLOAD == 1 ]]; then mark_v4_resumed "$t0" || rc=1; fi
    vm_wait "$new" "$tw" 260 > /dev/null 2>&1
    tl_guest "$new" "$tw"
    ACTIVE=$new STANDBY=$old
    tl_print "$t0"
    pcmk_row "$t0" "$new" "$stack" || rc=1
    pcmk_save_ops "$new"
    sleep 3
    workload_stop
    judge_workload || rc=1
    pcmk_result_row "$rc"
    NEED_REBOOT=$old
    verdict $rc
    return $rc
}

# pcmk_mark_fence OLD T0: Pacemaker's fence of OLD after T0 on the timeline, from the lab's
# fence log (fence_lab: the host's power-off; sbd: the poison pill delivered, msgwait passed).
pcmk_mark_fence() {
    local tf how
    tf=$(fence_time "${VM_HOST[$1]}" "$2")
    if [[ -z $tf ]]; then
        tl "no fence of ${VM_HOST[$1]} in the fence log"
        return 1
    fi
    how="fence_lab: the host powered it off"
    [[ $FENCE == sbd ]] && how="sbd's poison pill, msgwait passed"
    tl_at "$tf" host "fence off ${VM_HOST[$1]}: ok (Pacemaker's fence; $how)"
}

# pcmk_row T0 NEW STACK: the phases off the timeline (PCMK_* globals), and the check that the
# fence came before the mount. Returns 1 if it did not.
pcmk_row() {
    local t0=$1 new=${VM_HOST[$2]} t_f t_m t_g t_r t_nlm t_v4
    t_f=$(tl_find "fence off")
    t_m=$(tl_find "$new filesystem on")
    t_g=$(tl_find "$new group started")
    t_r=$(tl_find "writes resumed")
    t_nlm=$(tl_find "$new lockd grace over")
    t_v4=$(tl_find "$new v4 grace over")
    PCMK_STACK=$3
    PCMK_FENCED=$(tl_sub "$t_f" "$t0")
    PCMK_MOUNTED=$(tl_sub "$t_m" "$t0")
    PCMK_GROUP=$(tl_sub "$t_g" "$t0")
    PCMK_RESUMED=$(tl_sub "$t_r" "$t0")
    PCMK_NLM_GRACE=$(tl_sub "$t_nlm" "$t_m")
    PCMK_V4_GRACE=$(tl_sub "$t_v4" "$t_m")
    echo "  phases (s from the kill): fenced $PCMK_FENCED, mounted $PCMK_MOUNTED, group started $PCMK_GROUP, client's locked writes resumed $PCMK_RESUMED; grace after the mount: lockd $PCMK_NLM_GRACE, v4 $PCMK_V4_GRACE"
    if [[ -z $t_f || -z $t_m ]] || (($(echo "$t_m < $t_f" | bc))); then
        echo "  FAIL: the filesystem was mounted on $new before the dead server was fenced (or either is missing)"
        return 1
    fi
}

# pcmk_result_row RC [FIELD=VALUE...]: one table row per scenario and stack, after
# judge_workload (RESULT line in phases.txt too, with the extra fields).
pcmk_result_row() {
    local lost grants
    lost=$(jq -r '.locks_lost // "-"' <<< "${TORTURE_JSON:-null}" 2> /dev/null)
    grants=$(jq -r '.conflicting_grants // "-"' <<< "${PROBE_JSON:-null}" 2> /dev/null)
    [[ $V4_WORKLOAD == 1 ]] && grants="$grants+$(grep -c ' granted' "$LAB/vm/d/probe4.log")"
    printf '  | %-14s | %-6s | %7s | %7s | %8s | %5s / %-5s | %4s | %5s |\n' scenario stack fenced mounted resumed "lockd" "v4" lost grants
    printf '  | %-14s | %-6s | %7s | %7s | %8s | %5s / %-5s | %4s | %5s |\n' "$SCEN_NAME" "$PCMK_STACK" "$PCMK_FENCED" "$PCMK_MOUNTED" "$PCMK_RESUMED" "$PCMK_NLM_GRACE" "$PCMK_V4_GRACE" "$lost" "$grants"
    result "$SCEN_NAME manager=pacemaker stack=$PCMK_STACK fence=$FENCE fenced=$PCMK_FENCED mounted=$PCMK_MOUNTED group=$PCMK_GROUP resumed=$PCMK_RESUMED nlm_grace=$PCMK_NLM_GRACE v4_grace=$PCMK_V4_GRACE locks_lost=$lost grants=$grants token_ms=$PCMK_TOKEN ${*:2} rc=$1 load=$(load_avg)"
}
