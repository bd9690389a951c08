#!/bin/bash
# Scenario 10 (and s10, the same with the stock tools): many volumes, two NFS services (issue 17,
# deliverable 6). Needs its own lab: `lab.sh --scenarios 10` (or s10), alone (lib/volumes.sh).
#
# 20 shared MMP ext4 volumes; svc1 (vol01-vol10, floating IP 198.18.0.101, nfs-svc1) runs on A,
# svc2 (vol11-vol20, 198.18.0.102, nfs-svc2) on B, each in its own network namespace on its
# server (its own nfsd, lockd, grace, rpcbind, statd, mountd; guest/volumes.sh). C and D mount the
# 20 exports (NFSv3) and run 60 holders, 3 per volume, each the issue's loop on its own file
# (guest/holders.pl: exclusive flock, then a date line written and fsynced every second; the
# first failed write ends it); D also probes C's holders' files with flock -n (vol01, 04, 07, 10,
# 15). After LAB_VOL_RUN (20) s A's qemu is killed (power fencing) and B takes svc1 over in a new
# namespace: ours = `mmp-tool mount --fenced serva` of the 10 volumes in parallel, statd (its
# directory on vol01), mountd, exports, `lockd-recover start-nfsd`, the floating IP (macvlan, the
# service's MAC), tickle ACKs, `lockd-recover takeover` (notify; vol01's ledger) and a
# `wait-reclaim` per other volume, all without ending grace, then `lockd-recover grace end` (the
# namespace's grace: svc2's is another); stock (s10) = kernel mounts, rpc.nfsd, default grace,
# sm-notify.
# Pass when:
#   - B's takeover of svc1 succeeds and B still runs;
#   - every one of svc1's 30 holders writes again after the kill (within LAB_VOL_RESUME_LIMIT,
#     600 s: the first run on a loaded host took 328 s), and no holder
#     of either service ever ends its loop (an error = a lost lock or EIO) or dies;
#   - svc2's 30 holders never paused longer than 2 s (LAB_VOL_MAX_PAUSE) from the kill on;
#   - D's probes were refused (busy) and never granted C's locks;
#   - every holder's file on the disks holds at least the writes it acknowledged, and B's kernel
#     holds a POSIX lock on each of the 60 files at the end (/proc/locks): an NFSv3 client keeps
#     writing whether or not its lock was reclaimed, so resumed writes alone prove nothing;
#   - ours only: the overhead of our processes on B (below) is within +30 % CPU and +3 % RAM.
# Reported: kill -> last svc1 holder resumed, the takeover's steps, svc2's longest pause, and B's
# CPU and memory: busy CPU (% of B's one vCPU, from /proc/stat) in a window of LAB_VOL_WINDOW
# (20) s before the kill and from 5 s after the last holder resumed and B's takeover script
# returned; our processes'
# (lockd-recover, mmp-tool, mmpd) CPU seconds and PSS/RSS in the same windows; the CPU seconds
# and peak RSS of those that ran during the takeover and exited (/usr/bin/time). The budget is
# judged as: CPU = our processes' CPU seconds / (B's busy CPU seconds - ours) in the window after
# the takeover, RAM = our anonymous PSS / (B's used memory (MemTotal - MemAvailable) - that): B's
# load without our daemons, measured in the same run (used memory leaves out reclaimable page
# cache, our binaries' text among it, so ours is counted the same way; the whole PSS is printed). With LAB_VOL_BASELINE=PHASES (the phases.txt of
# an s10 run) the busy CPU and used memory are also compared with that stock lab's.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

scenario_10() { scenario_volumes ours; }
scenario_s10() { scenario_volumes stock; }

scenario_volumes() {
    local mode=$1 rc=0 t0 ta t_last stats max_pause=${LAB_VOL_MAX_PAUSE:-2}
    SCEN_NAME=volumes-$mode
    banner "scenario 10$([[ $mode == stock ]] && echo ' (stock tools: kernel mount, rpc.nfsd, sm-notify, default grace)'): 20 volumes, svc1 on ${VM_HOST[a]} and svc2 on ${VM_HOST[b]}, ${VM_HOST[a]} killed" || return 1
    vol_workload_start || { verdict 1; return 1; }
    vol_run b 30 sampler-start > /dev/null
    sleep "$VOL_RUN"
    tl_start "$SCEN_NAME"
    t0=$(now)
    vm_kill a
    tl "killed VM ${VM_HOST[a]} (qemu pid, power fencing)"
    ta=$(vol_exec b svc-start 1 "${VOL_FIP[1]}" "$mode" "${VM_HOST[a]}")
    tl "${VM_HOST[b]} told to take svc1 over"
    vm_wait b "$ta" 900 || rc=1
    local t_done
    t_done=$(now)
    tl_guest b "$ta"
    if t_last=$(vol_wait_resumed "$t0" "$VOL_RESUME_LIMIT"); then
        tl_at "$t_last" clients "last of svc1's 30 holders resumed"
    else
        tl "svc1's holders did NOT all resume within $VOL_RESUME_LIMIT s of the kill"
        rc=1
        t_last=${t_last:-$(now)}
    fi
    vm_alive b || { tl "B's VM exited"; rc=1; }
    vol_phases "$t0"
    # The steady window after the takeover: from 5 s after the last holder resumed and B's
    # takeover script returned (its tail would count as B's load otherwise).
    local wend t_after
    t_after=$(echo "if ($t_done > $t_last) $t_done else $t_last" | bc)
    wend=$(echo "$t_after + 5 + $VOL_WINDOW" | bc)
    while [[ $(echo "$(now) < $wend + 2" | bc) == 1 ]]; do sleep 1; done
    vol_run b 120 sampler-stop > /dev/null
    cp "$LAB/vm/b/sampler.log" "$LAB/sampler-$SCEN_NAME.log"
    # Each holder's lock on B while the holders still run (their stop releases them).
    local n tv locked_out=
    for n in 1 2; do
        tv=$(vol_exec b verify "$n")
        vm_wait b "$tv" 300 || rc=1
        locked_out+=$(vm_out b "$tv" | grep '^VERIFY ')$'\n'
    done
    vol_workload_stop
    tl_print "$t0"

    # The holders.
    stats=$(vol_holder_stats "$t0")
    echo "$stats" > "$LAB/holders-$SCEN_NAME.txt"
    local lost dead svc1_res last_s svc2_pause svc1_pause_before
    lost=$(awk '$6 > 0' <<< "$stats" | wc -l)
    dead=$(awk '$7 == 0' <<< "$stats" | wc -l)
    svc1_res=$(awk '$4 == 1 && $8 != "-"' <<< "$stats" | wc -l)
    last_s=$(tl_sub "$t_last" "$t0")
    svc2_pause=$(awk '$4 == 2 { if ($10 > m) m = $10 } END { printf "%.2f", m }' <<< "$stats")
    svc1_pause_before=$(awk '{ if ($9 > m) m = $9 } END { printf "%.2f", m }' <<< "$stats")
    echo "  holders: svc1 $svc1_res/30 resumed after the kill, last at +$last_s s; loops ended (write error: lost lock or EIO) $lost; died without a trace $((dead - lost > 0 ? dead - lost : 0))"
    echo "  svc2's longest pause between two acknowledged writes from the kill on: $svc2_pause s (limit $max_pause s); longest pause of any holder before the kill: $svc1_pause_before s"
    awk '$6 > 0 { print "  LOST: holder v" $2 "h" $3 " on client" $1 " ended its loop" }' <<< "$stats" | head -10
    awk -v m="$max_pause" '$4 == 2 && $10 > m { print "  PAUSE: svc2 holder v" $2 "h" $3 " (client" $1 ") paused " $10 " s" }' <<< "$stats" | head -10
    [[ $svc1_res -eq 30 && $lost -eq 0 && $dead -eq 0 ]] || rc=1
    [[ $(echo "$svc2_pause <= $max_pause" | bc) == 1 ]] || rc=1

    # D's probes.
    local granted busy
    granted=$(cat "$LAB"/probes-"$SCEN_NAME"/*.log 2> /dev/null | grep -c ' granted')
    busy=$(cat "$LAB"/probes-"$SCEN_NAME"/*.log 2> /dev/null | grep -c ' busy')
    echo "  probes (D, flock -n of C's files on vol01 04 07 10 15): $busy refused, $granted conflicting grants"
    [[ $granted -eq 0 && $busy -gt 0 ]] || rc=1

    # The files on the disks: at least the acknowledged writes (B serves all 20 volumes now).
    local short=0 files=0 unlocked=0
    for n in 1 2; do
        tv=$(vol_exec b verify "$n")
        vm_wait b "$tv" 300 || rc=1
        while read -r _ f lines locks; do
            files=$((files + 1))
            local vv=${f#testfile-v} acked
            vv=${vv%%h*}
            acked=$(awk -v vv="$vv" -v h="${f##*h}" '$2 == vv && $3 == h { print $5 }' <<< "$stats")
            [[ -n $acked && $lines -ge $acked ]] || { short=$((short + 1)); echo "  FAIL data: $f holds $lines records, ${acked:-?} acknowledged"; }
            locks=$(awk -v f="$f" '$2 == f { print $4 }' <<< "$locked_out")
            [[ $locks == 1 ]] || { unlocked=$((unlocked + 1)); echo "  FAIL lock: $f: ${locks:-no} POSIX locks on the server before the holders stopped (its holder's must be held)"; }
        done < <(vm_out b "$tv" | grep '^VERIFY ')
    done
    echo "  data: $files holder files on the disks, $short with fewer records than acknowledged; $((files - unlocked)) of them locked on the server (B) before the holders stopped"
    [[ $files -eq 60 && $short -eq 0 && $unlocked -eq 0 ]] || rc=1

    vol_report_cpu "$mode" "$t0" "$t_after" "$ta" || rc=1
    result "$SCEN_NAME resumed_last=$last_s svc1_resumed=$svc1_res lost=$lost svc2_max_pause=$svc2_pause grants=$granted $VOL_CPU_FIELDS rc=$rc load=$(load_avg)"
    NEED_REBOOT=a
    verdict $rc
    return $rc
}

# B's CPU and memory before and after the takeover (see the top of this file for what is
# measured); sets VOL_CPU_FIELDS for the RESULT line. Returns 1 when ours exceeds the budget.
vol_report_cpu() {
    local mode=$1 t0=$2 tl=$3 ta=$4 before after tr bad=0
    local bs bb bo br bp bu bn as ab ao ar ap au an
    before=$(vol_cpu "$(echo "$t0 - $VOL_WINDOW - 1" | bc)" "$t0")
    after=$(vol_cpu "$(echo "$tl + 5" | bc)" "$(echo "$tl + 5 + $VOL_WINDOW" | bc)")
    read -r bs bb bo br bp bu bn <<< "$before"
    read -r as ab ao ar ap au an <<< "$after"
    tr=$(vm_out b "$ta" | awk '/^CPUTIME / { c += $3 + $4; n++; if ($5 > m) m = $5 } END { printf "%d %.2f %d", n, c, m }')
    echo "  B before the kill (${bs} s, svc2): busy CPU ${bb} %, our processes ${bo} CPU-s, PSS ${bp} KiB (anonymous ${bn}, RSS ${br}), B's used memory ${bu} KiB"
    echo "  B after the takeover (${as} s, svc1 + svc2): busy CPU ${ab} %, our processes ${ao} CPU-s, PSS ${ap} KiB (anonymous ${an}, RSS ${ar}), B's used memory ${au} KiB"
    [[ $mode == ours ]] && echo "  the takeover's tools that exited (mmp-tool mount x10, start-nfsd, takeover, wait-reclaim): $(cut -d' ' -f1 <<< "$tr") runs, $(cut -d' ' -f2 <<< "$tr") CPU-s, peak RSS $(cut -d' ' -f3 <<< "$tr") KiB"
    local cpu_ovh=- ram_ovh=- ram_pss=-
    if [[ $ab != - && $ao != - ]]; then
        # Our CPU seconds over the rest of B's busy CPU seconds in the same window.
        cpu_ovh=$(awk -v s="$as" -v b="$ab" -v o="$ao" 'BEGIN { rest = s * b / 100 - o; printf "%.1f", (rest > 0 ? 100 * o / rest : 999) }')
        # RAM: B's used memory is MemTotal - MemAvailable, which leaves out the page cache the
        # kernel can reclaim, our binaries' text among it; our share is counted the same way, as
        # our processes' anonymous PSS. Their whole PSS (text included) is printed beside it.
        ram_ovh=$(awk -v u="$au" -v p="$an" 'BEGIN { rest = u - p; printf "%.1f", (rest > 0 ? 100 * p / rest : 999) }')
        ram_pss=$(awk -v u="$au" -v p="$ap" 'BEGIN { rest = u - p; printf "%.1f", (rest > 0 ? 100 * p / rest : 999) }')
        echo "  overhead of our processes on B after the takeover, relative to B without them: CPU +${cpu_ovh} % (budget +30 %), RAM +${ram_ovh} % (anonymous memory, as B's used memory counts it; budget +3 %; with the text pages of our binaries, whole PSS: +${ram_pss} %)"
        if [[ $mode == ours ]]; then
            [[ $(echo "$cpu_ovh <= 30" | bc) == 1 ]] || { echo "  FAIL: CPU overhead over budget"; bad=1; }
            [[ $(echo "$ram_ovh <= 3" | bc) == 1 ]] || { echo "  FAIL: RAM overhead over budget"; bad=1; }
        fi
    fi
    if [[ -n ${LAB_VOL_BASELINE:-} && -r $LAB_VOL_BASELINE ]]; then
        local sb sa sub sua
        sb=$(sed -n 's/.*RESULT volumes-stock .*busy_before=\([^ ]*\).*/\1/p' "$LAB_VOL_BASELINE" | tail -1)
        sa=$(sed -n 's/.*RESULT volumes-stock .*busy_after=\([^ ]*\).*/\1/p' "$LAB_VOL_BASELINE" | tail -1)
        sub=$(sed -n 's/.*RESULT volumes-stock .*used_before_kib=\([^ ]*\).*/\1/p' "$LAB_VOL_BASELINE" | tail -1)
        sua=$(sed -n 's/.*RESULT volumes-stock .*used_after_kib=\([^ ]*\).*/\1/p' "$LAB_VOL_BASELINE" | tail -1)
        echo "  against the stock lab ($LAB_VOL_BASELINE): busy CPU before $bb % vs $sb %, after $ab % vs $sa %; used memory before $bu vs $sub KiB, after $au vs $sua KiB"
    fi
    VOL_CPU_FIELDS="busy_before=$bb busy_after=$ab ours_cpu_s_before=$bo ours_cpu_s_after=$ao ours_pss_before_kib=$bp ours_pss_after_kib=$ap ours_rss_after_kib=$ar ours_anon_after_kib=$an used_before_kib=$bu used_after_kib=$au takeover_tools=${tr// /\/} cpu_overhead_pct=$cpu_ovh ram_overhead_pct=$ram_ovh ram_pss_overhead_pct=$ram_pss"
    return $bad
}

# svc1's takeover on B, step by step (seconds from the kill), from the timeline; a PHASES line.
vol_phases() {
    local t0=$1 kv key re f line=
    echo "  svc1's takeover on ${VM_HOST[b]} (s from the kill):"
    for kv in "start|svc1 activate start" "netns|svc1 namespace ready" "mounted|svc1 mounted 10 volumes" \
        "exports|svc1 statd, mountd, exports" "nfsd|svc1 nfsd started" "ip|svc1 floating IP up" \
        "tickle|svc1 (tickled|no tickle)" "notify|svc1 (takeover done|sm-notify started)" \
        "ledger_locks|svc1 every volume's ledger" "grace_end|svc1 grace ended" "active|svc1 active" \
        "last_resumed|last of svc1's 30 holders resumed"; do
        key=${kv%%|*} re=${kv#*|}
        f=$(tl_sub "$(tl_find "$re")" "$t0")
        printf '    %-14s %s\n' "$key" "$f"
        line+=" $key=$f"
    done
    echo "PHASES $SCEN_NAME$line" >> "$LAB/phases.txt"
}
