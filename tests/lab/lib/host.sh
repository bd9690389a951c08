#!/bin/bash
# Host side of the failover lab (sourced by lab.sh): preflight, VMs, network, timelines,
# scenarios. Every process, tap, namespace and file it makes is removed by cleanup (EXIT trap).

NET_PREFIX=24
LAB_NET=198.18.0.0/24
FIP=198.18.0.100
declare -A VM_IP=([a]=198.18.0.11 [b]=198.18.0.12 [c]=198.18.0.21 [d]=198.18.0.22)
declare -A VM_HOST=([a]=serva [b]=servb [c]=clientc [d]=clientd)
declare -A VM_MAC=([a]=52:54:00:12:00:11 [b]=52:54:00:12:00:12 [c]=52:54:00:12:00:21 [d]=52:54:00:12:00:22)
VM_MEM=${LAB_VM_MEM:-448}
# The mmpd holder's options (--holder mmpd): the watchdog fence with softdog, 1 s beats, fence
# after 2 s without a successful write, 3 s watchdog timeout: self-fence bound 2 + 3 + 1 = 6 s.
MMPD_ARGS=${LAB_MMPD_ARGS:---fence watchdog --watchdog-timeout 3 --interval 1 --fail-intervals 2}
AREA_MMP_BLOCK=
FENCE_TAG=
LAB=
NS=
KVER=
ACTIVE=a
STANDBY=b
T_START=$(date +%s)
cmd_seq=0

log() { echo "[lab $(date +%T)] $*"; }
now() { date +%s.%N; }
elapsed_total() { echo $(($(date +%s) - T_START)); }

preflight() {
    local want_bin=$1 missing=()
    if [[ $(id -u) -ne 0 ]]; then
        echo "lab.sh: must run as root (network namespace, taps, qemu)" >&2
        return 1
    fi
    local c
    for c in qemu-system-x86_64:qemu-system-x86 ip:iproute2 mkfs.ext4:e2fsprogs jq:jq \
        cpio:cpio gzip:gzip strip:binutils modprobe:kmod; do
        command -v "${c%%:*}" > /dev/null || missing+=("${c#*:}")
    done
    [[ -x /bin/busybox ]] || missing+=(busybox-static)
    [[ -x /usr/sbin/rpc.nfsd ]] || missing+=(nfs-kernel-server)
    [[ -x /usr/sbin/rpc.statd ]] || missing+=(nfs-common)
    [[ -x /usr/sbin/rpcbind || -x /sbin/rpcbind ]] || missing+=(rpcbind)
    # The newest installed kernel that has nfsd.
    local k
    for k in $(ls -1 /boot/vmlinuz-* 2> /dev/null | sed 's|/boot/vmlinuz-||' | sort -V -r); do
        if [[ -n $(find "/lib/modules/$k/kernel/fs/nfsd" -name 'nfsd.ko*' 2> /dev/null) ]]; then
            KVER=$k
            break
        fi
    done
    [[ -n $KVER ]] || missing+=(linux-image-amd64)
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "lab.sh: missing Debian packages: ${missing[*]}" >&2
        echo "        apt-get install -y --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
    if [[ -z $want_bin ]]; then
        local profile=${LAB_PROFILE:-release} sub
        sub=$([[ $profile == dev ]] && echo debug || echo "$profile")
        local target=${CARGO_TARGET_DIR:-$repo/target}
        log "building the tools (cargo build --profile $profile) into $target"
        (cd "$repo" && cargo build -q --profile "$profile" -p mmp-tool -p mmpd -p lockd-recover \
            -p lock-torture) || { echo "lab.sh: cargo build failed" >&2; return 1; }
        want_bin=$target/$sub
    fi
    local bins=(mmp-tool lockd-recover lock-torture)
    [[ ${HOLDER:-ext4} == mmpd ]] && bins+=(mmpd)
    for c in "${bins[@]}"; do
        [[ -x $want_bin/$c ]] || {
            echo "lab.sh: $want_bin/$c missing (build it or pass --bin-dir)" >&2
            return 1
        }
    done
    BIN_SRC=$want_bin
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    local n p
    for n in a b c d; do
        [[ -n $LAB && -s $LAB/vm/$n/pid ]] || continue
        p=$(cat "$LAB/vm/$n/pid")
        if [[ -d /proc/$p && $(cat /proc/$p/comm 2> /dev/null) == qemu-system-x86* ]]; then
            kill -KILL "$p" 2> /dev/null
            wait "$p" 2> /dev/null
        fi
    done
    [[ -n ${SAMPLER_PID:-} ]] && kill "$SAMPLER_PID" 2> /dev/null
    if [[ -n $NS ]] && ip netns list | grep -qw "$NS"; then
        ip netns delete "$NS"
    fi
    if [[ -n $LAB && -d $LAB ]]; then
        if [[ $keep -eq 1 ]]; then
            log "kept $LAB (--keep)"
        else
            rm -rf "$LAB"
        fi
    fi
    exit $rc
}

lab_setup() {
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/halab.XXXXXX") || return 1
    NS=halab$$
    trap cleanup EXIT
    trap 'echo "lab.sh: interrupted" >&2; exit 130' INT TERM HUP
    log "lab directory $LAB, namespace $NS, guest kernel $KVER"
    mkdir -p "$LAB/share/bin" "$LAB/vm"
    local b
    for b in mmp-tool lockd-recover lock-torture mmpd; do
        [[ -x $BIN_SRC/$b ]] && strip -o "$LAB/share/bin/$b" "$BIN_SRC/$b"
    done
    cp -r "$here/guest" "$LAB/share/guest"
    bash "$here/lib/mkinitramfs.sh" "$KVER" "$LAB/initrd.gz" || return 1
    truncate -s 128M "$LAB/shared.img"
    if [[ $HOLDER == mmpd ]]; then
        # The shared LUN: plain ext4 (no mmp feature), everything initialised now so that an
        # idle mounted filesystem is not written. The gate is a second shared disk, an MMP
        # area (same MMP block format as ext4's, block 1) held by mmpd on the active server.
        mkfs.ext4 -q -F -b 4096 -O ^mmp -E lazy_itable_init=0,lazy_journal_init=0 \
            -L halab "$LAB/shared.img" || return 1
        truncate -s 4M "$LAB/area.img"
        "$LAB/share/bin/mmp-tool" format-area --run-dir "$LAB/run-mmpd" "$LAB/area.img" > /dev/null || return 1
        AREA_MMP_BLOCK=$("$LAB/share/bin/mmp-tool" status --json "$LAB/area.img" | jq -r .block_number)
        MMP_BLOCK=
        log "holder: mmpd $MMPD_ARGS on the MMP area (area.img, MMP block $AREA_MMP_BLOCK); shared.img is ext4 without mmp"
    else
        # The shared LUN: MMP ext4, 1 s update interval, everything initialised now so the
        # only writes to an idle mounted filesystem are kmmpd's.
        mkfs.ext4 -q -F -b 4096 -O mmp -E mmp_update_interval=1,lazy_itable_init=0,lazy_journal_init=0 \
            -L halab "$LAB/shared.img" || return 1
        MMP_BLOCK=$(dumpe2fs -h "$LAB/shared.img" 2> /dev/null | awk -F: '/MMP block number/ {print $2+0}')
    fi
    ip netns add "$NS" || return 1
    ip -n "$NS" link set lo up
    ip -n "$NS" link add br0 type bridge
    ip -n "$NS" link set br0 up
    local n
    for n in a b c d; do
        ip -n "$NS" tuntap add "tap$n" mode tap || return 1
        ip -n "$NS" link set "tap$n" master br0 up
    done
    {
        echo "127.0.0.1 localhost"
        for n in a b c d; do echo "${VM_IP[$n]} ${VM_HOST[$n]}"; done
        echo "$FIP nfs-ha"
    } > "$LAB/hosts"
    log "booting 4 VMs (TCG)"
    local t0
    t0=$(now)
    for n in a b c d; do vm_start "$n"; done
    for n in a b c d; do vm_wait_ready "$n" 180 || return 1; done
    log "all VMs up in $(dt "$t0") s"
    local ta tb tc td
    ta=$(vm_exec a server-prep) tb=$(vm_exec b server-prep)
    vm_wait a "$ta" 120 || return 1
    vm_wait b "$tb" 120 || return 1
    log "first activation on A (fresh filesystem)"
    ta=$(vm_exec a activate ours)
    vm_wait a "$ta" 120 || return 1
    tc=$(vm_exec c client-prep) td=$(vm_exec d client-prep)
    vm_wait c "$tc" 120 || return 1
    vm_wait d "$td" 120 || return 1
    ACTIVE=a STANDBY=b
    log "lab ready in $(elapsed_total) s: A active with $FIP, B standby, C and D mounted"
}

dt() { echo "$(now) - $1" | bc | awk '{printf "%.1f", $1}'; }

vm_start() {
    local n=$1 d=$LAB/vm/$1 disk=()
    if [[ -d $d ]]; then
        local i=1
        while [[ -d $d.boot$i ]]; do i=$((i + 1)); done
        mv "$d" "$d.boot$i"
    fi
    mkdir -p "$d/cmd" "$d/out"
    cat > "$d/env" << EOV
LAB_NAME=${VM_HOST[$n]}
LAB_IP=${VM_IP[$n]}
LAB_PREFIX=$NET_PREFIX
LAB_NET=$LAB_NET
LAB_FIP=$FIP
LAB_AGENT=/run/labfiles/guest/agent.sh
LAB_BIN=/run/labfiles/bin
LAB_TICKLE=${LAB_TICKLE:-1}
LAB_HOLDER=$HOLDER
LAB_MMPD_ARGS="$MMPD_ARGS"
EOV
    cp "$LAB/hosts" "$d/hosts"
    if [[ $n == a || $n == b ]]; then
        disk=(-drive "file=$LAB/shared.img,format=raw,if=none,id=d0,cache=none,file.locking=off"
            -device virtio-blk-pci,drive=d0,share-rw=on)
        if [[ $HOLDER == mmpd ]]; then
            # A human monitor on two fifos (mon.in/mon.out), for scenario 5's `stop`/`cont`.
            rm -f "$d/mon.in" "$d/mon.out"
            mkfifo "$d/mon.in" "$d/mon.out"
            disk+=(-chardev "pipe,id=mon0,path=$d/mon" -mon chardev=mon0,mode=readline)
            # The guest finds its disks by serial (/sys/block/vdX/serial).
            disk[3]+=,serial=labshared
            disk+=(-drive "file=$LAB/area.img,format=raw,if=none,id=d1,cache=none,file.locking=off"
                -device virtio-blk-pci,drive=d1,share-rw=on,serial=labarea)
        fi
    fi
    ip netns exec "$NS" qemu-system-x86_64 -accel tcg,tb-size=128 -cpu max -m "$VM_MEM" -smp 1 \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "/boot/vmlinuz-$KVER" -initrd "$LAB/initrd.gz" \
        -append "console=ttyS0 panic=-1 loglevel=4 net.ifnames=0" \
        -serial "file:$d/console.log" \
        -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$d,mount_tag=ctl,security_model=none" \
        -virtfs "local,path=$LAB/share,mount_tag=labfiles,security_model=none,readonly=on" \
        -netdev "tap,id=n0,ifname=tap$n,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=n0,mac=${VM_MAC[$n]}" \
        "${disk[@]}" > "$d/qemu.log" 2>&1 &
    echo $! > "$d/pid"
}

vm_wait_ready() {
    local n=$1 limit=$2 d=$LAB/vm/$1 i
    for ((i = 0; i < limit * 5; i++)); do
        [[ -e $d/out/ready ]] && return 0
        if ! kill -0 "$(cat "$d/pid")" 2> /dev/null; then
            echo "lab: VM $n (qemu) exited during boot:" >&2
            tail -20 "$d/qemu.log" "$d/console.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "lab: VM $n not ready after $limit s; console:" >&2
    tail -30 "$d/console.log" >&2
    return 1
}

# vm_exec NODE ARGS...: run guest/node.sh ARGS in the VM, in the background; prints the tag.
vm_exec() {
    local n=$1
    shift
    # A counter in a file: vm_exec runs in command substitutions (subshells).
    local seq tag
    seq=$(($(cat "$LAB/cmd-seq" 2> /dev/null || echo 0) + 1))
    echo "$seq" > "$LAB/cmd-seq"
    tag=$(printf '%04d-%s' "$seq" "$1")
    local d=$LAB/vm/$n/cmd
    printf 'exec bash /run/labfiles/guest/node.sh %s\n' "$*" > "$d/.$tag"
    mv "$d/.$tag" "$d/$tag.sh"
    echo "$tag"
}

# vm_wait NODE TAG TIMEOUT: wait for the command's exit status (printed output on failure).
vm_wait() {
    local n=$1 tag=$2 limit=$3 out=$LAB/vm/$1/out i rc
    for ((i = 0; i < limit * 10; i++)); do
        if [[ -e $out/$tag.rc ]]; then
            rc=$(cat "$out/$tag.rc")
            if [[ $rc -ne 0 ]]; then
                echo "lab: $n: $tag exited $rc:" >&2
                tail -25 "$out/$tag.out" >&2
            fi
            return "$rc"
        fi
        sleep 0.1
    done
    echo "lab: $n: $tag did not finish within $limit s; output so far:" >&2
    tail -25 "$out/$tag.out" >&2
    return 124
}

vm_out() { cat "$LAB/vm/$1/out/$2.out"; }

vm_kill() {
    local n=$1 p
    p=$(cat "$LAB/vm/$n/pid")
    kill -KILL "$p"
    wait "$p" 2> /dev/null
}

vm_alive() { kill -0 "$(cat "$LAB/vm/$1/pid")" 2> /dev/null; }

# Reboot a (killed) server VM and prepare it as the standby.
vm_reboot_server() {
    local n=$1 t
    vm_alive "$n" && vm_kill "$n"
    vm_start "$n"
    vm_wait_ready "$n" 180 || return 1
    t=$(vm_exec "$n" server-prep)
    vm_wait "$n" "$t" 120
}

# --- timelines ------------------------------------------------------------------------------
tl_start() { TL=$LAB/timeline-$1.txt; : > "$TL"; }
tl() { echo "$(now) host $*" >> "$TL"; }
tl_guest() { grep '^MARK ' "$LAB/vm/$1/out/$2.out" | awk -v n="${VM_HOST[$1]}" '{ $1 = ""; t = $2; $2 = ""; sub(/^  /, ""); print t, n, $0 }' >> "$TL"; }
tl_print() {
    sort -n -k1,1 "$TL" | awk -v t0="$1" '{ t = $1; who = $2; $1 = ""; $2 = ""; sub(/^  /, ""); printf "  %+8.2f s  %-8s %s\n", t - t0, who, $0 }'
}
# First event time on the timeline whose text matches a regex (empty if none).
tl_find() { sort -n -k1,1 "$TL" | awk -v re="$1" '$0 ~ re { print $1; exit }'; }
tl_sub() { [[ -n $1 && -n $2 ]] && echo "$1 - $2" | bc | awk '{printf "%.2f", $1}' || echo "-"; }

# --- workload -------------------------------------------------------------------------------
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

# Stop C's and D's workload; sets TORTURE_JSON PROBE_JSON WRITER_ACKED; verifies the file.
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
wait_writer_resumed() {
    local t=$1 limit=$2 i r
    for ((i = 0; i < limit * 10; i++)); do
        r=$(writer_resumed_after "$t")
        [[ -n $r ]] && { echo "$r"; return 0; }
        sleep 0.1
    done
    return 1
}

# Verdict lines from the reports; returns 1 on any violation.
judge_workload() {
    local bad=0 v
    if [[ -z $TORTURE_JSON ]]; then
        echo "  FAIL: no lock-torture report from C"
        bad=1
    else
        v=$(jq -r '"lock-torture (C): verdict \(.verdict), locks held at end \(.locks_held_at_end)/\(.locks), lost \(.locks_lost), writes ok \(.writes_ok), ENOLCK \(.enolck), EIO \(.eio), longest write gap \(.longest_io_gap_ms|floor) ms"' <<< "$TORTURE_JSON")
        echo "  $v"
        [[ $(jq -r .verdict <<< "$TORTURE_JSON") == pass ]] || bad=1
    fi
    if [[ -z $PROBE_JSON ]]; then
        echo "  FAIL: no probe report from D"
        bad=1
    else
        v=$(jq -r '"probe (D, another client): \(.probe_rounds) rounds, conflicting grants \(.conflicting_grants), free observations \(.free_observations), probe errors \(.probe_errors)"' <<< "$PROBE_JSON")
        echo "  $v"
        [[ $(jq -r '.conflicting_grants + .free_observations' <<< "$PROBE_JSON") == 0 ]] || bad=1
    fi
    local t
    t=$(vm_exec "$ACTIVE" verify-writer "$WRITER_ACKED")
    if vm_wait "$ACTIVE" "$t" 60; then
        echo "  data: $(vm_out "$ACTIVE" "$t" | tail -1)"
    else
        echo "  FAIL data: $(vm_out "$ACTIVE" "$t" | tail -3)"
        bad=1
    fi
    return $bad
}

# --- scenarios ------------------------------------------------------------------------------
NEED_REBOOT=
banner() {
    if [[ -n $NEED_REBOOT ]]; then
        log "booting the killed VM ${VM_HOST[$NEED_REBOOT]} again as the standby"
        vm_reboot_server "$NEED_REBOOT" || return 1
        NEED_REBOOT=
    fi
    echo
    echo "=== $*"
}

# Phase breakdown of one failover from the merged timeline; T0 = kill or handoff start.
# Sets RESUMED_S (T0 -> writer resumed).
print_phases() {
    local t0=$1 new=${VM_HOST[$2]} t_told t_start t_mounted t_nfsd t_ip t_notified t_locks t_nlm t_v4 t_res
    t_start=$(tl_find "$new activate start")
    t_mounted=$(tl_find "$new mounted")
    t_nfsd=$(tl_find "$new nfsd started")
    local t_tickle
    t_tickle=$(tl_find "$new (tickled|no tickle)")
    t_ip=$(tl_find "$new floating IP up")
    t_notified=$(tl_find "$new (takeover done|sm-notify started)")
    t_locks=$(tl_find "$new [0-9]+ locks held on the server")
    t_nlm=$(tl_find "$new lockd grace over")
    t_v4=$(tl_find "$new v4 grace over")
    t_res=$(tl_find "writes resumed")
    echo "  phases (s; T0 = the kill, or the start of the old node's handoff script):"
    local t_old_done
    t_old_done=$(tl_find "MMP clean")
    [[ -z $(tl_find "MMP clean") ]] || printf '    %-34s %s\n' "old node: release, stop, umount" "$(tl_sub "$t_old_done" "$t0")"
    local t_held
    t_held=$(tl_find "$new area held by mmpd")
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
    RESUMED_S=$(tl_sub "$t_res" "$t0")
    LOCKS_S=$(tl_sub "$t_locks" "$t0")
    MMP_S=$(tl_sub "$t_mounted" "$t_start")
    echo "PHASES $SCEN_NAME release=$(tl_sub "$t_old_done" "$t0") start=$(tl_sub "$t_start" "$t0") claim=$(tl_sub "$t_held" "$t_start") mount=$(tl_sub "$t_mounted" "$t_start") nfsd=$(tl_sub "$t_nfsd" "$t_mounted") ip=$(tl_sub "$t_ip" "$t_nfsd") tickle=$(tl_sub "$t_tickle" "$t_ip") notify=$(tl_sub "$t_notified" "$t_tickle") locks=$(tl_sub "$t_locks" "$t0") nlm_grace=$(tl_sub "$t_nlm" "$t0") v4_grace=$(tl_sub "$t_v4" "$t0") resumed=$(tl_sub "$t_res" "$t0")" >> "$LAB/phases.txt"
}

EXPECTED_LOCKS=2 # lock-torture's 4 adjacent ranges (one lock on the server) + the writer's

# One failover of the service from ACTIVE to STANDBY: kind hard (kill ACTIVE's qemu) or
# handoff (planned release). Workload must be running. Returns 1 if a step failed.
failover_once() {
    local kind=$1 mode=$2 old=$ACTIVE new=$STANDBY t0 ta tw tr rc=0 res
    tl_start "$SCEN_NAME"
    tw=$(vm_exec "$new" watch-recovery $EXPECTED_LOCKS 150)
    if [[ ${LAB_DIAG:-0} == 1 ]]; then vm_exec c net-watch > /dev/null; fi
    if [[ $HOLDER == mmpd ]]; then
        # What the next claim will see: does the holder's block carry a self-fence tag?
        local fj
        fj=$("$LAB/share/bin/mmp-tool" check --json --timeout 1 "$LAB/area.img" 2> /dev/null)
        FENCE_TAG=$(jq -c '.fence_tag' <<< "$fj" 2> /dev/null)
        echo "  before: the area's MMP block ($(jq -r '.last_update.node_name // .first_read.node_name // "?"' <<< "$fj" 2> /dev/null), check interval $(jq -r .check_interval <<< "$fj" 2> /dev/null) s) carries fence tag: ${FENCE_TAG:-?}"
    fi
    t0=$(now)
    if [[ $kind == hard ]]; then
        vm_kill "$old"
        tl "killed VM ${VM_HOST[$old]} (qemu pid, power fencing)"
    elif [[ $kind == freeze ]]; then
        if [[ ${LAB_FREEZE:-sigstop} == monitor ]]; then
            echo stop 1<> "$LAB/vm/$old/mon.in"
            tl "paused VM ${VM_HOST[$old]} (monitor 'stop': its clocks stop too; not fenced)"
        else
            kill -STOP "$(cat "$LAB/vm/$old/pid")"
            tl "froze VM ${VM_HOST[$old]} (SIGSTOP of its qemu: the whole node hangs, not fenced)"
        fi
    else
        tl "planned handoff starts"
        tr=$(vm_exec "$old" deactivate "$mode")
        vm_wait "$old" "$tr" 120 || rc=1
        tl_guest "$old" "$tr"
        [[ $rc -eq 0 ]] || { tl_print "$t0"; return 1; }
    fi
    local t_out=$t0
    if [[ $kind == handoff ]]; then
        # Clock starts when the old node's handoff script starts (not when the lab sent it);
        # writes go on until its floating IP goes down.
        t0=$(tl_find "${VM_HOST[$old]} deactivate start")
        # Writes go on until the old node stops nfsd: a write in flight when its floating IP
        # went down can still be acknowledged (seen: one 0.2 s after "floating IP down", which
        # read as "writes resumed" 5 s into a handoff). After "nfsd stopped" only the new
        # server can acknowledge one.
        t_out=$(tl_find "${VM_HOST[$old]} nfsd stopped")
    fi
    ta=$(vm_exec "$new" activate "$mode")
    tl "${VM_HOST[$new]} told to take over"
    vm_wait "$new" "$ta" 180 || rc=1
    tl_guest "$new" "$ta"
    if res=$(wait_writer_resumed "$t_out" 60); then
        echo "$res client writes resumed (first fsynced record under the lock)" |
            awk '{ t = $1; $1 = ""; print t, "clientc", $0 }' >> "$TL"
    else
        tl "client writes did NOT resume within 60 s of the takeover"
        rc=1
    fi
    # The watcher ends when locks are back and both graces are over (or at its time limit).
    vm_wait "$new" "$tw" 200 > /dev/null 2>&1
    tl_guest "$new" "$tw"
    if [[ ${LAB_DIAG:-0} == 1 ]]; then
        vm_exec c net-watch-stop > /dev/null
        local td
        td=$(vm_exec c dmesg 60)
        vm_wait c "$td" 30 && vm_out c "$td" > "$LAB/dmesg-c-$SCEN_NAME.txt"
    fi
    ACTIVE=$new STANDBY=$old
    if ! vm_alive "$new"; then
        tl "the new server's VM exited (qemu: $(tail -1 "$LAB/vm/$new/qemu.log" 2> /dev/null); a watchdog reset?)"
        rc=1
    fi
    tl_print "$t0"
    print_phases "$t0" "$new"
    if [[ $mode == ours ]]; then
        local tj
        tj=$(vm_out "$new" "$ta" | sed -n 's/^takeover: //p')
        if [[ -n $tj ]]; then
            jq -r '"  lockd-recover takeover: notified \(.notify.notified) clients, failed \(.notify.failed), in \(.notify.elapsed_ms) ms; ledger locks \(.reclaim.expected // "-"), all held again after \(.reclaim.reclaimed_after_ms // "-") ms, missing \(.reclaim.missing // [] | length), grace ended: \(.reclaim.grace_ended != null)"' <<< "$tj" 2> /dev/null
            jq -r '.notify.clients[] | select(.status != "notified") | "  WARNING: takeover could not notify \(.host): \(.status): \(.detail)"' <<< "$tj" 2> /dev/null
        fi
        if [[ $HOLDER == mmpd ]]; then
            vm_out "$new" "$ta" | grep -E '^mmpd: .*(claimed|armed|fence)' | sed 's/^/  /' | cut -c1-300
        fi
        local mj
        mj=$(vm_out "$new" "$ta" | sed -n 's/^mmp-tool mount: //p')
        [[ -n $mj ]] && jq -r '"  mmp-tool mount: \(.result), claim \(.claim_seconds) s, mount \(.mount_seconds) s, handoff window \(.handoff_window_ms) ms"' <<< "$mj" 2> /dev/null
    fi
    return $rc
}

scenario_hard() {
    local mode=$1 rc=0
    SCEN_NAME=hard-$mode
    banner "scenario 1$([[ $mode == stock ]] && echo ' (stock tools: kernel mount, sm-notify, default grace)'): hard failover ${VM_HOST[$ACTIVE]} -> ${VM_HOST[$STANDBY]}, ${VM_HOST[$ACTIVE]} killed" || return 1
    workload_start || return 1
    sleep 3
    local killed=$ACTIVE
    failover_once hard "$mode" || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    echo "  target: client writes resumed within 30 s of the kill: $RESUMED_S s $(awk -v r="$RESUMED_S" 'BEGIN { print (r != "-" && r + 0 <= 30) ? "(met)" : "(NOT met)" }')"
    echo "RESULT $SCEN_NAME holder=$HOLDER fence_tag_bound_ms=$(jq -r '.bound_ms // "none"' <<< "${FENCE_TAG:-null}" 2> /dev/null) resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S rc=$rc load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" >> "$LAB/phases.txt"
    # The killed VM is booted again as the standby when the next scenario needs it.
    NEED_REBOOT=$killed
    echo "  verdict: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"
    return $rc
}

scenario_handoff() {
    local mode=$1 rc=0
    SCEN_NAME=handoff-$mode
    banner "scenario 3$([[ $mode == stock ]] && echo ' (stock tools: unlock_filesystem, kernel mount, sm-notify, default grace)'): planned handoff ${VM_HOST[$ACTIVE]} -> ${VM_HOST[$STANDBY]}" || return 1
    workload_start || return 1
    sleep 3
    failover_once handoff "$mode" || rc=1
    sleep 3
    workload_stop
    judge_workload || rc=1
    echo "RESULT $SCEN_NAME holder=$HOLDER resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S rc=$rc load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" >> "$LAB/phases.txt"
    echo "  verdict: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"
    return $rc
}

scenario_rounds() {
    local rounds=$1 rc=0 i killed worst=0
    SCEN_NAME=rounds
    banner "scenario 4: $rounds alternating hard failovers with the client workload running throughout" || return 1
    workload_start || return 1
    sleep 3
    for ((i = 1; i <= rounds; i++)); do
        echo "--- round $i: ${VM_HOST[$ACTIVE]} -> ${VM_HOST[$STANDBY]}"
        killed=$ACTIVE
        SCEN_NAME=round$i
        failover_once hard ours || { rc=1; echo "  round $i FAILED"; }
        echo "RESULT round$i holder=$HOLDER fence_tag_bound_ms=$(jq -r '.bound_ms // "none"' <<< "${FENCE_TAG:-null}" 2> /dev/null) resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" >> "$LAB/phases.txt"
        vm_reboot_server "$killed" || { rc=1; break; }
    done
    SCEN_NAME=rounds
    workload_stop
    judge_workload || rc=1
    echo "  per round (kill -> writes resumed, s): $(awk '/^RESULT round/ { sub(/resumed=/, "", $3); printf "%s ", $3 }' "$LAB/phases.txt")"
    echo "  verdict: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"
    return $rc
}

# mon_writes NODE: write requests the VM's qemu has completed on the shared disk (d0) so far,
# from the human monitor (mmpd holder only; empty if the VM does not answer).
mon_writes() {
    local d=$LAB/vm/$1
    # Fifos opened read-write (1<>) never block, even once qemu has exited (a plain > would).
    [[ -p $d/mon.in ]] || return 0
    timeout 0.2 cat "$d/mon.out" > /dev/null 2>&1
    echo "info blockstats" 1<> "$d/mon.in" || return 0
    timeout 0.5 cat "$d/mon.out" 2> /dev/null | tr -d '\r' | awk '/^d0:/ { f = 1 } f && /wr_operations=/ { sub(/.*wr_operations=/, ""); print $1 + 0; exit }'
}

# Scenario 5 (mmpd holder): the active node hangs as a whole (its qemu is stopped: SIGSTOP, or
# with LAB_FREEZE=monitor the monitor's `stop`, which also stops the guest's clocks), the other
# node takes over after the self-fence bound, then the hung node is continued: its watchdog
# (softdog, expired while it was stopped) must reset it before it serves or writes again.
# Pass: as scenario 1, plus the continued VM resets (qemu exits) within 30 s, and the shared
# filesystem checks clean (`e2fsck -fn` on the host while the new server has it frozen).
scenario_frozen() {
    local rc=0 frozen=$ACTIVE p t tc t_reset
    SCEN_NAME=frozen
    if [[ $HOLDER != mmpd ]]; then
        echo "lab.sh: scenario 5 needs --holder mmpd (the watchdog fence)" >&2
        return 1
    fi
    banner "scenario 5: frozen holder: ${VM_HOST[$ACTIVE]}'s qemu stopped (SIGSTOP), ${VM_HOST[$STANDBY]} takes over, then ${VM_HOST[$ACTIVE]} is continued: its watchdog must reset it" || return 1
    workload_start || return 1
    sleep 3
    p=$(cat "$LAB/vm/$frozen/pid")
    failover_once freeze ours || rc=1
    sleep 2
    local w0= w w_last= t_w=
    # Writes to the shared disk after the pause ended: qemu's count, before and while it runs.
    [[ ${LAB_FREEZE:-sigstop} == monitor ]] && w0=$(mon_writes "$frozen")
    tc=$(now)
    if [[ ${LAB_FREEZE:-sigstop} == monitor ]]; then
        echo cont 1<> "$LAB/vm/$frozen/mon.in"
        log "continued ${VM_HOST[$frozen]} (monitor 'cont'; its shared-disk writes so far: ${w0:-?})"
    else
        kill -CONT "$p"
        log "continued ${VM_HOST[$frozen]} (SIGCONT)"
    fi
    local t_end
    t_end=$(($(date +%s) + 30))
    while [[ $(date +%s) -lt $t_end ]]; do
        kill -0 "$p" 2> /dev/null || break
        if [[ -n $w0 ]]; then
            w=$(mon_writes "$frozen")
            [[ -n $w ]] && { w_last=$w; t_w=$(dt "$tc"); }
        else
            sleep 0.1
        fi
    done
    if [[ -n $w0 && -n $w_last ]]; then
        echo "  ${VM_HOST[$frozen]}'s writes to the shared disk after it was continued: $((w_last - w0)) (at least; last count $t_w s after cont)"
        if [[ $((w_last - w0)) -ne 0 ]]; then
            echo "  FAIL: the continued node wrote to the shared disk that ${VM_HOST[$ACTIVE]} has mounted, before its watchdog reset it"
            rc=1
        fi
    fi
    if kill -0 "$p" 2> /dev/null; then
        echo "  FAIL: ${VM_HOST[$frozen]} still runs 30 s after it was continued (its watchdog did not reset it)"
        rc=1
    else
        wait "$p" 2> /dev/null
        t_reset=$(dt "$tc")
        echo "  ${VM_HOST[$frozen]} continued: its VM reset $t_reset s later$([[ -n $w0 ]] && echo ' (up to 0.7 s late: the monitor poll)') (qemu -no-reboot exited); its console:"
        grep -aiE 'softdog|watchdog|reboot|EXT4|nfsd|mmp' "$LAB/vm/$frozen/console.log" | tail -8 | sed 's/^/    /' | cut -c1-200
    fi
    sleep 3
    workload_stop
    judge_workload || rc=1
    # The shared filesystem after the hung node's return: frozen on the new server (journal
    # flushed), checked read-only on the host.
    t=$(vm_exec "$ACTIVE" fs-freeze)
    if vm_wait "$ACTIVE" "$t" 60; then
        local fsck
        fsck=$(e2fsck -fn "$LAB/shared.img" 2>&1)
        local frc=$?
        t=$(vm_exec "$ACTIVE" fs-thaw)
        vm_wait "$ACTIVE" "$t" 60 || rc=1
        if [[ $frc -eq 0 ]]; then
            echo "  filesystem: e2fsck -fn clean ($(tail -1 <<< "$fsck"))"
        else
            echo "  FAIL filesystem: e2fsck -fn exit $frc:"
            head -20 <<< "$fsck" | sed 's/^/    /'
            rc=1
        fi
    else
        rc=1
    fi
    echo "RESULT $SCEN_NAME holder=$HOLDER fence_tag_bound_ms=$(jq -r '.bound_ms // "none"' <<< "${FENCE_TAG:-null}" 2> /dev/null) resumed=$RESUMED_S locks=$LOCKS_S mmp=$MMP_S reset_after_cont=${t_reset:--} rc=$rc load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" >> "$LAB/phases.txt"
    NEED_REBOOT=$frozen
    echo "  verdict: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"
    return $rc
}

# Hash of an image without one 4 KiB block (the MMP block: kmmpd or mmpd rewrites it every second).
hash_without_block() {
    local img=$1 blk=$2 bs=4096
    { head -c $((blk * bs)) "$img"; tail -c +$(((blk + 1) * bs + 1)) "$img"; } | sha256sum | cut -c1-16
}
# The shared disk without its MMP block; with the mmpd holder the whole shared disk (it has no
# MMP block) and the area without its MMP block.
disk_hash() {
    if [[ $HOLDER == mmpd ]]; then
        echo "$(sha256sum < "$LAB/shared.img" | cut -c1-16)+area:$(hash_without_block "$LAB/area.img" "$AREA_MMP_BLOCK")"
    else
        hash_without_block "$LAB/shared.img" "$MMP_BLOCK"
    fi
}

scenario_split_brain() {
    local rc=0 t h1 h2 holder
    SCEN_NAME=split-brain
    banner "scenario 2: split brain refused: ${VM_HOST[$ACTIVE]} holds the filesystem$([[ $HOLDER == mmpd ]] && echo ' (mmpd holds the MMP area)'), ${VM_HOST[$STANDBY]} is told to take over" || return 1
    tl_start split-brain
    # Quiesce the active node's own writes (the ledger recorder rewrites its file every second)
    # so that the only writes left are kmmpd's (mmpd's) to the MMP block.
    t=$(vm_exec "$ACTIVE" record-pause)
    vm_wait "$ACTIVE" "$t" 30
    t=$(vm_exec "$ACTIVE" sync)
    vm_wait "$ACTIVE" "$t" 30
    sleep 2
    h1=$(disk_hash)
    # Sample the MMP block from the host: the holder's name must never change.
    (while :; do
        "$LAB/share/bin/mmp-tool" status --json "$LAB/$([[ $HOLDER == mmpd ]] && echo area || echo shared).img" 2> /dev/null |
            jq -r '"\(now) \(.node_name // .nodename // .node // "?") \(.sequence // .seq // "?")"' 2> /dev/null
        sleep 0.2
    done > "$LAB/mmp-samples.txt") &
    SAMPLER_PID=$!
    local t0
    t0=$(now)
    tl "${VM_HOST[$STANDBY]} told to take over while ${VM_HOST[$ACTIVE]} is active"
    t=$(vm_exec "$STANDBY" split-brain --kernel)
    vm_wait "$STANDBY" "$t" 120 || rc=1
    tl_guest "$STANDBY" "$t"
    kill "$SAMPLER_PID" 2> /dev/null
    wait "$SAMPLER_PID" 2> /dev/null
    SAMPLER_PID=
    t=$(vm_exec "$ACTIVE" sync)
    vm_wait "$ACTIVE" "$t" 30
    sleep 1
    h2=$(disk_hash)
    t=$(vm_exec "$ACTIVE" record-resume)
    vm_wait "$ACTIVE" "$t" 30
    tl_print "$t0"
    vm_out "$STANDBY" "$(ls "$LAB/vm/$STANDBY/out" | grep -- '-split-brain.out$' | tail -1 | sed 's/\.out$//')" |
        grep -E '^mmp-tool mount:|MMP|mmp|refused' | sed 's/^/  /' | cut -c1-300
    holder=$(awk '{ print $2 }' "$LAB/mmp-samples.txt" | sort -u | tr '\n' ' ')
    echo "  MMP block sampled $(wc -l < "$LAB/mmp-samples.txt") times from the host: node names seen: $holder"
    if [[ $holder != "${VM_HOST[$ACTIVE]} " ]]; then
        echo "  FAIL: the MMP block named another node than ${VM_HOST[$ACTIVE]}"
        rc=1
    fi
    echo "  disk$([[ $HOLDER == mmpd ]] && echo ' (and area)') without the MMP block: before $h1, after $h2"
    [[ $h1 == "$h2" ]] || { echo "  FAIL: the disk changed"; rc=1; }
    # The active node still serves.
    t=$(vm_exec c client-write-check)
    if vm_wait c "$t" 60; then echo "  ${VM_HOST[$ACTIVE]} still serves: client C wrote and read back a file"; else rc=1; fi
    echo "  verdict: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"
    return $rc
}
