#!/bin/bash
# The NFS service run by our OCF agents, in a lab VM without Pacemaker (sourced by node.sh:
# functions only). The agents are called as Pacemaker's executor would: the lockd-recover binary
# through symlinks named nfs-grace and nfs-locks, the action as argument, the parameters as
# OCF_RESKEY_* variables. The other members of the group are done by hand, each marked as the
# stock agent it stands for:
#
#   fs (mmp-fs) -> nfs-grace -> nfsserver -> exportfs -> nfs-locks -> IPaddr2
#
# mmp-fs runs with the lab's holder: ext4 (the kernel's MMP, the agent's gate claims it) or mmpd
# (the agent starts mmpd on the MMP area with the watchdog fence on the guest's softdog, and
# mounts the plain ext4 disk once mmpd holds the area).
#
#   activate_ocf     the group's start, in that order, then waits until the nfs-locks worker
#                    records (IP up, clients notified, locks reclaimed, grace ended)
#   deactivate_ocf   the group's stop, in reverse order; first checks that nfs-locks refuses to
#                    stop (release) while the service IP is still up
#   ocf_tester_grace ocf-tester on nfs-grace (standby node: nfsd stopped, statd_dir in /tmp)
# shellcheck disable=SC2154 # node.sh's globals (BIN, MNT, STATD, LEDGER, EXPORT, FIP, ...)

# The agents as installed: the package's links (the lab unpacks it into /run/labfiles), or with
# --bin-dir symlinks made by ocf_install; either way dispatched on their name.
OCF_AGENTS=/run/labfiles/usr/lib/ocf/resource.d/mmp-ha
[[ -d $OCF_AGENTS ]] || OCF_AGENTS=/run/ocf/resource.d/mmp-ha
OCF_STATE=/run/mmp-ha
OCF_GRACE_PARAMS=(grace_time=60 lease_time=60)

ocf_install() {
    mkdir -p $OCF_STATE
    [[ $OCF_AGENTS == /run/labfiles/* ]] && return 0
    mkdir -p $OCF_AGENTS
    ln -sf "$BIN/mmp-tool" $OCF_AGENTS/mmp-fs
    ln -sf "$BIN/lockd-recover" $OCF_AGENTS/nfs-grace
    ln -sf "$BIN/lockd-recover" $OCF_AGENTS/nfs-locks
}

# The device whose MMP block the holder keeps: the disk itself, or mmpd's area.
mmp_device() {
    if [[ $HOLDER == mmpd ]]; then echo "$AREA"; else echo "$DEV"; fi
}

# ocf AGENT ACTION: run one action with the group's parameters; prints the exit code and reason.
ocf() {
    local agent=$1 action=$2 rc inst params=()
    case $agent in
    mmp-fs)
        inst=fs1 params=("device=$DEV" "directory=$MNT" fstype=ext4 "holder=$HOLDER")
        [[ $HOLDER == mmpd ]] && params+=("area_device=$AREA" fence=watchdog watchdog_timeout=3)
        ;;
    nfs-grace) inst=grace1 params=("${OCF_GRACE_PARAMS[@]}" "statd_dir=$STATD") ;;
    nfs-locks)
        inst=locks1
        params=("ip=$FIP" "fs=$EXPORT" "statd_dir=$STATD" "ledger_dir=$LEDGER" "mon_name=$FIP_NAME"
            min_grace=5 reclaim_timeout=60 record_interval=1 notify_deadline=60)
        ;;
    esac
    (
        for p in "${params[@]}"; do export "OCF_RESKEY_$p"; done
        export OCF_RESOURCE_INSTANCE=$inst OCF_ROOT=/usr/lib/ocf
        export OCF_RESKEY_CRM_meta_interval=${OCF_RESKEY_CRM_meta_interval:-0} OCF_RESKEY_CRM_meta_timeout=60000
        $OCF_AGENTS/$agent "$action" 2> /run/ocf-last.err
    )
    rc=$?
    echo "ocf $agent $action: rc=$rc $(sed -n 's/^ocf-exit-reason://p' /run/ocf-last.err)"
    return $rc
}

OCF_STATUS=$OCF_STATE/nfs-locks-locks1.status
OCF_LOG=$OCF_STATE/nfs-locks-locks1.log

# Waits until the nfs-locks worker records (or failed), then the agent's monitor must say 0.
ocf_wait_recording() {
    local phase='' i
    for ((i = 0; i < 1500; i++)); do
        phase=$(cat $OCF_STATUS 2> /dev/null)
        [[ $phase == recording || $phase == failed:* ]] && break
        sleep 0.1
    done
    sed 's/^/nfs-locks: /' $OCF_LOG
    [[ $phase == recording ]] || die "nfs-locks worker phase: ${phase:-none}"
    OCF_RESKEY_CRM_meta_interval=10000 ocf nfs-locks monitor || die "nfs-locks monitor"
}

activate_ocf() {
    mark "activate start (ocf)"
    ocf_install
    : > $OCF_LOG
    # fs (mmp-fs): the MMP gate and the mount; depth 10: the block is ours and moving
    ocf mmp-fs start || die "mmp-fs start"
    mark "mounted"
    OCF_CHECK_LEVEL=10 OCF_RESKEY_CRM_meta_interval=60000 ocf mmp-fs monitor || die "mmp-fs monitor depth 10"
    mkdir -p $EXPORT $LEDGER $STATD
    # The lab's own copy of the records (node.sh's deactivate ours) goes back as nfs-grace's would.
    cp -n $STATD/sm.ha/* $STATD/sm/ 2> /dev/null
    rm -f $STATD/sm.ha/*
    ocf nfs-grace start || die "nfs-grace start"
    mark "nfs-grace started"
    # nfsserver (stock): statd on the shared statd directory, mountd, nfsd
    rpc.statd --no-notify -P $STATD || die "rpc.statd"
    pgrep -n -x rpc.statd > /run/statd.pid
    rpc.mountd -N 4 || die "rpc.mountd"
    pgrep -n -x rpc.mountd > /run/mountd.pid
    rpc.nfsd -N 4 8 || die "rpc.nfsd"
    # exportfs (stock)
    exportfs -i -o rw,sync,no_root_squash,no_subtree_check,fsid=0 "$LAB_NET:$EXPORT" || die "exportfs"
    mark "nfsd started"
    ocf nfs-locks start || die "nfs-locks start"
    mark "nfs-locks started (worker waits for the IP)"
    # IPaddr2 (stock): the IP and gratuitous ARP; the tickle ACKs stand for portblock's.
    ip addr add "$FIP/$LAB_PREFIX" dev eth0 || die "floating IP"
    busybox arping -U -c 3 -I eth0 -s "$FIP" "$FIP" > /dev/null 2>&1 &
    mark "floating IP up"
    tickle_clients
    ocf_wait_recording
    mark "takeover done (nfs-locks worker recording)"
    ocf nfs-grace monitor || die "nfs-grace monitor"
    start_recorders ocf
    mark "active"
}

# Locks still held on the exported filesystem: /proc/locks names the device as "%02x:%02x:ino"
# (waiters, "->" lines, are not held).
fs_locks() {
    local key dev
    dev=$(stat -c '%Hd %Ld' $EXPORT) || return 1
    key=$(printf '%02x:%02x:' "${dev% *}" "${dev#* }")
    awk -v k="$key" '$2 != "->" && index($6, k) == 1 { n++ } END { print n + 0 }' /proc/locks
}

deactivate_ocf() {
    mark "deactivate start (ocf)"
    stop_pid connrec
    # The order check: with the IP still up, nfs-locks must refuse to release.
    if ocf nfs-locks stop; then die "nfs-locks stop released with the IP still up"; fi
    grep -q 'still up' /run/ocf-last.err || die "nfs-locks stop refused for another reason"
    mark "nfs-locks stop refused while the IP is up"
    # IPaddr2 stop
    ip addr del "$FIP/$LAB_PREFIX" dev eth0 || die "floating IP del"
    mark "floating IP down"
    ocf nfs-locks stop || die "nfs-locks stop"
    mark "locks released and verified"
    echo "ledger: $(jq -c '{node, locks: (.locks | length), taken_at_unix_ms}' $LEDGER/lockd-recover-ledger.json)"
    echo "locks left on the export: $(fs_locks)"
    sed 's/^/nfs-locks: /' $OCF_LOG | tail -4
    # exportfs stop, then nfsserver stop
    exportfs -u "$LAB_NET:$EXPORT" || die "exportfs -u"
    rpc.nfsd 0
    stop_pid mountd
    stop_pid statd
    mark "nfsd stopped"
    ocf nfs-grace stop || die "nfs-grace stop"
    # fs stop (mmp-fs): umount, release (holder=mmpd: mmpd stopped, it writes CLEAN)
    ocf mmp-fs stop || die "mmp-fs stop"
    mountpoint -q $MNT && die "mmp-fs stop returned 0 with $MNT still mounted"
    mark "unmounted"
    ocf mmp-fs monitor
    [[ $? -eq 7 ]] || die "mmp-fs probe after stop is not 7 (stopped)"
    $BIN/mmp-tool status --json "$(mmp_device)" > /run/mmp-status.json
    grep -q '"state": *"clean"' /run/mmp-status.json || die "MMP not clean after umount"
    mark "MMP clean"
}

# ocf-tester on nfs-grace with the group's grace values (so the kernel keeps what the next
# activation sets), on a node whose nfsd is stopped; statd_dir in /tmp (nothing is mounted here).
ocf_tester_grace() {
    ocf_install
    mkdir -p /tmp/ocf-tester
    local o=() p
    for p in "${OCF_GRACE_PARAMS[@]}"; do o+=(-o "$p"); done
    ocf nfs-locks monitor
    [[ $? -eq 7 ]] || die "the probe of nfs-locks on the standby is not 7 (stopped)"
    ocf-tester -n grace-test "${o[@]}" -o statd_dir=/tmp/ocf-tester/statd $OCF_AGENTS/nfs-grace ||
        die "ocf-tester nfs-grace"
    mark "ocf-tester passed on nfs-grace"
}
