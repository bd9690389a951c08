#!/bin/bash
# Scenario p5 (--manager pacemaker, our agents): a fenced server comes back.
#
# Run after a scenario that fenced a server (p1, p4, p1w, p4w): the banner boots it again and it
# rejoins the cluster as the standby while the other server holds the group. Pacemaker must
# not start the group there (stickiness keeps it where it runs), and if anything starts the
# filesystem there anyway (here: `crm_resource --force-start --resource fs`, the agent's start
# run by hand, as an administrator or a confused script would) the MMP gate must refuse it:
# the holder's kmmpd keeps writing the MMP block.
# Pass when:
#   - the group still runs on the holder after the returning server rejoined;
#   - the forced start on the returning server fails with mmp-fs's "in use on another node"
#     and the filesystem is not mounted there;
#   - the holder still has the filesystem mounted and its kernel never saw another writer
#     (kmmpd's "multiply mounted"); the workload's verdicts hold.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_p5() {
    local rc=0 holder t t0
    SCEN_NAME=pcmk-return
    banner "scenario p5: Pacemaker (ours agents), a fenced server returns: it rejoins while the other holds the group, then its filesystem is started there by hand" || return 1
    pcmk_open ours "$FENCE" || return 1
    holder=$ACTIVE
    t0=$(now)
    pcmk_find_active "$holder" 60 || rc=1
    if [[ $ACTIVE != "$holder" ]]; then
        echo "  FAIL: the group moved to ${VM_HOST[$ACTIVE]} when ${VM_HOST[$STANDBY]} rejoined"
        rc=1
    fi
    t=$(vm_exec "$STANDBY" pcmk-force-refused)
    tl "crm_resource --force-start --resource fs on ${VM_HOST[$STANDBY]}"
    if vm_wait "$STANDBY" "$t" 240; then
        echo "  ${VM_HOST[$STANDBY]}: the forced start was refused:"
        vm_out "$STANDBY" "$t" | grep -v '^MARK' | tail -4 | sed 's/^/    /' | cut -c1-240
    else
        rc=1
    fi
    tl_guest "$STANDBY" "$t"
    vm_run "$ACTIVE" 60 pcmk-holder-check || rc=1
    tl_print "$t0"
    sleep 3
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME manager=pacemaker refused_after=$(tl_sub "$(tl_find "force-start refused")" "$(tl_find "force-start --resource")") rc=$rc load=$(load_avg)"
    verdict $rc
    return $rc
}
