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
# shellcheck disable=SC2154 # node.sh's globals (MNT, ...)

PCMK=/run/labfiles/pcmk

unit_tail() { journalctl -u "$1" -n "${2:-25}" --no-pager -o short-precise 2> /dev/null; }

pcmk_start() {
    mark "cluster start"
    install -m 0644 $PCMK/corosync.conf /etc/corosync/corosync.conf || die "corosync.conf"
    mkdir -p $MNT
    # The NFS server's units are Pacemaker's to start (nfsserver); rpcbind may run.
    systemctl start corosync || { unit_tail corosync; die "corosync did not start (journal above)"; }
    mark "corosync started"
    systemctl start pacemaker || { unit_tail pacemaker; die "pacemaker did not start (journal above)"; }
    mark "pacemaker started"
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
    local node=$1 i where
    for ((i = 0; i < $2 * 2; i++)); do
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
    local i
    crm_resource --resource nfs --set-parameter target-role --meta --parameter-value Stopped > /dev/null ||
        die "could not stop the group"
    for ((i = 0; i < 600; i++)); do
        [[ -z $(crm_resource --locate -r fs 2> /dev/null | sed -n 's/.*running on: *//p') ]] && break
        sleep 0.5
    done
    [[ $i -lt 600 ]] || { pcmk_status; die "the group did not stop within 300 s"; }
    mark "group stopped"
    # The group element holds its members: one delete removes the whole stack.
    cibadmin --delete --xml-text '<group id="nfs"/>' || die "cibadmin --delete the group"
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
