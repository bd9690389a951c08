#!/bin/bash
# Scenario p7 (--manager pacemaker, our agents): a falsely fenced server returns.
#
# p2's split brain (the servers partitioned, the fence lies, the standby's start of fs refused by
# the MMP gate), then the partition heals while the fence still lies: the active server, which
# the standby's Pacemaker believes powered off, comes back into the membership still running the
# group, and each side's Pacemaker believes it fenced the other. What Pacemaker then does (merge
# the two partitions' views, react to the news of its own "fencing" with fence-reaction=stop,
# fence again, restart or move the group) is Pacemaker's; the fence cannot settle it (it lies),
# so the MMP gate is the only thing between the returning server and a second mount.
# Pass when, for P7_WATCH_S after the heal:
#   - the filesystem is never mounted on both servers at once (each server marks every change of
#     its mount; the host merges the two), and neither kernel's kmmpd sees another writer;
#   - every start of fs that Pacemaker makes while the other server has it mounted is refused
#     (counted from mmp-fs's "in use on another node" in each server's journal);
#   - the workload's verdicts hold (no lost lock, no error, D never granted a conflicting lock).
# Afterwards the fence tells the truth again, the server without the filesystem is powered off
# (the next banner boots it as the standby) and Pacemaker is started again on the holder if its
# own "fencing" stopped it.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

P7_WATCH_S=${LAB_P7_WATCH:-180}

scenario_p7() {
    local rc=0 old new t_heal ta tb n
    SCEN_NAME=pcmk-split-return
    banner "scenario p7: Pacemaker (our agents), a falsely fenced server returns: p2's split brain, then the partition heals while the fence still lies" || return 1
    pcmk_open ours lab || return 1
    old=$ACTIVE new=$STANDBY
    p2_split "$old" "$new" || rc=1
    ta=$(vm_exec "$old" pcmk-watch-merge "$P7_WATCH_S")
    tb=$(vm_exec "$new" pcmk-watch-merge "$P7_WATCH_S")
    net_partition_servers off || { echo "  FAIL: could not heal the partition"; rc=1; }
    t_heal=$(now)
    tl "partition healed, fence_lab still lies: ${VM_HOST[$old]}, falsely fenced, returns with the group"
    vm_wait "$old" "$ta" $((P7_WATCH_S + 60)) || rc=1
    vm_wait "$new" "$tb" $((P7_WATCH_S + 60)) || rc=1
    tl_guest "$old" "$ta"
    tl_guest "$new" "$tb"
    p7_one_mount "$old" "$ta" "$new" "$tb" || rc=1
    tl_print "$SPLIT_T0"
    for n in "$old:$ta" "$new:$tb"; do
        echo "  ${VM_HOST[${n%%:*}]} after the heal:"
        vm_out "${n%%:*}" "${n#*:}" | grep -v '^MARK ' | sed 's/^/    /' | cut -c1-200
    done
    awk -v t="$t_heal" '$1 > t { $1 = ""; print "  fence after the heal:" $0 }' "$LAB/fence.log"
    workload_stop
    judge_workload || rc=1
    result "$SCEN_NAME manager=pacemaker stack=ours refused_before_heal=$(p2_refused_after "$SPLIT_T0") refused_after_heal=$(($(p7_refusals "$old" "$ta") + $(p7_refusals "$new" "$tb"))) holder_at_end=$(p7_holder "$old" "$ta" "$new" "$tb") rc=$rc load=$(load_avg)"
    p7_restore "$old" "$ta" "$new" "$tb" || rc=1
    verdict $rc
    return $rc
}

# p7_mount_events NODE TAG: "EPOCH NODE 0|1" for every mount state NODE's watch marked.
p7_mount_events() {
    awk -v n="$1" '$1 == "MARK" && $3 ~ /^(mounted|unmounted)$/ && $4 == "here" { print $2, n, ($3 == "mounted") }' "$LAB/vm/$1/out/$2.out"
}

# p7_one_mount A TAGA B TAGB: fails when the two servers' marks show the filesystem mounted on
# both at once (a mark is at most one 0.5 s poll late, far less than any claim takes).
p7_one_mount() {
    local both
    both=$({ p7_mount_events "$1" "$2"; p7_mount_events "$3" "$4"; } | sort -n -k1,1 |
        awk '{ m[$2] = $3; s = 0; for (k in m) s += m[k]; if (s > 1) { print $1; exit } }')
    if [[ -n $both ]]; then
        echo "  FAIL: the filesystem was mounted on both servers at $both: SPLIT BRAIN"
        return 1
    fi
    echo "  the filesystem was never mounted on both servers at once"
}

# p7_refusals NODE TAG: mmp-fs's refusals NODE's watch counted.
p7_refusals() { sed -n 's/^MARK .* refusals=\([0-9]*\)$/\1/p' "$LAB/vm/$1/out/$2.out" | tail -1 | grep . || echo 0; }

# p7_holder A TAGA B TAGB: the lab node that had the filesystem mounted at the end (or none).
p7_holder() {
    if grep -q "^MARK .* mounted=1 " "$LAB/vm/$1/out/$2.out"; then
        echo "$1"
    elif grep -q "^MARK .* mounted=1 " "$LAB/vm/$3/out/$4.out"; then
        echo "$3"
    else
        echo none
    fi
}

# p7_restore A TAGA B TAGB: the fence tells the truth again; the server without the filesystem
# is powered off for the next banner to boot; Pacemaker runs again on the other (a no-op when
# it still runs) and the group is found there.
p7_restore() {
    local keep off t
    rm -f "$LAB/fence.lie"
    keep=$(p7_holder "$@")
    [[ $keep == none ]] && keep=$1
    if [[ $keep == "$1" ]]; then off=$3; else off=$1; fi
    t=$(now)
    vm_kill "$off"
    NEED_REBOOT=$off
    # The other server saw it leave the membership and fences it (truthfully now): booting it
    # again before that fence would have the fence kill the new VM.
    if fence_wait "${VM_HOST[$off]}" "$t" 120; then
        log "${VM_HOST[$keep]} fenced the powered-off ${VM_HOST[$off]}"
    else
        log "no fence of ${VM_HOST[$off]} within 120 s after its power-off"
    fi
    vm_run "$keep" 180 pcmk-start || return 1
    pcmk_find_active "$keep" 400
}
