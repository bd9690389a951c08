#!/bin/bash
# Scenario 10 (many volumes) inside the lab's VMs, run by the host (lib/volumes.sh) through the
# agent, like node.sh.
#   volumes.sh server-prep                      (A, B) load ext4, nfsd, lockd, macvlan
#   volumes.sh svc-start N FIP MODE initial|FENCED   (A, B) start NFS service N (volumes
#                                               (N-1)*10+1 .. N*10) with floating IP FIP in its own
#                                               network namespace: MODE ours|stock; initial: the
#                                               lab's first start (fresh volumes, grace ended at
#                                               once); FENCED: a takeover from that node, whose
#                                               power fence confirmed (ours: mmp-tool mount
#                                               --fenced)
#   volumes.sh svc-exec N CMD...                (A, B) run CMD inside service N's namespaces
#   volumes.sh verify N                         (server) the holders' files of service N
#   volumes.sh sampler-start|sampler-stop       (B) CPU and memory samples to $C/sampler.log
#   volumes.sh client-prep FIP1 FIP2            (C, D) rpcbind, statd, mount all 20 exports
#   volumes.sh holders-start SPEC...            (C, D) holders (guest/holders.pl); SPEC = VV:H
#   volumes.sh holders-stop                     (C, D)
#   volumes.sh probes-start SPEC...|probes-stop (D) flock probes of other clients' files
#
# One NFS service per network namespace. Grace is per network namespace (fs/nfs_common/grace.c:
# locks_in_grace(net); lockd's grace starts in lockd_up_net() for its first user in a netns) and
# so are nfsd (its threads, sockets, export cache and state: struct nfsd_net), lockd (struct
# lockd_net) and the sunrpc caches mountd answers (/proc/net/rpc/*: the reader's netns). A
# takeover that starts nfsd in the netns of a service already running on the node would restart
# that service's grace and nfsd: so service N runs in netns svcN, which moves with it.
# The namespace's view of the files (`ip netns exec` gives the command its own mount namespace,
# iproute2's netns_switch(): unshare(CLONE_NEWNS), / made rslave, /sys remounted):
#   - /proc/fs/nfsd is mounted again inside it: the nfsd filesystem is keyed on the netns of the
#     mounter (fs/nfsd/nfsctl.c nfsd_fs_get_tree: get_tree_keyed(fc, nfsd_fill_super,
#     get_net(fc->net_ns))), so a mount inherited from the root namespace would start the root
#     netns's nfsd;
#   - /run is a tmpfs of its own (with the lab's /run/lab and /run/labfiles bound back in):
#     rpcbind's AF_LOCAL socket has one fixed path (/run/rpcbind.sock), and the kernel's rpcbind
#     client tries that socket first and falls back to 127.0.0.1:111 in the netns
#     (net/sunrpc/rpcb_clnt.c rpcb_create_local: rpcb_create_local_unix, then
#     rpcb_create_local_net). The servers run no rpcbind outside the services, so whichever mount
#     namespace the kernel resolves the path in, it reaches the service's own rpcbind;
#     statd's and sm-notify's pid files are there too;
#   - /var/lib/nfs is a tmpfs of its own: exportfs's and mountd's etab/rmtab are per service;
#   - the service's volumes are mounted only there (private propagation), and its daemons keep
#     that mount namespace alive; an anchor process (sleep) lets later commands nsenter it.
# The floating IP is on a macvlan (bridge mode) on eth0 moved into the netns, with one MAC per
# service (the same on both servers, as a VRRP virtual MAC): the clients' neighbour entries
# stay right, the gratuitous ARP only moves the bridge's forwarding entry.
set -u
. /run/lab/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BIN=$LAB_BIN
C=/run/lab
PER_SVC=10
VOLROOT=/srv/vol
CLIMNT=/mnt/vol
NFSOPTS=vers=3,proto=tcp,hard,timeo=10,retrans=2
# The anchors and pid files the root namespace must see: /var/tmp is one tmpfs for all mount
# namespaces (only /run, /var/lib/nfs and the volumes are private to a service).
STATE=/var/tmp/volsvc

mark() { echo "MARK $(date +%s.%N) $*"; }
die() { mark "FAILED $*"; echo "volumes.sh: $*" >&2; exit 1; }

. /run/labfiles/guest/common.sh

# The volumes of service N: vol01..vol10, vol11..vol20.
svc_vols() {
    local n=$1 i
    for ((i = (n - 1) * PER_SVC + 1; i <= n * PER_SVC; i++)); do printf 'vol%02d\n' "$i"; done
}

# /usr/bin/time's line for one of our tools: user and system CPU seconds and max RSS (KiB) of a
# process that exits (mmp-tool mount, lockd-recover takeover/wait-reclaim), for the host's sums.
timed() {
    local tag=$1
    shift
    /usr/bin/time -f "CPUTIME $tag %U %S %M" -a -o "$STATE/cputime.$$" "$@"
}

server_prep() {
    modprobe ext4 && modprobe nfsd && modprobe lockd && modprobe macvlan || die "modprobe"
    mkdir -p $STATE $VOLROOT
    local v missing=0
    for v in $(svc_vols 1) $(svc_vols 2); do disk_by_serial "lab$v" > /dev/null || missing=$((missing + 1)); done
    [[ $missing -eq 0 ]] || die "$missing of the 20 volume disks not found"
    mark "server prepared (20 volume disks)"
}

# svc-start N FIP MODE [FENCED]: the netns and its link, then the rest inside it.
svc_start() {
    local n=$1 fip=$2 mode=$3 fenced=$4 ns=svc$1 mac
    mark "svc$n activate start ($mode)"
    mkdir -p $STATE
    rm -f "$STATE/cputime."*
    ip netns list | grep -qw "$ns" && die "netns $ns already exists on this node"
    ip netns add "$ns" || die "ip netns add $ns"
    mac=$(printf '52:54:00:12:01:%02x' "$n")
    ip link add "mv$n" link eth0 address "$mac" type macvlan mode bridge || die "macvlan"
    ip link set "mv$n" netns "$ns" || die "macvlan into $ns"
    mark "svc$n netns $ns with macvlan mv$n ($mac)"
    ip netns exec "$ns" bash /run/labfiles/guest/volumes.sh svc-inside "$n" "$fip" "$mode" "$fenced"
    local rc=$?
    # The CPU time and peak RSS of our tools that ran and exited (the host sums them).
    cat "$STATE/cputime."* 2> /dev/null | grep '^CPUTIME'
    return $rc
}

svc_inside() {
    local n=$1 fip=$2 mode=$3 fenced=$4 v dev first rc initial=0
    [[ $fenced == initial ]] && initial=1 fenced=
    local -a vols pids
    # (no process substitution: there is no /dev/fd in the busybox guest's devtmpfs)
    read -r -d '' -a vols <<< "$(svc_vols "$n")"
    first=$VOLROOT/${vols[0]}
    mount --make-rprivate / || die "make-rprivate"
    # Private /run (rpcbind's socket, pid files), the lab's control and files bound back in.
    local hold=/srv/.hold$n
    mkdir -p "$hold" && mount --rbind /run "$hold" || die "hold /run"
    mount -t tmpfs -o mode=0755 tmpfs /run || die "tmpfs /run"
    mkdir -p /run/lab /run/labfiles /run/rpcbind /run/sendsigs.omit.d
    mount --rbind "$hold"/lab /run/lab && mount --rbind "$hold"/labfiles /run/labfiles || die "bind lab dirs"
    umount -l "$hold"
    mount -t tmpfs -o mode=0755 tmpfs /var/lib/nfs || die "tmpfs /var/lib/nfs"
    mkdir -p /var/lib/nfs/sm /var/lib/nfs/sm.bak
    : > /var/lib/nfs/etab
    : > /var/lib/nfs/rmtab
    mountpoint -q /proc/fs/nfsd && umount /proc/fs/nfsd
    mount -t nfsd nfsd /proc/fs/nfsd || die "mount nfsd fs in the netns"
    ip link set lo up
    ip link set "mv$n" up
    setsid sleep 2147483647 > /dev/null 2>&1 < /dev/null &
    echo $! > "$STATE/svc$n.anchor"
    rpcbind -w || die "rpcbind"
    mark "svc$n namespace ready (own /run, /var/lib/nfs, nfsd fs; rpcbind)"
    # The gate and the mounts, the 10 volumes in parallel.
    for v in "${vols[@]}"; do
        dev=$(disk_by_serial "lab$v") || die "no disk lab$v"
        mkdir -p "$VOLROOT/$v"
        if [[ $mode == ours ]]; then
            timed "mmp-tool-mount-$v" "$BIN/mmp-tool" mount --json -q ${fenced:+--fenced "$fenced"} "$dev" "$VOLROOT/$v" > "/run/mmp-mount-$v.json" 2>&1 &
        else
            mount -t ext4 "$dev" "$VOLROOT/$v" > "/run/mount-$v.err" 2>&1 &
        fi
        pids+=($!)
    done
    if [[ $mode == ours ]]; then
        # rpc.mountd during the MMP gate (nothing reaches it before the floating IP).
        rpc.mountd || die "rpc.mountd"
    fi
    rc=0
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { rc=1; echo "mount of ${vols[$i]} failed: $(cat "/run/mmp-mount-${vols[$i]}.json" "/run/mount-${vols[$i]}.err" 2> /dev/null)"; }
    done
    [[ $rc -eq 0 ]] || die "a volume's gate or mount failed"
    [[ $mode == ours ]] && echo "mmp-tool mount $(jq -c '{result, claim_seconds, mount_seconds}' "/run/mmp-mount-${vols[0]}.json" 2> /dev/null) (${vols[0]}; all ${#vols[@]} mounted)"
    mark "svc$n mounted ${#vols[@]} volumes"
    mkdir -p "$first/statd/sm" "$first/statd/sm.bak" "$first/tickle"
    rpc.statd --no-notify -P "$first/statd" || die "rpc.statd"
    [[ $mode == ours ]] || { rpc.mountd || die "rpc.mountd"; }
    for v in "${vols[@]}"; do
        mkdir -p "$VOLROOT/$v/ledger"
        exportfs -i -o rw,sync,no_root_squash,no_subtree_check "$LAB_NET:$VOLROOT/$v" || die "exportfs $v"
    done
    mark "svc$n statd, mountd, exports"
    # NFSv3 only (-N 4): the holders are NFSv3; without nfsdcld in the namespace nfsd would
    # have no v4 client tracker anyway (nfsdcltrack and the legacy tracker refuse a non-init
    # netns: fs/nfsd/nfs4recover.c).
    if [[ $mode == ours ]]; then
        # v4 grace 10 s (the kernel's minimum): without a client tracker in the netns
        # (nfsdcld does not run here) this kernel refuses to end v4 grace early
        # (v4_end_grace: EBUSY, seen on Debian's 6.1.0-57), and while v4 grace runs lockd
        # grants no new NLM lock either (locks_in_grace(net) covers both managers); the
        # laundromat ends it after 10 s (no v4 client reclaims). NLM reclaims are not held back.
        # lockd's grace 240 s (its maximum; our takeover ends it once every ledger lock is
        # back): the run of 18:03 had 60 s, which ran out on the overloaded B before the
        # clients' reclaims came (+472 s nfsd, +532 s grace over, writes back +557 s) and D was
        # granted C's locks 2259 times. Not yet run with 240.
        timed start-nfsd "$BIN/lockd-recover" start-nfsd --scope "nfs-svc$n" --threads 8 --nlm-grace 240 \
            --v4-grace 10 --lease 10 -- -N 4 > /run/start-nfsd.out 2>&1
        rc=$?
        sed 's/^/start-nfsd: /' /run/start-nfsd.out
        [[ $rc -eq 0 ]] || die "lockd-recover start-nfsd (exit $rc)"
    else
        # The kernel's defaults (lockd 5 x nlm_timeout = 50 s, v4 90 s); nlm_grace_period is
        # one global sysctl, v4's times are per netns.
        echo 0 > /proc/sys/fs/nfs/nlm_grace_period
        # (the lab's first start: 10 s, v4 grace cannot be ended early here, see above)
        if [[ $initial -eq 1 ]]; then echo 10 > /proc/fs/nfsd/nfsv4gracetime; else echo 90 > /proc/fs/nfsd/nfsv4gracetime; fi
        rpc.nfsd -N 4 8 || die "rpc.nfsd"
    fi
    mark "svc$n nfsd started"
    ip addr add "$fip/$LAB_PREFIX" dev "mv$n" || die "floating IP"
    busybox arping -U -c 3 -I "mv$n" -s "$fip" "$fip" > /dev/null 2>&1 &
    mark "svc$n floating IP up"
    local nt
    if nt=$(tickle_from "$first/tickle/$fip"); then mark "svc$n tickled $nt client connections"; else mark "svc$n no tickle"; fi
    if [[ $mode == ours ]]; then
        # takeover notifies every client once (the statd directory is the service's) and
        # waits for the first volume's ledger; each other volume's ledger is waited for by a
        # wait-reclaim: all without ending grace (grace is per netns, one for the 10), which
        # ends once every volume's locks are back.
        local -a wpids
        for v in "${vols[@]:1}"; do
            [[ -s $VOLROOT/$v/ledger/lockd-recover-ledger.json ]] || continue
            timed "wait-reclaim-$v" "$BIN/lockd-recover" --json wait-reclaim --state-dir "$VOLROOT/$v/ledger" \
                --fs "$VOLROOT/$v" --timeout 180 --min-grace 0 --no-end-grace --max-age 900 > "/run/wait-$v.json" 2> "/run/wait-$v.err" &
            wpids+=($!)
        done
        timed takeover "$BIN/lockd-recover" --json takeover --state-dir "$first/statd" --ip "$fip" \
            --mon-name "nfs-svc$n" --fs "$first" --ledger-dir "$first/ledger" --deadline 60 \
            --timeout 180 --min-grace 5 --no-end-grace --max-age 900 > /run/takeover.json 2> /run/takeover.err
        rc=$?
        echo "takeover: $(jq -c . /run/takeover.json 2> /dev/null)"
        [[ $rc -eq 0 ]] || sed 's/^/takeover stderr: /' /run/takeover.err | tail -5
        mark "svc$n takeover done (exit $rc)"
        local wrc=0 all=0
        for i in "${!wpids[@]}"; do wait "${wpids[$i]}" || wrc=$((wrc + 1)); done
        mark "svc$n every volume's ledger locks held again ($wrc of $((${#vols[@]} - 1)) wait-reclaims failed)"
        # Grace ends early only when every volume's ledger locks are back: ending it with a lock
        # missing would let another client take it before its owner reclaims. Otherwise lockd's
        # grace runs its course (240 s from nfsd's start).
        if [[ $rc -eq 0 && $wrc -eq 0 ]]; then
            "$BIN"/lockd-recover grace end --which nlm > /dev/null || die "lockd-recover grace end"
            mark "svc$n grace ended (lockd's, this netns only; v4's ends 10 s after nfsd's start)"
        else
            mark "svc$n grace left to run out (a ledger lock is missing)"
        fi
        # One recorder for the service's volumes, one ledger per volume on that volume (the
        # runs of 17:36-17:58 had one recorder per volume: 20 processes on B, over the budget).
        local -a rec=()
        for v in "${vols[@]}"; do rec+=(--fs "$VOLROOT/$v" --state-dir "$VOLROOT/$v/ledger"); done
        setsid "$BIN/lockd-recover" record "${rec[@]}" --interval 1 > "/run/record-svc$n.log" 2>&1 < /dev/null &
        # The summary last, in one awk (a jq per volume took about a second each on this guest,
        # and the run of 20:23 ended grace 11 s after the locks were back while it summed first).
        all=$(awk '/"expected":/ { gsub(/[^0-9]/, "", $2); n += $2 } END { print n + 0 }' /run/wait-vol*.json 2> /dev/null)
        echo "wait-reclaim: ${all:-0} ledger locks on ${vols[*]:1}; failed: $wrc"
        [[ $wrc -eq 0 ]] || tail -n 3 /run/wait-*.err
    else
        # As the HA agents run it (forks after loading the list).
        sm-notify -f -P "$first/statd" -v "nfs-svc$n"
        mark "svc$n sm-notify started (exit $?)"
    fi
    # The connection recorder for the next server's tickle (guest/common.sh, both modes).
    setsid bash /run/labfiles/guest/volumes.sh conn-record "$fip" "$first/tickle" > /dev/null 2>&1 < /dev/null &
    mark "svc$n active"
}

# svc-exec N CMD...: CMD in service N's netns and mount namespace (through its anchor).
svc_exec() {
    local n=$1 p
    shift
    p=$(cat "$STATE/svc$n.anchor" 2> /dev/null) || die "service $n not running here"
    # -r -w: the anchor's root and cwd (the agent's chroot); setns(CLONE_NEWNS) alone would
    # leave the command in the mount namespace's root, the busybox initramfs.
    nsenter -t "$p" -m -n -r -w -- "$@"
}

# verify N: the holders' files of service N on its disks: "VERIFY FILE LINES LOCKS" per file
# (the host compares LINES with the writes its holder had acknowledged); LOCKS = the POSIX locks
# the server's kernel holds on that file now (/proc/locks, MAJ:MIN:INODE in hex:hex:decimal):
# each holder's lock must be held on the server, after the takeover too (an NFSv3 client
# writes on whether or not its lock was reclaimed).
verify() {
    local n=$1
    echo 3 > /proc/sys/vm/drop_caches
    svc_exec "$n" bash -c '
        for f in '"$VOLROOT"'/vol*/testfile-*; do
            [[ -e $f ]] || continue
            # The device holding the file (%Hd %Ld, decimal; %t %T are those of a device file)
            read -r ma mi ino <<< "$(stat -c "%Hd %Ld %i" "$f")"
            key=$(printf "%02x:%02x:%d" "$ma" "$mi" "$ino")
            echo "VERIFY ${f##*/} $(wc -l < "$f") $(awk -v k="$key" "\$2 == \"POSIX\" && \$6 == k" /proc/locks | wc -l)"
        done
        exit 0'
}

# sampler: every 2 s one line "EPOCH USER NICE SYS IDLE IOWAIT IRQ SOFTIRQ STEAL GUEST GNICE
# mem TOTAL AVAIL ours PID:COMM:TICKS:RSS:PSS:ANON ..." (/proc/stat's cpu line in USER_HZ ticks,
# /proc/meminfo in KiB; our processes lockd-recover, mmp-tool, mmpd: utime+stime ticks, RSS,
# PSS and its anonymous part Pss_Anon (smaps_rollup) in KiB). Bash builtins only (no fork per
# sample).
sampler_loop() {
    local line k v total avail p comm st rest ours pss tick=/run/sampler.tick
    mkfifo $tick && exec 4<> $tick
    while :; do
        read -r line < /proc/stat
        total="" avail=""
        while read -r k v _; do
            case $k in MemTotal:) total=$v ;; MemAvailable:) avail=$v; break ;; esac
        done < /proc/meminfo
        ours=
        for p in /proc/[0-9]*; do
            read -r comm 2> /dev/null < "$p/comm" || continue
            case $comm in lockd-recover | mmp-tool | mmpd) ;; *) continue ;; esac
            read -r st 2> /dev/null < "$p/stat" || continue
            rest=${st#*) }
            # shellcheck disable=SC2086 # field splitting of /proc/PID/stat is meant
            set -- $rest
            # after "pid (comm) ": $12 utime, $13 stime, $22 rss (pages)
            pss=0 anon=0
            while read -r k v _; do
                case $k in Pss:) pss=$v ;; Pss_Anon:) anon=$v; break ;; esac
            done 2> /dev/null < "$p/smaps_rollup"
            ours+=" ${p#/proc/}:$comm:$((${12} + ${13})):$((${22} * 4)):$pss:$anon"
        done
        echo "$EPOCHREALTIME ${line#cpu } mem $total $avail ours$ours"
        read -r -t 2 -u 4 _
    done
}

# mount_retry SERVER:PATH DIR: an NFS mount, tried up to 5 times (40 mounts at once from two
# 1-vCPU clients: one failed once with "mount system call failed" under the short timeo).
mount_retry() {
    local i
    for i in 1 2 3 4 5; do
        mount -t nfs -o $NFSOPTS "$1" "$2" && return 0
        echo "mount $1 failed (try $i)"
        sleep 2
    done
    return 1
}

client_prep() {
    local fip1=$1 fip2=$2 v
    modprobe nfs && modprobe nfsv3 || die "modprobe nfs"
    rpcbind -w || die "rpcbind"
    rpc.statd --no-notify || die "rpc.statd"
    local -a pids
    for v in $(svc_vols 1); do
        mkdir -p "$CLIMNT/$v"
        mount_retry "nfs-svc1:$VOLROOT/$v" "$CLIMNT/$v" &
        pids+=($!)
    done
    for v in $(svc_vols 2); do
        mkdir -p "$CLIMNT/$v"
        mount_retry "nfs-svc2:$VOLROOT/$v" "$CLIMNT/$v" &
        pids+=($!)
    done
    local p rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    [[ $rc -eq 0 ]] || die "an NFS mount failed"
    echo "mounted: $(grep -c " $CLIMNT/" /proc/mounts) NFS mounts (servers $fip1 $fip2)"
    mark "client mounted 20 exports"
}

# holders-start VV:H...: holder H of volume volVV, file testfile-vVVhH, log $C/holders/vVVhH.log.
holders_start() {
    local spec vv h args=()
    mkdir -p $C/holders
    for spec in "$@"; do
        vv=${spec%%:*} h=${spec#*:}
        : > "$C/holders/v${vv}h$h.log"
        args+=("$CLIMNT/vol$vv/testfile-v${vv}h$h" "$C/holders/v${vv}h$h.log")
    done
    setsid perl /run/labfiles/guest/holders.pl /run/holders.kids "${args[@]}" > /run/holders.err 2>&1 < /dev/null &
    echo $! > /run/holders.pid
    mark "holders started ($# holders)"
}

holders_stop() {
    local p
    p=$(cat /run/holders.pid 2> /dev/null) || return 0
    kill -TERM "$p" 2> /dev/null
    for _ in $(seq 1 100); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    head -5 /run/holders.err 2> /dev/null
    mark "holders stopped"
}

# probes-start VV:H...: D's flock probes (guest/probe-flock.pl) of C's holders' files.
probes_start() {
    local spec vv h
    mkdir -p $C/probes
    : > /run/probes.pids
    for spec in "$@"; do
        vv=${spec%%:*} h=${spec#*:}
        : > "$C/probes/v${vv}h$h.log"
        setsid perl /run/labfiles/guest/probe-flock.pl "$CLIMNT/vol$vv/testfile-v${vv}h$h" "$C/probes/v${vv}h$h.log" \
            > /dev/null 2>&1 < /dev/null &
        echo $! >> /run/probes.pids
    done
    mark "probes started ($#)"
}

probes_stop() {
    local p
    while read -r p; do kill -TERM "$p" 2> /dev/null; done < /run/probes.pids
    mark "probes stopped"
}

cmd=$1
shift
case $cmd in
server-prep) server_prep ;;
svc-start) svc_start "$@" ;;
svc-inside) svc_inside "$@" ;;
svc-exec) svc_exec "$@" ;;
conn-record) conn_record_loop "$@" ;;
verify) verify "$@" ;;
sampler-start)
    setsid bash /run/labfiles/guest/volumes.sh sampler-loop > $C/sampler.log 2>&1 < /dev/null &
    echo $! > /run/sampler.pid
    mark "sampler started"
    ;;
sampler-loop) sampler_loop ;;
sampler-stop) kill -TERM "$(cat /run/sampler.pid)" 2> /dev/null; mark "sampler stopped" ;;
client-prep) client_prep "$@" ;;
holders-start) holders_start "$@" ;;
holders-stop) holders_stop ;;
probes-start) probes_start "$@" ;;
probes-stop) probes_stop ;;
*) echo "volumes.sh: unknown command $cmd" >&2; exit 2 ;;
esac
