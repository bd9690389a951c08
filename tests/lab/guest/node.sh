#!/bin/bash
# Node roles of the failover lab, run inside a lab VM by the host (lab.sh) through the agent.
#   node.sh server-prep                  load nfsd/ext4 (+ softdog with LAB_HOLDER=mmpd), start rpcbind
#   node.sh activate ours|stock|ocf      take the service: MMP-gated mount, statd, exports, nfsd,
#                                        floating IP, then notify/reclaim (ours) or sm-notify (stock);
#                                        ocf: the group run by our OCF agents (guest/ocf-group.sh)
#   node.sh deactivate ours|stock|ocf [--to NODE]   planned handoff: IP down, unexport, release
#                                        locks, stop, umount (--to: then offer the device to NODE)
#   node.sh handoff-confirm NONCE|handoff-rollback NONCE   (old server) confirm or take back
#                                        a planned handoff (mmp-tool handoff --confirm/--rollback)
#   node.sh ocf-tester-grace             (standby) ocf-tester on nfs-grace, probe of nfs-locks
#   node.sh split-brain [--kernel]       try to take the service while the other node holds it
#   node.sh client-prep [4.1|4.2]        load the NFS client, rpcbind + statd, mount the export
#                                        (NFSv3, and NFSv4 at that minor version on /mnt/nfs4)
#   node.sh writer4-start|writer4-stop   the appender on the NFSv4 mount ($C/writer4.log)
#   node.sh probe4-start FILE|probe4-stop  (client D) flock probe of FILE on the NFSv4 mount
#   node.sh nfsd-log                     (server) nfsd's grace and tracker lines of the kernel log
#   node.sh torture-start|torture-stop   lock-torture failover holder on client C
#   node.sh probe-start|probe-stop       lock-torture --probe-only on client D
#   node.sh writer-start|writer-stop     lock-protected appender with a host-visible progress log
#   node.sh verify-writer ACKED [FILE [strict|tolerant]]  (active server) check an appender's file on the disk
#   node.sh watch-recovery N SECS        (new server) mark when N locks are held and grace ends
#   node.sh record-pause|record-resume   stop/continue the ledger and connection recorders
#   node.sh conn-record                  (internal) the connection recorder loop
#   node.sh net-watch|net-watch-stop|dmesg|sync|client-write-check   diagnostics and checks
#   node.sh scope-watch-start|scope-watch-stop   (clients) record NFSv4 "server_scope mismatch"
#   node.sh locks-left                   (active server) the NFSv4 lock states and /proc/locks left
#   node.sh fs-freeze|fs-thaw            (active server) fsfreeze the shared filesystem for a host e2fsck
#   node.sh pcmk-start|pcmk-wait-online SECS|pcmk-configure STACK|pcmk-wait-group NODE SECS|
#           pcmk-where|pcmk-switch STACK|pcmk-status|pcmk-wait-refused NODE SECS|pcmk-holder-check|
#           pcmk-move NODE [RSC]|pcmk-clear [RSC]|pcmk-watch-release SECS|pcmk-ops|pcmk-handoff-log [N]|pcmk-fence KIND TIMEOUT|
#           pcmk-force-refused|pcmk-hold-stopped SECS|pcmk-watch-merge SECS|sbd-create WD MSGWAIT
#                                        the Pacemaker lab's servers (guest/pcmk.sh)
# Every step prints "MARK <epoch> <name>" lines that lab.sh puts on the scenario's timeline.
#
# The MMP gate (LAB_HOLDER, set by lab.sh --holder):
#   ext4  the shared disk is MMP ext4: `mmp-tool mount` claims it, the guest kernel's kmmpd holds it
#   mmpd  the shared disk is ext4 WITHOUT mmp; a second shared disk is an MMP area (`mmp-tool
#         format-area`): mmpd claims and holds it (LAB_MMPD_ARGS, e.g. --fence watchdog with
#         softdog), and the filesystem is mounted only once mmpd holds the area
set -u
. /run/lab/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BIN=$LAB_BIN
HOLDER=${LAB_HOLDER:-ext4}
MMPD_ARGS=${LAB_MMPD_ARGS:-}
# The virtio disks by their serial (set by lab.sh), /dev/vda without one.
. /run/labfiles/guest/common.sh
if [[ $HOLDER == mmpd ]]; then
    DEV=$(disk_by_serial labshared) || DEV=/dev/missing-labshared
    AREA=$(disk_by_serial labarea) || AREA=/dev/missing-labarea
else
    DEV=/dev/vda
fi
MNT=/srv/ha
EXPORT=$MNT/export
STATD=$MNT/statd
LEDGER=$MNT/ledger
# nfsdcld's storage (the NFSv4 client tracker) on the shared filesystem, so the v4 clients
# allowed to reclaim fail over with the export.
NFSDCLD=$MNT/nfsdcld
# The NFSv4 server scope, the same on both servers (the floating IP's name).
SCOPE=nfs-ha
# Stock takeover flavour (LAB_STOCK): plain = Debian's defaults (nfsdcld on the node's own
# /var/lib/nfs, the node's host name as the scope: the common misconfiguration); best = the
# resource-agents nfsserver way (nfs_shared_infodir: nfsdcld's storage on the shared disk;
# nfs_server_scope: rpc.nfsd under `unshare -u` with the service's name).
STOCK=${LAB_STOCK:-plain}
NFS4MNT=/mnt/nfs4
PIPEFS=/run/rpc_pipefs
FIP=$LAB_FIP
FIP_NAME=nfs-ha
NFSMNT=/mnt/nfs
C=/run/lab

mark() { echo "MARK $(date +%s.%N) $*"; }
die() { mark "FAILED $*"; echo "node.sh: $*" >&2; exit 1; }
# Run a daemon and remember its pid (killed by pid, never by name).
pidof_file() { [[ -s /run/$1.pid ]] && cat "/run/$1.pid"; }
stop_pid() {
    local p
    p=$(pidof_file "$1") || return 0
    kill -TERM "$p" 2> /dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2> /dev/null
    rm -f "/run/$1.pid"
}

server_prep() {
    modprobe ext4 && modprobe nfsd && modprobe lockd || die "modprobe"
    if [[ $HOLDER == mmpd ]]; then
        [[ -b $DEV && -b $AREA ]] || die "shared disk ($DEV) or MMP area ($AREA) not found"
        # The watchdog for mmpd's fence (the Debian kernel's softdog: on expiry it resets the VM,
        # and qemu -no-reboot then exits, like a power-off).
        modprobe softdog || die "modprobe softdog"
        [[ -c /dev/watchdog ]] || die "no /dev/watchdog after modprobe softdog"
    fi
    mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd || die "mount nfsd fs"
    # nfsdcld talks to nfsd through rpc_pipefs (nfsd/cld), where Debian's nfs.conf puts it
    # ([general] pipefs-directory).
    mkdir -p $PIPEFS
    mountpoint -q $PIPEFS || mount -t rpc_pipefs sunrpc $PIPEFS || die "mount rpc_pipefs"
    mkdir -p $MNT /run/mmpd
    rpcbind -w || die "rpcbind"
    mark "server prepared"
}

# A dead server leaves each client's NFS and NLM TCP connections ESTABLISHED, retransmitting
# with exponential back-off (27 s between tries after half a minute): a client only finds the
# new server at its next retransmission. A "tickle ACK" (resource-agents' tickle_tcp, as the
# portblock RA does) makes the client answer at once; this node has no such connection and
# resets it, and the client reconnects now.
tickle_clients() {
    local n
    if n=$(tickle_from "$MNT/tickle/$FIP"); then mark "tickled $n client connections"; else mark "no tickle"; fi
}

start_recorders() {
    if [[ $1 == ours ]]; then
        # The ledger of the locks held while active (on the shared disk, fails over with it).
        setsid $BIN/lockd-recover record --fs $EXPORT --state-dir $LEDGER --interval 1 \
            > /run/record.log 2>&1 < /dev/null &
        echo $! > /run/record.pid
    fi
    setsid bash /run/labfiles/guest/node.sh conn-record > /dev/null 2>&1 < /dev/null &
    echo $! > /run/connrec.pid
}

# nfsdcld on DIR, in the foreground of a background job (as a daemon it would prepare its
# database after forking, racing the tracker check); waits until it has the database open.
start_nfsdcld() {
    local dir=$1 p
    mkdir -p "$dir"
    setsid nfsdcld -F -p $PIPEFS -s "$dir" > /run/nfsdcld.log 2>&1 < /dev/null &
    p=$!
    echo $p > /run/nfsdcld.pid
    for _ in $(seq 1 100); do
        if [[ $(readlink /proc/$p/fd/* 2> /dev/null) == *main.sqlite* ]]; then
            # It exits right after if it cannot watch rpc_pipefs for nfsd's pipe.
            sleep 0.3
            kill -0 $p 2> /dev/null && { mark "nfsdcld started ($dir)"; return 0; }
        fi
        kill -0 $p 2> /dev/null || break
        sleep 0.05
    done
    cat /run/nfsdcld.log
    die "nfsdcld did not open its database in $dir"
}

# mmpd holder: claim the MMP area with mmpd, which holds it (in the background) while the node
# is active. mmpd_start starts it (first thing in activate: the claim is the longest step);
# mmpd_wait waits until it holds the area with its watchdog armed. mmpd_wait returns 0 holding;
# otherwise mmpd has exited (its status in MMPD_RC) or was stopped, and nothing may be mounted.
MMPD_RC=
MMPD_PID=
mmpd_start() {
    rm -f /run/mmpd/*.state
    # shellcheck disable=SC2086
    setsid $BIN/mmpd $MMPD_ARGS ${FENCED:+--fenced "$FENCED"} ${HANDOFF:+--handoff "$HANDOFF"} --run-dir /run/mmpd "$AREA" > /run/mmpd.log 2>&1 < /dev/null &
    MMPD_PID=$!
    echo $MMPD_PID > /run/mmpd.pid
    mark "mmpd started (pid $MMPD_PID): mmpd $MMPD_ARGS $AREA"
}

# True when mmpd's state file (in its run directory, one per device) says "holding" and, with
# the watchdog fence, the watchdog is armed (mmpd opens it right after the claim, and only then
# publishes its fence tag; it releases and exits if it cannot). Bash builtins only: a fork per
# poll costs tenths of a second under TCG.
mmpd_holding() {
    local f line wd=
    for f in /run/mmpd/*.state; do
        [[ -r $f ]] || continue
        while IFS= read -r line; do
            [[ $line == state=holding ]] && break 2
        done < "$f"
    done
    [[ ${line:-} == state=holding ]] || return 1
    [[ $MMPD_ARGS == *watchdog* ]] || return 0
    read -r wd < /sys/class/watchdog/watchdog0/state 2> /dev/null
    [[ $wd == active ]]
}

mmpd_wait() {
    local p=$MMPD_PID i tick=/run/node-tick.$$
    mkfifo $tick && exec 4<> $tick && rm -f $tick
    for ((i = 0; i < 3000; i++)); do
        if ! kill -0 "$p" 2> /dev/null; then
            wait "$p"
            MMPD_RC=$?
            rm -f /run/mmpd.pid
            mark "mmpd exited $MMPD_RC"
            sed 's/^/mmpd: /' /run/mmpd.log
            return 1
        fi
        mmpd_holding && break
        read -r -t 0.05 -u 4 _
    done
    if ! mmpd_holding || ! kill -0 "$p" 2> /dev/null; then
        sed 's/^/mmpd: /' /run/mmpd.log
        mmpd_stop
        mark "mmpd did not come to hold the area"
        return 1
    fi
    mark "area held by mmpd"
    grep -E 'claimed|armed|fence' /run/mmpd.log | sed 's/^/mmpd: /'
    return 0
}

# Planned release: SIGTERM, mmpd writes CLEAN and exits 0.
mmpd_stop() {
    local p
    p=$(pidof_file mmpd) || return 0
    kill -TERM "$p" 2> /dev/null
    for _ in $(seq 1 100); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2> /dev/null; then
        echo "mmpd (pid $p) did not exit within 10 s of SIGTERM" >&2
        return 1
    fi
    rm -f /run/mmpd.pid
    grep -E 'released|signal' /run/mmpd.log | sed 's/^/mmpd: /'
    return 0
}

# The MMP gate and the mount. Returns non-zero (nothing mounted) if the gate refused.
gate_and_mount() {
    local rc
    if [[ $HOLDER == mmpd ]]; then
        [[ -n $MMPD_PID ]] || mmpd_start
        mmpd_wait || return 1
        # mmpd could still have fenced (exit) since: mount only while it runs.
        kill -0 "$MMPD_PID" 2> /dev/null || { echo "mmpd exited before the mount" >&2; return 1; }
        mount -t ext4 "$DEV" "$MNT" || { mmpd_stop; return 1; }
        return 0
    fi
    $BIN/mmp-tool mount --json -q ${FENCED:+--fenced "$FENCED"} ${HANDOFF:+--handoff "$HANDOFF"} "$DEV" "$MNT" > /run/mmp-mount.json
    rc=$?
    echo "mmp-tool mount: $(jq -c . /run/mmp-mount.json)"
    return $rc
}

# The takeover sequence. Ours: grace set, nfsd and mountd started while mmp-tool mount waits
# (nothing can reach them: the floating IP comes last), then statd + exports on the mounted
# filesystem, IP up, tickle, lockd-recover takeover. Stock: the usual order, kernel mount,
# sm-notify, default grace.
# activate MODE [--fenced NODE]: NODE was powered off (the lab killed its qemu): the MMP gate
# takes the fence-confirmed path (a short watch, still refusing any write it sees).
activate() {
    local mode=$1 rc cld=
    [[ ${2:-} == --fenced ]] && FENCED=$3
    # --handoff NONCE: the old node offered the device to this one (a planned handoff): the
    # MMP gate claims it with the nonce, without the full wait (HANDOFF.md).
    [[ ${2:-} == --handoff ]] && HANDOFF=$3
    [[ $mode == ocf ]] && { activate_ocf; return; }
    mark "activate start ($mode)"
    if [[ $HOLDER == mmpd ]]; then
        [[ $mode == ours ]] || die "the stock takeover has no mmpd gate (use the ext4 holder)"
        mmpd_start
    fi
    if [[ $mode == ours ]]; then
        # mountd while mmp-tool mount waits (nothing reaches it before the floating IP is up);
        # nfsd only once nfsdcld runs on the mounted filesystem (start-nfsd below).
        ( rpc.mountd && pgrep -n -x rpc.mountd > /run/mountd.pid ) &
        local early=$!
        gate_and_mount
        rc=$?
        if [[ $rc -ne 0 ]]; then
            wait $early
            stop_pid mountd
            mountpoint -q $MNT && die "MOUNTED although the MMP gate failed"
            [[ $HOLDER == mmpd ]] && die "mmpd did not take the MMP area (mmpd exit ${MMPD_RC:-none}): not mounted"
            die "mmp-tool mount refused or failed (exit $rc)"
        fi
        mark "mounted"
        wait $early || die "rpc.mountd"
        mark "mountd running (started during the MMP wait)"
        # nfsdcld, statd and the export need the mounted filesystem, not each other: nfsdcld
        # starts while statd and exportfs run (each takes seconds under TCG), and start-nfsd
        # waits for it (it refuses without a running nfsdcld).
        start_nfsdcld $NFSDCLD &
        cld=$!
    else
        # The kernel's default grace (lockd: 5 x nlm_timeout = 50 s; v4: 90 s), also on a node
        # whose earlier activation set other values (they persist while the kernel runs).
        echo 0 > /proc/sys/fs/nfs/nlm_grace_period
        echo 90 > /proc/fs/nfsd/nfsv4gracetime
        echo 90 > /proc/fs/nfsd/nfsv4leasetime
        mount -t ext4 "$DEV" "$MNT" || die "kernel mount refused"
        mark "mounted"
        if [[ $STOCK == best ]]; then start_nfsdcld $NFSDCLD; else start_nfsdcld /var/lib/nfs/nfsdcld; fi
    fi
    mkdir -p $EXPORT $STATD/sm $STATD/sm.bak $STATD/sm.ha $LEDGER
    # Records saved by a planned stop (nfsd's clean shutdown unmonitors every client).
    cp -n $STATD/sm.ha/* $STATD/sm/ 2> /dev/null
    rm -f $STATD/sm.ha/*
    rpc.statd --no-notify -P $STATD || die "rpc.statd"
    pgrep -n -x rpc.statd > /run/statd.pid
    mark "statd started"
    # fsid=0: the export is also NFSv4's pseudo root (v4 clients mount nfs-ha:/), as the
    # guest's root (9p) and /srv (tmpfs) cannot be exported for mountd's generated one.
    exportfs -i -o rw,sync,no_root_squash,no_subtree_check,fsid=0 "$LAB_NET:$EXPORT" || die "exportfs"
    if [[ $mode == ours ]]; then
        wait $cld || die "nfsdcld did not start (its log above)"
        # Grace and lease set while nfsd is stopped, the tracker checked, nfsd started as the
        # service's scope, and nfsd's use of nfsdcld confirmed from the kernel log.
        $BIN/lockd-recover start-nfsd --scope $SCOPE --threads 8 --nlm-grace 60 --v4-grace 60 \
            --lease 15 --tracker-dir $NFSDCLD --shared $EXPORT > /run/start-nfsd.out 2>&1
        rc=$?
        sed 's/^/start-nfsd: /' /run/start-nfsd.out
        [[ $rc -eq 0 ]] || die "lockd-recover start-nfsd (exit $rc)"
    else
        rpc.mountd || die "rpc.mountd"
        pgrep -n -x rpc.mountd > /run/mountd.pid
        if [[ $STOCK == best ]]; then
            unshare -u sh -c "hostname $SCOPE && exec rpc.nfsd 8" || die "rpc.nfsd"
        else
            rpc.nfsd 8 || die "rpc.nfsd"
        fi
    fi
    mark "nfsd started"
    ip addr add "$FIP/$LAB_PREFIX" dev eth0 || die "floating IP"
    # Gratuitous ARP, so the clients' neighbour caches point to this node at once.
    busybox arping -U -c 3 -I eth0 -s "$FIP" "$FIP" > /dev/null 2>&1 &
    mark "floating IP up"
    tickle_clients
    if [[ $mode == ours ]]; then
        $BIN/lockd-recover --json takeover --state-dir $STATD --ip "$FIP" --mon-name $FIP_NAME \
            --fs $EXPORT --ledger-dir $LEDGER --deadline 60 --timeout 60 --min-grace 5 \
            --tracker-dir $NFSDCLD \
            > /run/takeover.json 2> /run/takeover.err
        rc=$?
        echo "takeover: $(jq -c . /run/takeover.json)"
        mark "takeover done (exit $rc)"
        # Nobody to notify and no ledger (a fresh filesystem): nothing can be reclaimed, so end
        # grace now, as sm-notify does when it has no hosts (lift-grace).
        if jq -e '(.notify.clients | length) == 0 and .reclaim == null' /run/takeover.json > /dev/null; then
            $BIN/lockd-recover grace end > /dev/null && mark "no client recorded: grace ended"
        fi
    else
        # As the HA agents run it: it forks into the background after loading the list and keeps
        # retrying unreached clients for 15 minutes.
        sm-notify -f -P $STATD -v $FIP_NAME
        mark "sm-notify started (exit $?)"
    fi
    start_recorders "$mode"
    mark "active"
}

# deactivate MODE [--to NODE]: with --to (ours), offer the device to NODE once it is released
# (mmp-tool handoff: the next node's gate claims it with the printed nonce, HANDOFF.md).
deactivate() {
    local mode=$1 to=
    [[ ${2:-} == --to ]] && to=$3
    [[ $mode == ocf ]] && { deactivate_ocf; return; }
    mark "deactivate start ($mode)"
    stop_pid record
    stop_pid connrec
    ip addr del "$FIP/$LAB_PREFIX" dev eth0 || die "floating IP del"
    mark "floating IP down"
    exportfs -u "$LAB_NET:$EXPORT" || die "exportfs -u"
    # Releasing the locks and stopping nfsd unmonitor the clients (statd deletes their sm/
    # records): keep the records for the next server, as heartbeat/nfsserver does (sm.ha).
    cp -p $STATD/sm/* $STATD/sm.ha/ 2> /dev/null
    if [[ $mode == ours ]]; then
        # --stop-nfsd: NFSv4 locks are dropped only by a clean nfsd stop on this kernel (6.1).
        $BIN/lockd-recover --json handoff --ip "$FIP" --fs $EXPORT --stop-nfsd > /run/handoff.json
        local rc=$?
        echo "handoff: $(jq -c . /run/handoff.json)"
        [[ $rc -eq 0 ]] || die "lockd-recover handoff (exit $rc)"
        mark "locks released and verified"
    else
        echo $EXPORT > /proc/fs/nfsd/unlock_filesystem || die "unlock_filesystem"
        mark "unlock_filesystem written"
    fi
    rpc.nfsd 0
    stop_pid mountd
    stop_pid statd
    # nfsdcld holds its database on the shared filesystem open.
    stop_pid nfsdcld
    mark "nfsd stopped"
    umount $MNT || die "umount"
    mark "unmounted"
    if [[ $HOLDER == mmpd ]]; then
        mmpd_stop || die "mmpd did not release the area"
        mark "mmpd released the area"
        $BIN/mmp-tool status --json "$AREA" > /run/mmp-status.json
    else
        $BIN/mmp-tool status --json "$DEV" > /run/mmp-status.json
    fi
    echo "mmp status: $(jq -c . /run/mmp-status.json)"
    grep -q '"state": *"clean"' /run/mmp-status.json || die "MMP not clean after umount"
    mark "MMP clean"
    [[ -n $to ]] || return 0
    local blockdev=$DEV
    [[ $HOLDER == mmpd ]] && blockdev=$AREA
    $BIN/mmp-tool handoff --json -q --to "$to" "$blockdev" > /run/mmp-handoff.json || die "mmp-tool handoff --to $to: $(cat /run/mmp-handoff.json)"
    echo "handoff-nonce: $(jq -r .nonce /run/mmp-handoff.json)"
    mark "offered to $to (mmp-tool handoff, $(jq -r .elapsed_seconds /run/mmp-handoff.json) s)"
}

# handoff-confirm NONCE: the new holder writes the block (run on either node; writes nothing).
handoff_confirm() {
    local blockdev=$DEV
    [[ $HOLDER == mmpd ]] && blockdev=$AREA
    $BIN/mmp-tool handoff --json -q --confirm "$1" "$blockdev" > /run/mmp-confirm.json
    local rc=$?
    echo "handoff confirm: exit $rc $(jq -c '{result, message}' /run/mmp-confirm.json)"
    [[ $rc -eq 0 ]] && mark "handoff confirmed"
    return $rc
}

# handoff-rollback NONCE: the source takes back the device it offered (HANDOFF.md, step 4): at
# once while the target has not claimed, after the full wait when it has and fell silent.
handoff_rollback() {
    local blockdev=$DEV rc
    [[ $HOLDER == mmpd ]] && blockdev=$AREA
    $BIN/mmp-tool handoff --json -q --rollback --nonce "$1" "$blockdev" > /run/mmp-rollback.json
    rc=$?
    echo "handoff rollback: exit $rc $(jq -c '{result, rollback_path, elapsed_seconds, message}' /run/mmp-rollback.json)"
    [[ $rc -eq 0 ]] && mark "handoff rolled back ($(jq -r .rollback_path /run/mmp-rollback.json))"
    return $rc
}

# mmpd holder: the same gate as activate; mmpd must refuse (exit 3, in use), nothing mounted.
split_brain_mmpd() {
    mark "split-brain attempt start (mmpd holder)"
    echo "status before: $($BIN/mmp-tool status --json "$AREA" | jq -c '{state, node_name, sequence}')"
    if gate_and_mount; then
        umount $MNT 2> /dev/null
        mmpd_stop
        die "mmpd took the MMP area and the filesystem was MOUNTED while the other node holds it"
    fi
    mountpoint -q $MNT && { umount $MNT; die "MOUNTED a filesystem in use"; }
    mark "mmpd exit ${MMPD_RC:-none}"
    [[ $MMPD_RC == 3 ]] || die "mmpd did not refuse the claim with exit 3 (exit ${MMPD_RC:-none})"
    grep -q 'in use' /run/mmpd.log || die "mmpd's refusal does not say 'in use'"
    # A fence that lied: mmpd --fenced the holder, which still runs.
    FENCED=$(jq -r .node_name <<< "$($BIN/mmp-tool status --json "$AREA")")
    MMPD_PID= MMPD_RC=
    if gate_and_mount; then
        umount $MNT 2> /dev/null
        mmpd_stop
        die "mmpd --fenced $FENCED took the MMP area while its holder runs"
    fi
    mountpoint -q $MNT && { umount $MNT; die "MOUNTED a filesystem in use"; }
    mark "mmpd --fenced $FENCED (a fence that lied): exit ${MMPD_RC:-none}"
    [[ $MMPD_RC == 3 ]] || die "mmpd --fenced did not refuse the claim with exit 3 (exit ${MMPD_RC:-none})"
    FENCED=
    mark "split-brain refused"
}

split_brain() {
    [[ $HOLDER == mmpd ]] && { split_brain_mmpd; return; }
    mark "split-brain attempt start"
    local before after rc
    before=$($BIN/mmp-tool status --json "$DEV")
    HOLDER_NODE=$(jq -r .node_name <<< "$before")
    echo "status before: $before"
    $BIN/mmp-tool mount --json -q "$DEV" "$MNT" > /run/mmp-mount.json
    rc=$?
    echo "mmp-tool mount: exit $rc $(cat /run/mmp-mount.json)"
    mark "mmp-tool mount exit $rc"
    if mountpoint -q $MNT; then umount $MNT; die "mmp-tool mount MOUNTED a filesystem in use"; fi
    [[ $rc -eq 1 ]] || die "mmp-tool mount did not refuse with exit 1"
    # A fence that lied: the cluster believes the holder was powered off, but it still runs.
    $BIN/mmp-tool mount --json -q --fenced "$HOLDER_NODE" "$DEV" "$MNT" > /run/mmp-mount.json
    rc=$?
    echo "mmp-tool mount --fenced $HOLDER_NODE (a fence that lied): exit $rc $(cat /run/mmp-mount.json)"
    mark "mmp-tool mount --fenced exit $rc"
    if mountpoint -q $MNT; then umount $MNT; die "mmp-tool mount --fenced MOUNTED a filesystem in use"; fi
    [[ $rc -eq 1 ]] || die "mmp-tool mount --fenced did not refuse with exit 1"
    if [[ ${1:-} == --kernel ]]; then
        mount -t ext4 "$DEV" "$MNT"
        rc=$?
        mark "kernel mount exit $rc"
        if mountpoint -q $MNT; then umount $MNT; die "kernel mount MOUNTED a filesystem in use"; fi
        dmesg | grep -i 'mmp' | tail -3
    fi
    mark "split-brain refused"
}

client_prep() {
    modprobe nfs && modprobe nfsv3 || die "modprobe nfs"
    rpcbind -w || die "rpcbind"
    rpc.statd --no-notify || die "rpc.statd"
    mkdir -p $NFSMNT
    # Short RPC timeouts: the reconnect back-off is capped by timeo*(retrans+1).
    mount -t nfs -o vers=3,proto=tcp,hard,timeo=10,retrans=2 "$FIP_NAME:$EXPORT" $NFSMNT ||
        die "nfs mount"
    grep " $NFSMNT " /proc/mounts
    if [[ -n ${1:-} ]]; then
        modprobe nfsv4 || die "modprobe nfsv4"
        mkdir -p $NFS4MNT
        mount -t nfs -o vers=$1,proto=tcp,hard,timeo=10,retrans=2 "$FIP_NAME:/" $NFS4MNT ||
            die "nfs mount vers=$1"
        grep " $NFS4MNT " /proc/mounts
    fi
    mark "client mounted"
}

# scope-watch-start: the one trace a failover to another server scope leaves on a v4.1+
# client is the dprintk "server_scope mismatch detected" of _nfs4_proc_exchange_id
# (fs/nfs/nfs4proc.c, debug facility NFSDBG_PROC, 0x0010 in include/uapi/linux/nfs_fs.h); the
# client then reclaims nothing. NFSDBG_PROC logs every NFS call, so it is on only around a
# failover, into the ring buffer only (console loglevel 1: the serial console is slow under
# TCG), and a follower of the kernel log (dmesg -W: new lines only) keeps those lines.
# scope-watch-stop: debugging off; prints how many such lines came, and the first ones.
scope_watch_start() {
    [[ -w /proc/sys/sunrpc/nfs_debug ]] || die "no /proc/sys/sunrpc/nfs_debug (kernel without CONFIG_SUNRPC_DEBUG)"
    stop_scope_follower
    dmesg -n 1
    setsid sh -c 'exec dmesg -W | grep --line-buffered "server_scope mismatch"' > /run/scope-mismatch.log 2>&1 < /dev/null &
    echo $! > /run/scopewatch.pid
    echo 16 > /proc/sys/sunrpc/nfs_debug || die "nfs_debug"
    mark "NFS client debugging on (NFSDBG_PROC)"
}

scope_watch_stop() {
    echo 0 > /proc/sys/sunrpc/nfs_debug
    sleep 0.5
    stop_scope_follower
    echo "scope mismatches: $(grep -c "server_scope mismatch" /run/scope-mismatch.log 2> /dev/null)"
    head -3 /run/scope-mismatch.log 2> /dev/null
}

# The follower's process group (setsid: dmesg and grep both).
stop_scope_follower() {
    local p
    p=$(pidof_file scopewatch) || return 0
    kill -TERM -- "-$p" 2> /dev/null
    rm -f /run/scopewatch.pid
}

torture_start() {
    setsid $BIN/lock-torture failover --dir $NFSMNT --locks 4 --interval 500ms --probe none \
        --status-file $C/lt-status.json --json > /run/lt.json 2> /run/lt.err < /dev/null &
    echo $! > /run/lt.pid
    for _ in $(seq 1 300); do
        grep -q '"ready": *true' $C/lt-status.json 2> /dev/null && { mark "torture ready"; return 0; }
        sleep 0.1
    done
    cat /run/lt.err
    die "lock-torture not ready"
}

report_stop() {
    local name=$1 p
    p=$(pidof_file "$name") || die "$name not running"
    kill -TERM "$p"
    for _ in $(seq 1 300); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    rm -f /run/$name.pid
    echo "REPORT $(tr -d '\n' < /run/$name.json)"
    tail -5 /run/$name.err >&2
}

probe_start() {
    setsid $BIN/lock-torture failover --dir $NFSMNT --locks 4 --probe-only --probe setlk \
        --probe-interval 500ms --json > /run/probe.json 2> /run/probe.err < /dev/null &
    echo $! > /run/probe.pid
    mark "probe started"
}

# The lock-protected appender (guest/writer.pl): its progress log is host-visible. Each workload
# (scenario) appends to a new file, removed through the mount first: the file is judged against
# this workload's log alone, and an earlier scenario's file may hold holes it was allowed to leave
# (scenario 9's failed disk).
writer_start() {
    rm -f $NFSMNT/writer.dat
    setsid perl /run/labfiles/guest/writer.pl $NFSMNT/writer.dat $C/writer.log \
        > /run/writer.err 2>&1 < /dev/null &
    echo $! > /run/writer.pid
    mark "writer started"
}

writer_stop() { stop_pid writer; }

# The same appender on the NFSv4 mount, one file per client (its flock is an NFSv4 lock), new
# for each workload as above.
writer4_start() {
    rm -f "$NFS4MNT/writer4-$(hostname).dat"
    setsid perl /run/labfiles/guest/writer.pl "$NFS4MNT/writer4-$(hostname).dat" $C/writer4.log \
        > /run/writer4.err 2>&1 < /dev/null &
    echo $! > /run/writer4.pid
    mark "v4 writer started"
}

# (D) tries to flock FILE (another client's writer file) every 0.5 s: it must never succeed.
probe4_start() {
    setsid perl /run/labfiles/guest/probe-flock.pl "$NFS4MNT/$1" $C/probe4.log \
        > /run/probe4.err 2>&1 < /dev/null &
    echo $! > /run/probe4.pid
    mark "v4 flock probe started"
}

verify_writer() {
    local acked=$1 f=$EXPORT/${2:-writer.dat}
    echo 3 > /proc/sys/vm/drop_caches
    [[ ${3:-strict} == tolerant ]] && { verify_writer_tolerant "$acked" "$f"; return; }
    awk -v acked="$acked" '
        { if ($0 !~ /^[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]$/) { print "bad line " NR ": " $0; bad = 1; exit }
          if ($0 + 0 != NR) { print "line " NR " holds " $0; bad = 1; exit } }
        END { if (bad) exit 1
              if (NR < acked) { print "only " NR " records, " acked " were acknowledged"; exit 1 }
              print "writer file: " NR " records in order, all " acked " acknowledged present" }' "$f"
}

# (active server) The NFSv4 lock states nfsd still holds, one line each with its client
# (fs/nfsd/nfs4state.c prints "type: lock" states with their file name in clients/*/states),
# then the count; and /proc/locks for the record.
locks_left() {
    local c n=0 line
    for c in /proc/fs/nfsd/clients/*; do
        [[ -r $c/states ]] || continue
        while IFS= read -r line; do
            [[ $line == *"type: lock"* ]] || continue
            echo "v4 lock: $(sed -n 's/^name: //p' "$c/info") $line"
            n=$((n + 1))
        done < "$c/states"
    done
    sed 's/^/proc-locks: /' /proc/locks
    echo "v4 locks left: $n"
}

# After a disk failed under the old server (scenario 9): an append the old server answered
# with an error was never acknowledged, and may be missing, or leave a hole (NULs: the client
# appends at the size it had cached) or a retried copy. Every acknowledged record 1..ACKED must
# be there, in order; holes and retries are counted, not failed.
verify_writer_tolerant() {
    tr '\0' '\n' < "$2" | awk -v acked="$1" '
        /^[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]$/ {
            n = $0 + 0
            if (n < last) { print "record " n " at line " NR " after record " last; bad = 1; exit }
            if (n == last) retried++
            seen[n] = 1; last = n; next }
        /^$/ { nul++; next }
        { other++ }
        END { if (bad) exit 1
              for (i = 1; i <= acked; i++) if (!(i in seen)) { print "acknowledged record " i " is missing"; exit 1 }
              print "writer file: all " acked " acknowledged records present in order; " retried + 0 " records written twice, " nul + 0 " NUL bytes (holes: unacknowledged appends never written), " other + 0 " torn lines" }'
}

# Marks when the shared filesystem is mounted, when N locks are held again on the export and when
# lockd/v4 grace ends (every mode).
watch_recovery() {
    local want=$1 limit=$2 locks_seen=0 nlm_seen=0 v4_seen=0 n i mounted=0
    for ((i = 0; i < limit * 5; i++)); do
        # Under Pacemaker the mount is the mmp-fs (or Filesystem) agent's: mark it here.
        if [[ $mounted -eq 0 ]] && mountpoint -q $MNT; then mark "filesystem on $MNT"; mounted=1; fi
        if [[ $locks_seen -eq 0 ]] && mountpoint -q $MNT; then
            n=$(awk '$2 == "POSIX" || $3 == "POSIX"' /proc/locks | wc -l)
            if [[ $n -ge $want ]]; then mark "$n locks held on the server"; locks_seen=1; fi
        fi
        if [[ $nlm_seen -eq 0 && -d /proc/fs/nfsd && $(cat /proc/fs/nfsd/threads 2> /dev/null) -gt 0 ]] &&
            [[ $(head -c 1 /proc/fs/lockd/nlm_end_grace 2> /dev/null) == Y ]]; then
            mark "lockd grace over"; nlm_seen=1
        fi
        if [[ $v4_seen -eq 0 && $(cat /proc/fs/nfsd/threads 2> /dev/null) -gt 0 ]] &&
            [[ $(head -c 1 /proc/fs/nfsd/v4_end_grace 2> /dev/null) == Y ]]; then
            mark "v4 grace over"; v4_seen=1
        fi
        [[ $locks_seen -eq 1 && $nlm_seen -eq 1 && $v4_seen -eq 1 ]] && return 0
        sleep 0.2
    done
    mark "watch ended: locks_seen=$locks_seen nlm_grace_over=$nlm_seen v4_grace_over=$v4_seen"
}

# activate/deactivate ocf, ocf-tester-grace: the service run by our OCF agents.
# shellcheck source=ocf-group.sh
. /run/labfiles/guest/ocf-group.sh
# pcmk-*: the Pacemaker lab's servers (--manager pacemaker).
# shellcheck source=pcmk.sh
. /run/labfiles/guest/pcmk.sh

cmd=$1
shift
case $cmd in
server-prep) server_prep ;;
activate) activate "$@" ;;
deactivate) deactivate "$@" ;;
handoff-confirm) handoff_confirm "$@" ;;
handoff-rollback) handoff_rollback "$@" ;;
split-brain) split_brain "$@" ;;
client-prep) client_prep "$@" ;;
torture-start) torture_start ;;
torture-stop) report_stop lt ;;
probe-start) probe_start ;;
probe-stop) report_stop probe ;;
writer-start) writer_start ;;
writer-stop) writer_stop ;;
writer4-start) writer4_start ;;
writer4-stop) stop_pid writer4 ;;
probe4-start) probe4_start "$@" ;;
probe4-stop) stop_pid probe4 ;;
locks-left) locks_left ;;
writer4-state)
    # Where the v4 appender waits (a workload start that made no progress).
    p=$(pidof_file writer4) && { tail -n 2 "$C/writer4.log"; grep -E '^(State|Name)' "/proc/$p/status"; cat "/proc/$p/wchan"; echo; cat "/proc/$p/stack" 2> /dev/null; }
    dmesg | tail -n 15
    ;;
nfsd-log) dmesg | grep -E 'NFSD: (Using|starting|no clients|all clients|Unable)' | tail -${1:-6} ;;
verify-writer) verify_writer "$@" ;;
watch-recovery) watch_recovery "$@" ;;
client-write-check)
    echo "check $(date +%s.%N)" > $NFSMNT/check.txt && sync $NFSMNT/check.txt && grep -q check $NFSMNT/check.txt
    ;;
sync) sync; mark "synced" ;;
fs-freeze) fsfreeze -f $MNT && mark "filesystem frozen" ;;
fs-thaw) fsfreeze -u $MNT && mark "filesystem thawed" ;;
record-pause) kill -STOP "$(pidof_file record)" "$(pidof_file connrec)" && mark "recorders paused" ;;
record-resume) kill -CONT "$(pidof_file record)" "$(pidof_file connrec)" && mark "recorders resumed" ;;
conn-record) conn_record_loop "$FIP" "$MNT/tickle" ;;
ocf-tester-grace) ocf_tester_grace ;;
pcmk-start) pcmk_start ;;
pcmk-wait-online) pcmk_wait_online "$@" ;;
pcmk-configure) pcmk_configure "$@" ;;
pcmk-wait-group) pcmk_wait_group "$@" ;;
pcmk-where) pcmk_where ;;
pcmk-switch) pcmk_switch "$@" ;;
pcmk-status) pcmk_status ;;
pcmk-ops) pcmk_ops ;;
pcmk-handoff-log) pcmk_handoff_log "$@" ;;
pcmk-wait-refused) pcmk_wait_refused "$@" ;;
pcmk-holder-check) pcmk_holder_check ;;
pcmk-move) pcmk_move "$@" ;;
pcmk-clear) pcmk_clear "$@" ;;
pcmk-watch-release) pcmk_watch_release "$@" ;;
pcmk-fence) pcmk_fence "$@" ;;
pcmk-force-refused) pcmk_force_refused ;;
pcmk-hold-stopped) pcmk_hold_stopped "$@" ;;
pcmk-watch-merge) pcmk_watch_merge "$@" ;;
sbd-create) sbd_create "$@" ;;
dmesg) dmesg | tail -${1:-40} ;;
net-watch)
    # Diagnostics: the client's TCP sockets to the floating IP and its neighbour entry.
    while :; do
        echo "T $(date +%s.%N)"
        ss -tni dst "$FIP"
        ip neigh show "$FIP"
        sleep 0.5
    done > $C/netwatch.log 2>&1 &
    echo $! > /run/netwatch.pid
    ;;
net-watch-stop) stop_pid netwatch ;;
scope-watch-start) scope_watch_start ;;
scope-watch-stop) scope_watch_stop ;;
*) echo "node.sh: unknown command $cmd" >&2; exit 2 ;;
esac
