#!/bin/bash
# Scenario 10's lab (sourced by lab.sh): 20 small shared MMP ext4 volumes, two NFS services of 10
# volumes each (svc1 on A, svc2 on B), each in its own network namespace on its server with its
# own floating IP (guest/volumes.sh), 60 lock holders on C and D (guest/holders.pl), a sampler
# of B's CPU and memory. Only when the scenario list is 10 or s10 (VOLUMES=1): the lab then
# skips the single-disk service of the other scenarios (nothing else runs on the servers).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

VOLUMES=${VOLUMES:-0}
VOL_MODE=ours
VOL_COUNT=20
VOL_SIZE=${LAB_VOL_SIZE:-16M}
declare -A VOL_FIP=([1]=198.18.0.101 [2]=198.18.0.102)
declare -A VOL_HOME=([1]=a [2]=b)
# How long the holders run before the kill, and the steady window measured after the last
# holder resumed (seconds).
VOL_RUN=${LAB_VOL_RUN:-20}
VOL_WINDOW=${LAB_VOL_WINDOW:-20}
VOL_RESUME_LIMIT=${LAB_VOL_RESUME_LIMIT:-600}

vol_name() { printf 'vol%02d' "$1"; }

# The 20 volumes: MMP ext4, 1 s update interval (as shared.img), everything initialised now.
vol_make_disks() {
    local i v
    for ((i = 1; i <= VOL_COUNT; i++)); do
        v=$(vol_name "$i")
        truncate -s "$VOL_SIZE" "$LAB/$v.img"
        mkfs.ext4 -q -F -b 4096 -O mmp -E mmp_update_interval=1,lazy_itable_init=0,lazy_journal_init=0 \
            -L "$v" "$LAB/$v.img" || return 1
    done
    log "scenario 10: $VOL_COUNT shared volumes of $VOL_SIZE (MMP ext4), services svc1 (${VOL_FIP[1]}) and svc2 (${VOL_FIP[2]})"
}

# qemu arguments of the volumes (A and B): like shared.img, found by serial labvolNN.
vol_disk_args() {
    local n=$1 i v
    [[ $VOLUMES == 1 && ($n == a || $n == b) ]] || return 0
    for ((i = 1; i <= VOL_COUNT; i++)); do
        v=$(vol_name "$i")
        VM_ARGS+=(-drive "file=$LAB/$v.img,format=raw,if=none,id=$v,cache=none,file.locking=off"
            -device "virtio-blk-pci,drive=$v,share-rw=on,serial=lab$v")
    done
}

vol_hosts() { echo "${VOL_FIP[1]} nfs-svc1" >> "$LAB/hosts"; echo "${VOL_FIP[2]} nfs-svc2" >> "$LAB/hosts"; }

# vol_exec NODE ARGS...: guest/volumes.sh ARGS in the VM (as vm_exec does node.sh); prints the tag.
vol_exec() {
    local n=$1 seq tag d
    shift
    seq=$(($(cat "$LAB/cmd-seq" 2> /dev/null || echo 0) + 1))
    echo "$seq" > "$LAB/cmd-seq"
    tag=$(printf '%04d-vol-%s' "$seq" "$1")
    d=$LAB/vm/$n/cmd
    printf 'exec bash /run/labfiles/guest/volumes.sh %s\n' "$*" > "$d/.$tag"
    mv "$d/.$tag" "$d/$tag.sh"
    echo "$tag"
}

vol_run() {
    local n=$1 limit=$2 t
    shift 2
    t=$(vol_exec "$n" "$@")
    vm_wait "$n" "$t" "$limit"
}

# The lab's first start: both servers prepared, svc1 on A and svc2 on B at once, then both
# clients mount the 20 exports.
vol_first_activation() {
    local ta tb tc td
    ta=$(vol_exec a server-prep) tb=$(vol_exec b server-prep)
    vm_wait a "$ta" 120 || return 1
    vm_wait b "$tb" 120 || return 1
    log "scenario 10: svc1 on A, svc2 on B ($VOL_MODE tools)"
    ta=$(vol_exec a svc-start 1 "${VOL_FIP[1]}" "$VOL_MODE" initial)
    tb=$(vol_exec b svc-start 2 "${VOL_FIP[2]}" "$VOL_MODE" initial)
    vm_wait a "$ta" 300 || return 1
    vm_wait b "$tb" 300 || return 1
    tc=$(vol_exec c client-prep "${VOL_FIP[1]}" "${VOL_FIP[2]}")
    td=$(vol_exec d client-prep "${VOL_FIP[1]}" "${VOL_FIP[2]}")
    vm_wait c "$tc" 240 || return 1
    vm_wait d "$td" 240 || return 1
    ACTIVE=a STANDBY=b
}

# The holders: 3 per volume, H1 on C, H2 on D, H3 on C for odd volumes and on D for even ones
# (30 each). vol_specs CLIENT prints that client's VV:H list.
vol_specs() {
    local i h
    for ((i = 1; i <= VOL_COUNT; i++)); do
        for h in 1 2 3; do
            if [[ $h == 1 || ($h == 3 && $((i % 2)) == 1) ]]; then
                [[ $1 == c ]] && printf '%02d:%d\n' "$i" "$h"
            else
                [[ $1 == d ]] && printf '%02d:%d\n' "$i" "$h"
            fi
        done
    done
}

# D's probes: C's holders' files (H1) of vol01, vol04, vol07, vol10 (svc1) and vol15 (svc2).
VOL_PROBES=(01:1 04:1 07:1 10:1 15:1)

# Every holder log: "NODE VV H PATH".
vol_logs() {
    local n s
    for n in c d; do
        for s in $(vol_specs $n); do echo "$n ${s%%:*} ${s#*:} $LAB/vm/$n/holders/v${s%%:*}h${s#*:}.log"; done
    done
}

# Starts the 60 holders and D's probes; returns once every holder has written twice.
vol_workload_start() {
    local tc td n i ready
    # shellcheck disable=SC2046 # one VV:H word per holder
    tc=$(vol_exec c holders-start $(vol_specs c))
    # shellcheck disable=SC2046
    td=$(vol_exec d holders-start $(vol_specs d))
    vm_wait c "$tc" 60 || return 1
    vm_wait d "$td" 60 || return 1
    for ((i = 0; i < 1200; i++)); do
        ready=0
        while read -r n _ _ f; do
            [[ $(grep -c ' ok ' "$f" 2> /dev/null) -ge 2 ]] && ready=$((ready + 1))
        done < <(vol_logs)
        [[ $ready -ge $((VOL_COUNT * 3)) ]] && break
        sleep 0.5
    done
    log "scenario 10: $ready of $((VOL_COUNT * 3)) holders writing"
    [[ $ready -ge $((VOL_COUNT * 3)) ]] || return 1
    vol_run d 60 probes-start "${VOL_PROBES[@]}"
}

vol_workload_stop() {
    local tc td tp
    tp=$(vol_exec d probes-stop)
    vm_wait d "$tp" 30
    tc=$(vol_exec c holders-stop) td=$(vol_exec d holders-stop)
    vm_wait c "$tc" 60
    vm_wait d "$td" 60
    mkdir -p "$LAB/holders-$SCEN_NAME"
    cp "$LAB"/vm/c/holders/*.log "$LAB"/vm/d/holders/*.log "$LAB/holders-$SCEN_NAME/" 2> /dev/null
    cp -r "$LAB/vm/d/probes" "$LAB/probes-$SCEN_NAME" 2> /dev/null
}

# vol_holder_stats T_KILL: one line per holder, "NODE VV H SVC OKS ERRS STOPPED RESUMED
# MAXGAP_BEFORE MAXGAP_AFTER": RESUMED = first acknowledged write after T_KILL (or -),
# MAXGAP_BEFORE the longest gap between two acknowledged writes before T_KILL, MAXGAP_AFTER the
# longest one ending after T_KILL (the gap across the kill included).
vol_holder_stats() {
    local tk=$1 n vv h f
    while read -r n vv h f; do
        awk -v n="$n" -v vv="$vv" -v h="$h" -v tk="$tk" '
            $2 == "ok" { if (last != "") { g = $1 - last; if ($1 > tk) { if (g > ga) ga = g } else if (g > gb) gb = g }
                         if ($1 > tk && res == "") res = $1; last = $1; oks++ }
            $2 == "err" { errs++ }
            $2 == "stopped" { stopped = 1 }
            END { printf "%s %s %s %d %d %d %d %s %.2f %.2f\n", n, vv, h, (vv + 0 <= 10 ? 1 : 2), oks, errs, stopped,
                  (res == "" ? "-" : res), gb, ga }' "$f"
    done < <(vol_logs)
}

# vol_wait_resumed T_KILL LIMIT: until every svc1 holder wrote after T_KILL (or LIMIT s).
# Prints the time of the last one to resume.
vol_wait_resumed() {
    local tk=$1 limit=$2 i missing
    for ((i = 0; i < limit; i++)); do
        missing=$(vol_holder_stats "$tk" | awk '$4 == 1 && $8 == "-"' | wc -l)
        [[ $missing -eq 0 ]] && break
        sleep 1
    done
    vol_holder_stats "$tk" | awk '$4 == 1 && $8 != "-" { if ($8 > m) m = $8 } END { if (m) printf "%.6f\n", m }'
    [[ $missing -eq 0 ]]
}

# vol_cpu WS WE: B's sampler over [WS, WE]: "SECONDS BUSY_PCT OURS_CPU_S OURS_RSS_KIB
# OURS_PSS_KIB USED_KIB OURS_ANON_KIB" (busy = user+nice+system+irq+softirq+steal ticks over all
# ticks of the 1 vCPU; ours = utime+stime of our processes, a process seen first inside the
# window counted from 0; RSS/PSS/used/anonymous PSS at the window's last sample).
vol_cpu() {
    awk -v ws="$1" -v we="$2" '
        $1 >= ws && $1 <= we {
            busy = $2 + $3 + $4 + $7 + $8 + $9; all = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9
            delete cur; rss = 0; pss = 0; anon = 0
            for (i = 16; i <= NF; i++) { split($i, p, ":"); cur[p[1]] = p[3]; rss += p[4]; pss += p[5]; anon += p[6] }
            if (!started) { started = 1; t0 = $1; b0 = busy; a0 = all; for (k in cur) first[k] = cur[k] }
            else for (k in cur) { if (!(k in first)) first[k] = 0; lastt[k] = cur[k] }
            t1 = $1; b1 = busy; a1 = all; r1 = rss; p1 = pss; n1 = anon; used = $13 - $14
        }
        END {
            if (!started || a1 == a0) { print "- - - - - - -"; exit }
            ours = 0; for (k in lastt) ours += lastt[k] - first[k]
            printf "%.1f %.1f %.2f %d %d %d %d\n", t1 - t0, 100 * (b1 - b0) / (a1 - a0), ours / 100, r1, p1, used, n1
        }' "$LAB/vm/b/sampler.log"
}
