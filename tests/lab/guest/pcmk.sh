#!/bin/bash
# The Pacemaker lab's node commands (--manager pacemaker; sourced by node.sh: functions only),
# run in the `systemd` servers. The cluster is Debian's corosync and Pacemaker, configured from
# the files lab.sh wrote to /run/labfiles/pcmk (lib/pcmk.sh): corosync.conf, and one crmsh
# configuration per stack (ours.crm, stock.crm). Pacemaker starts and stops the NFS service;
# these commands only start the cluster, load a configuration and report what Pacemaker did.
#
#   pcmk_start                corosync + pacemaker (systemctl); a unit that fails is a setup
#                             error with its journal's tail
#   pcmk_wait_online SECS     until both servers are online members
#   pcmk_configure STACK      crm configure load update STACK.crm (run on one node)
#   pcmk_wait_group NODE SECS until the group's last member (vip) runs on NODE
#   pcmk_switch STACK         stop the group, remove it (cibadmin) and load STACK.crm instead
#   pcmk_status               crm_mon -1 -r, failed actions and the fencing history
#   pcmk_ops                  the operation history with run times (crm_mon -o -t)
#   sbd_create WD MSGWAIT     writes sbd's header on the sbd disk (run on one server, before
#                             the cluster starts; needs the lab's sbd disk, PCMK_SBD=1)
#   pcmk_fence lab|sbd TIMEOUT  Pacemaker fences with fence-KIND.crm's devices from now on
#   pcmk_hold_stopped SECS    for SECS the filesystem is never mounted here (the other
#                             server died and its fence keeps failing): Pacemaker must not
#                             start the group without a fence
#   pcmk_force_refused        crm_resource --force-start of fs here (the agent's start, run by
#                             hand on this server, outside the cluster's decisions): must fail
#                             with the MMP gate's refusal and leave the filesystem unmounted
#   pcmk_wait_refused NODE SECS  until Pacemaker records a failed start of the filesystem (fs)
#                             on NODE, this server: the MMP gate refused; fails at once if the
#                             filesystem gets mounted here
#   pcmk_move NODE [RSC]      crm_resource --move (= crm resource move nfs NODE; a planned move:
#                             Pacemaker stops the group here and starts it on NODE; RSC fs
#                             with migrate.crm: fs migrates, the group follows)
#   pcmk_clear [RSC]          crm_resource --clear (drop the move's constraint; stickiness
#                             keeps the group where it now runs)
#   pcmk_handoff_log [N]      the last N journal lines about a handoff (mmp-fs's offer, nonce)
#   pcmk_watch_release SECS   marks when the shared filesystem is no longer mounted here
#   pcmk_holder_check         this server still has the filesystem mounted and its kernel never
#                             saw another writer on the MMP block (kmmpd's "multiply mounted")
#   pcmk_watch_merge SECS     for SECS after a partition healed: marks every change of the
#                             filesystem's mount here ("mounted here", "unmounted here"), fails
#                             at once when kmmpd reports another writer; then reports Pacemaker's
#                             view and mmp-fs's refusals here since the start
# shellcheck disable=SC2154 # node.sh's globals (MNT, ...)

PCMK=/run/labfiles/pcmk

unit_tail() { journalctl -u "$1" -n "${2:-25}" --no-pager -o short-precise 2> /dev/null; }

pcmk_start() {
    mark "cluster start"
    install -m 0644 $PCMK/corosync.conf /etc/corosync/corosync.conf || die "corosync.conf"
    mkdir -p "$MNT"
    [[ -e $PCMK/sbd.default ]] && sbd_enable
    # The NFS server's units are Pacemaker's to start (nfsserver); rpcbind may run.
    systemctl start corosync || { unit_tail sbd 10; unit_tail corosync; die "corosync did not start (journal above)"; }
    mark "corosync started"
    systemctl start pacemaker || { unit_tail pacemaker; die "pacemaker did not start (journal above)"; }
    mark "pacemaker started"
}

# The sbd disk, once udev has named it.
sbd_dev() {
    local dev i
    dev=$(sed -n 's/^SBD_DEVICE=//p' $PCMK/sbd.default)
    for ((i = 0; i < 50; i++)); do [[ -b $dev ]] && break; sleep 0.2; done
    [[ -b $dev ]] || die "no sbd disk $dev (lsblk: $(lsblk -dno NAME,SERIAL | tr '\n' ' '))"
    echo "$dev"
}

sbd_create() {
    local dev
    dev=$(sbd_dev) || exit 1
    sbd -d "$dev" -1 "$1" -4 "$2" create || die "sbd create on $dev"
    sbd -d "$dev" dump | grep -i timeout
    mark "sbd header written"
}

# sbd runs whenever corosync does (its unit is RequiredBy corosync once enabled; it refuses
# a manual start). A server the lab boots again after sbd fenced it finds the off message
# still in its slot: clear it first, as sbd(8) tells an administrator to.
sbd_enable() {
    local dev
    dev=$(sbd_dev) || exit 1
    [[ -c /dev/watchdog ]] || modprobe i6300esb
    [[ -c /dev/watchdog ]] || die "no /dev/watchdog (qemu's i6300esb)"
    install -m 0644 $PCMK/sbd.default /etc/default/sbd || die "/etc/default/sbd"
    sbd -d "$dev" message "$(hostname)" clear > /dev/null 2>&1
    systemctl enable sbd > /dev/null 2>&1 || die "systemctl enable sbd"
    mark "sbd enabled"
}

pcmk_fence() {
    local old r
    # The new devices first: there is never a moment without one.
    crm configure load update "$PCMK/fence-$1.crm" || die "crm configure load update fence-$1.crm"
    crm_attribute --type crm_config --name stonith-timeout --update "$2" || die "stonith-timeout $2"
    if [[ $1 == sbd ]]; then old="fence-a fence-b"; else old=fence-sbd; fi
    for r in $old; do
        cibadmin --delete --xml-text "<rsc_location id=\"$r-elsewhere\"/>" > /dev/null 2>&1
        cibadmin --delete --xml-text "<primitive id=\"$r\"/>" > /dev/null 2>&1
    done
    stonith_admin --list-registered
    mark "fencing with $1"
}

pcmk_wait_online() {
    local i
    for ((i = 0; i < $1 * 2; i++)); do
        if crm_mon -1 2> /dev/null | grep -Eq "Online: \[ (serva servb|servb serva) \]"; then
            mark "both servers online members"
            return 0
        fi
        sleep 0.5
    done
    crm_mon -1 2>&1 | head -20
    unit_tail corosync 15
    die "the servers did not both come online within $1 s"
}

pcmk_configure() {
    crm configure load update "$PCMK/$1.crm" || die "crm configure load update $1.crm"
    mark "configuration $1 loaded"
}

pcmk_wait_group() {
    local node=$1 end=$((SECONDS + $2)) where
    while ((SECONDS < end)); do
        where=$(crm_resource --locate -r vip 2> /dev/null)
        if [[ $where == *"running on: $node"* ]]; then
            mark "group started on $node"
            return 0
        fi
        sleep 0.5
    done
    pcmk_status
    die "the group did not start on $node within $2 s"
}

pcmk_switch() {
    local end=$((SECONDS + 480)) where
    crm_resource --resource nfs --set-parameter target-role --meta --parameter-value Stopped > /dev/null ||
        die "could not stop the group"
    # migrate.crm's fs stands outside the group: it is stopped by itself.
    if ! cibadmin --query --xpath "//group[@id='nfs']/primitive[@id='fs']" > /dev/null 2>&1; then
        crm_resource --resource fs --set-parameter target-role --meta --parameter-value Stopped > /dev/null ||
            die "could not stop fs"
    fi
    mark "group stop requested"
    # By the clock, not a count: one crm_resource call takes a second or more under TCG. A
    # failed query is not "stopped": only an answer without a node is.
    while ! where=$(crm_resource --locate -r fs 2> /dev/null) || [[ $where == *"running on:"* ]]; do
        ((SECONDS < end)) || { pcmk_status; die "the group did not stop within 480 s"; }
        sleep 1
    done
    mark "group stopped"
    # The group element holds its members: one delete removes the whole stack (migrate.crm's
    # fs and its two constraints besides).
    cibadmin --delete --xml-text '<group id="nfs"/>' || die "cibadmin --delete the group"
    cibadmin --delete --xml-text '<rsc_order id="fs-first"/>' > /dev/null 2>&1
    cibadmin --delete --xml-text '<rsc_colocation id="nfs-with-fs"/>' > /dev/null 2>&1
    cibadmin --delete --xml-text '<primitive id="fs"/>' > /dev/null 2>&1
    crm_resource --cleanup > /dev/null 2>&1
    pcmk_configure "$1"
}

# The server the group's last member (vip) runs on, or nothing.
pcmk_where() { crm_resource --locate -r vip 2> /dev/null | sed -n 's/.*running on: *//p'; }

pcmk_status() {
    crm_mon -1 -r --include=failcounts 2>&1 | sed -n '/Node List/,$p'
    echo "fencing history:"
    stonith_admin --history '*' 2>&1 | head -10
}

pcmk_wait_refused() {
    local node=$1 end=$((SECONDS + $2)) line
    # No earlier failure of fs in the history may pass for this one.
    crm_resource --cleanup --resource fs > /dev/null 2>&1
    while ((SECONDS < end)); do
        if mountpoint -q "$MNT"; then
            mark "filesystem on $MNT: SPLIT BRAIN"
            pcmk_status
            return 1
        fi
        # crm_mon 2.1 prints "fs start on NODE returned 'error' (REASON)" (older: fs_start_0).
        line=$(crm_mon -1 -r 2> /dev/null | grep -m1 -E "fs(_start_0| start) on $node")
        if [[ -n $line ]]; then
            echo "pacemaker: $line"
            # mmp-fs's refusal (libmmp's "in use" error), not any failure of the start.
            [[ $line == *"in use on another node"* ]] || die "fs failed to start on $node, but not by the MMP gate's refusal"
            mark "fs start refused on $node"
            # The agent's own words (mmp-fs logs through the journal as mmp-fs, or Pacemaker's
            # executor relays them).
            journalctl --no-pager -o cat 2> /dev/null | grep -E "mmp-fs|MMP" | tail -6
            return 0
        fi
        sleep 0.5
    done
    pcmk_status
    die "no failed start of fs on $node within $2 s"
}

pcmk_hold_stopped() {
    local end=$((SECONDS + $1))
    while ((SECONDS < end)); do
        if mountpoint -q "$MNT"; then
            mark "filesystem on $MNT although no fence succeeded"
            pcmk_status
            return 1
        fi
        sleep 0.5
    done
    crm_mon -1 2> /dev/null | grep -iE "unclean|offline|fs\s" | head -4
    stonith_admin --history '*' 2>&1 | head -4
    mark "group still stopped after $1 s of failing fences"
}

pcmk_force_refused() {
    local out rc
    out=$(crm_resource --force-start --resource fs --timeout 180s 2>&1)
    rc=$?
    tail -4 <<< "$out"
    if mountpoint -q "$MNT"; then
        mark "filesystem on $MNT: SPLIT BRAIN"
        die "crm_resource --force-start mounted the filesystem here while the other server holds it"
    fi
    [[ $rc -ne 0 ]] || die "crm_resource --force-start of fs succeeded here"
    # The agent's reason, in crm_resource's output or in the journal (mmp-fs logs through it).
    if [[ $out != *"in use on another node"* ]]; then
        journalctl --no-pager -o cat 2> /dev/null | grep "in use on another node" | tail -2 | grep . ||
            die "fs failed to start here, but not by the MMP gate's refusal"
    fi
    mark "fs force-start refused here"
}

pcmk_watch_merge() {
    local end=$((SECONDS + $1)) since now_in was_in n
    since=$(date +%s)
    mountpoint -q "$MNT" && was_in=1 || was_in=0
    mark "$([[ $was_in == 1 ]] && echo mounted || echo unmounted) here at the heal"
    while ((SECONDS < end)); do
        mountpoint -q "$MNT" && now_in=1 || now_in=0
        if [[ $now_in != "$was_in" ]]; then
            mark "$([[ $now_in == 1 ]] && echo mounted || echo unmounted) here"
            was_in=$now_in
        fi
        if dmesg | grep -q "multiply mounted"; then
            dmesg | grep "multiply mounted" | tail -3
            pcmk_status
            die "kmmpd saw another writer on the MMP block"
        fi
        sleep 0.5
    done
    echo "pacemaker here: $(systemctl is-active pacemaker)"
    crm_mon -1 -r 2>&1 | grep -E "Online|OFFLINE|UNCLEAN|Started|Stopped|FAILED|fs start|unclean" | head -14
    n=$(journalctl --no-pager -o cat --since "@$since" 2> /dev/null | grep -c "in use on another node")
    echo "mmp-fs refusals here since the heal: $n"
    mark "watched $1 s after the heal: mounted=$now_in refusals=$n"
}

pcmk_holder_check() {
    local n
    mountpoint -q "$MNT" || die "the filesystem is no longer mounted on this server"
    n=$(dmesg | grep -c "multiply mounted")
    echo "kernel: $n reports of another writer on the MMP block"
    [[ $n -eq 0 ]] || { dmesg | grep "multiply mounted" | tail -3; die "kmmpd saw another writer"; }
    mark "still the holder, no other writer seen"
}

# crm_resource, which crmsh's `crm resource move` and pcs's `resource move` call: crmsh 4.4
# also waits for the transition (it sat there 60 s and more under TCG).
pcmk_move() {
    local rsc=${2:-nfs}
    crm_resource --move --resource "$rsc" --node "$1" < /dev/null || die "crm_resource --move $rsc $1"
    mark "move to $1 requested"
}

pcmk_clear() { crm_resource --clear --resource "${1:-nfs}" < /dev/null || die "crm_resource --clear ${1:-nfs}"; }

pcmk_watch_release() {
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        if ! mountpoint -q "$MNT"; then
            mark "filesystem released"
            return 0
        fi
        sleep 0.2
    done
    die "the filesystem was still mounted after $1 s"
}

# The agents' lines about a handoff (offer, nonce) in the journal, as Pacemaker's executor
# relays their stderr.
pcmk_handoff_log() { journalctl --no-pager -o cat 2> /dev/null | grep -E "offered|handoff|nonce" | tail -"${1:-4}"; }

pcmk_ops() { crm_mon -1 -r -o -t 2>&1 | sed -n '/Operations:/,$p'; }
