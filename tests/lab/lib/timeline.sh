#!/bin/bash
# Timelines (sourced by lab.sh): one file per scenario, $LAB/timeline-NAME.txt, of lines
# "EPOCH WHO TEXT" from the host (tl) and from the guests' "MARK EPOCH TEXT" lines (tl_guest);
# guest clocks are set from the host, so both share one clock. print_phases reads a failover's
# phases off it.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

tl_start() { TL=$LAB/timeline-$1.txt; : > "$TL"; }
tl() { echo "$(now) host $*" >> "$TL"; }
# tl_guest NODE TAG: the MARK lines of one command's output.
tl_guest() { grep '^MARK ' "$LAB/vm/$1/out/$2.out" | awk -v n="${VM_HOST[$1]}" '{ $1 = ""; t = $2; $2 = ""; sub(/^  /, ""); print t, n, $0 }' >> "$TL"; }
# tl_at EPOCH WHO TEXT: an event seen by the host at a time it read elsewhere.
tl_at() { echo "$*" >> "$TL"; }
# tl_print T0: the timeline, times relative to T0.
tl_print() {
    sort -n -k1,1 "$TL" | awk -v t0="$1" '{ t = $1; who = $2; $1 = ""; $2 = ""; sub(/^  /, ""); printf "  %+8.2f s  %-8s %s\n", t - t0, who, $0 }'
}
# First event time on the timeline whose text matches a regex (empty if none).
tl_find() { sort -n -k1,1 "$TL" | awk -v re="$1" '$0 ~ re { print $1; exit }'; }
tl_sub() { [[ -n $1 && -n $2 ]] && echo "$1 - $2" | bc | awk '{printf "%.2f", $1}' || echo "-"; }

# Phase breakdown of one failover from the merged timeline; T0 = kill or handoff start.
# Sets RESUMED_S (T0 -> writer resumed), LOCKS_S (T0 -> locks held again), MMP_S (gate + mount)
# and appends a PHASES line to $LAB/phases.txt.
print_phases() {
    local t0=$1 new=${VM_HOST[$2]}
    local t_start t_held t_mounted t_nfsd t_tickle t_ip t_notified t_locks t_nlm t_v4 t_res t_old_done
    t_start=$(tl_find "$new activate start")
    t_held=$(tl_find "$new area held by mmpd")
    t_mounted=$(tl_find "$new mounted")
    t_nfsd=$(tl_find "$new nfsd started")
    t_tickle=$(tl_find "$new (tickled|no tickle)")
    t_ip=$(tl_find "$new floating IP up")
    t_notified=$(tl_find "$new (takeover done|sm-notify started)")
    t_locks=$(tl_find "$new [0-9]+ locks held on the server")
    t_nlm=$(tl_find "$new lockd grace over")
    t_v4=$(tl_find "$new v4 grace over")
    t_res=$(tl_find "writes resumed")
    local t_v4c t_v4d
    t_v4c=$(tl_find "NFSv4.2 locked writes back")
    t_v4d=$(tl_find "NFSv4.1 locked writes back")
    t_old_done=$(tl_find "MMP clean")
    echo "  phases (s; T0 = the kill, or the start of the old node's handoff script):"
    [[ -z $t_old_done ]] || printf '    %-34s %s\n' "old node: release, stop, umount" "$(tl_sub "$t_old_done" "$t0")"
    printf '    %-34s %s\n' "until the new node starts" "$(tl_sub "$t_start" "$t0")"
    # mmpd holder: the gate is mmpd's claim of the area, then a plain mount.
    [[ -z $t_held ]] || printf '    %-34s %s\n' "  mmpd claims the area" "$(tl_sub "$t_held" "$t_start")" \
        "  mount (after mmpd holds)" "$(tl_sub "$t_mounted" "$t_held")"
    printf '    %-34s %s\n' "MMP gate + mount" "$(tl_sub "$t_mounted" "$t_start")" \
        "statd, exports, nfsd start" "$(tl_sub "$t_nfsd" "$t_mounted")" \
        "floating IP up (+ARP)" "$(tl_sub "$t_ip" "$t_nfsd")" \
        "tickle ACKs" "$(tl_sub "$t_tickle" "$t_ip")" \
        "notify (+ reclaim wait: ours)" "$(tl_sub "$t_notified" "$t_tickle")" \
        "all locks held again (from T0)" "$(tl_sub "$t_locks" "$t0")" \
        "lockd grace over (from T0)" "$(tl_sub "$t_nlm" "$t0")" \
        "v4 grace over (from T0)" "$(tl_sub "$t_v4" "$t0")" \
        "client writes resumed (from T0)" "$(tl_sub "$t_res" "$t0")"
    [[ -z $t_v4c$t_v4d ]] || printf '    %-34s %s\n' "v4.2 locked writes back (from T0)" "$(tl_sub "$t_v4c" "$t0")" \
        "v4.1 locked writes back (from T0)" "$(tl_sub "$t_v4d" "$t0")" \
        "last v4 writes back - v4 grace over" "$(tl_sub "$(printf '%s\n' "$t_v4c" "$t_v4d" | sort -n | tail -1)" "$t_v4")"
    RESUMED_S=$(tl_sub "$t_res" "$t0")
    V4C_S=$(tl_sub "$t_v4c" "$t0")
    V4D_S=$(tl_sub "$t_v4d" "$t0")
    V4GRACE_S=$(tl_sub "$t_v4" "$t0")
    LOCKS_S=$(tl_sub "$t_locks" "$t0")
    MMP_S=$(tl_sub "$t_mounted" "$t_start")
    echo "PHASES $SCEN_NAME release=$(tl_sub "$t_old_done" "$t0") start=$(tl_sub "$t_start" "$t0") claim=$(tl_sub "$t_held" "$t_start") mount=$(tl_sub "$t_mounted" "$t_start") nfsd=$(tl_sub "$t_nfsd" "$t_mounted") ip=$(tl_sub "$t_ip" "$t_nfsd") tickle=$(tl_sub "$t_tickle" "$t_ip") notify=$(tl_sub "$t_notified" "$t_tickle") locks=$(tl_sub "$t_locks" "$t0") nlm_grace=$(tl_sub "$t_nlm" "$t0") v4_grace=$(tl_sub "$t_v4" "$t0") resumed=$(tl_sub "$t_res" "$t0") v42_resumed=$(tl_sub "$t_v4c" "$t0") v41_resumed=$(tl_sub "$t_v4d" "$t0")" >> "$LAB/phases.txt"
}
