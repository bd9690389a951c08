#!/bin/bash
# --manager pacemaker (sourced by lab.sh): the servers A and B are a two-node corosync/Pacemaker
# cluster (Debian 12's packages, in the `systemd` guest kind) with real fencing (fence_lab, the
# lab host's power switch: lib/fence.sh), and Pacemaker, not the lab, starts and moves the NFS
# service. This file writes the cluster's configuration and brings the cluster up; the scenarios
# are in scenarios/p*.sh.
#
# Configuration ($LAB/share/pcmk, /run/labfiles/pcmk in the guests):
#   corosync.conf  knet over the lab bridge, two_node, token LAB_TOKEN ms (default 6000: TCG
#                  guests on a loaded host miss shorter tokens), no crypto (the lab's bridge
#                  is inside its own namespace)
#   ours.crm       the group of README.md ("crmsh"): mmp-fs -> nfs-grace -> nfsserver -> exportfs
#                  -> nfs-locks -> IPaddr2, with the lab's addresses and paths
#   migrate.crm    ours.crm with fs outside the group (allow-migrate=true, an order and a
#                  colocation): the planned move by migration (p8)
#   stock.crm      Filesystem -> nfsserver -> exportfs -> IPaddr2 -> nfsnotify, as resource-agents
#                  documents them
#   fence-lab.crm  the host's power fence (fence_lab, one device per server): the default
#   fence-sbd.crm  sbd's poison pill instead (PCMK_SBD=1 only): one stonith:fence_sbd device
#                  (guest/fence_lab under fence_sbd's name and parameters), which can fence
#                  either server (stonith-timeout 2 x msgwait + 20 s, set with
#                  crm_attribute when switched)
#   sbd.default    /etc/default/sbd (PCMK_SBD=1 only): the sbd disk, the i6300esb watchdog,
#                  Pacemaker integration
# sbd runs (PCMK_SBD=1) when a scenario fences with it (p1w, p4w) or LAB_SBD=1: its disk and
# watchdog are part of the VMs from their boot, and sbd must start before corosync. The sbd
# header's timeouts are for TCG guests (sbd's defaults, watchdog 5 s and msgwait 10 s, fire on a
# loaded host): watchdog LAB_SBD_WATCHDOG (20 s), msgwait LAB_SBD_MSGWAIT (40 s, twice the
# watchdog as sbd(8) asks).
# Both: stonith-enabled=true, stonith-action=off, one fence_lab device per server (never run on
# the server it fences), resource-stickiness so a server that comes back does not take the
# group back. The operation timeouts are README's scaled for TCG guests, where one shell agent
# action takes seconds (nfsserver's start, with its systemd reload for the scope, took 60 s in
# the first runs; its stop 101 s and its monitor more than 60 s during moves): start 180 s,
# stop 240 s (a stop that times out gets the node fenced), monitors every 30 s with 120 s to
# answer.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

STACK=ours FENCE=lab
PCMK_TOKEN=${LAB_TOKEN:-6000}
PCMK_SBD=${LAB_SBD:-0}
[[ ,${scenarios:-}, =~ ,p[0-9]+w, ]] && PCMK_SBD=1
SBD_WATCHDOG=${LAB_SBD_WATCHDOG:-20}
SBD_MSGWAIT=${LAB_SBD_MSGWAIT:-40}
SBD_DEV=/dev/disk/by-id/virtio-labsbd
# Every member's operations (the timeouts above), the same for both stacks.
PCMK_OPS_NOMON="op start timeout=180s op stop timeout=240s"
PCMK_OPS="$PCMK_OPS_NOMON op monitor interval=30s timeout=120s"

pcmk_write_config() {
    local d=$LAB/share/pcmk
    mkdir -p "$d"
    cat > "$d/corosync.conf" << EOC
totem {
    version: 2
    cluster_name: halab
    transport: knet
    token: $PCMK_TOKEN
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
    node {
        ring0_addr: ${VM_IP[a]}
        name: ${VM_HOST[a]}
        nodeid: 1
    }
    node {
        ring0_addr: ${VM_IP[b]}
        name: ${VM_HOST[b]}
        nodeid: 2
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
logging {
    to_syslog: yes
    to_stderr: no
    timestamp: on
}
EOC
    pcmk_common_crm > "$d/common.crm"
    pcmk_fence_crm lab > "$d/fence-lab.crm"
    if [[ $PCMK_SBD == 1 ]]; then
        pcmk_fence_crm sbd > "$d/fence-sbd.crm"
        pcmk_sbd_default > "$d/sbd.default"
        truncate -s 8M "$LAB/sbd.img"
    fi
    { cat "$d/common.crm"; pcmk_ours_crm; } > "$d/ours.crm"
    { cat "$d/common.crm"; pcmk_migrate_crm; } > "$d/migrate.crm"
    { cat "$d/common.crm"; pcmk_stock_crm; } > "$d/stock.crm"
}

pcmk_common_crm() {
    cat << EOC
property cib-bootstrap-options: stonith-enabled=true stonith-action=off stonith-timeout=$(pcmk_fence_timeout lab)
rsc_defaults rsc-options: resource-stickiness=200
EOC
    pcmk_fence_crm lab
}

# pcmk_fence_crm lab|sbd: the fence devices (guest/fence_lab), switched with pcmk_use_fence.
pcmk_fence_crm() {
    if [[ $1 == sbd ]]; then
        cat << EOC
primitive fence-sbd stonith:fence_sbd params devices=$SBD_DEV pcmk_host_list="${VM_HOST[a]} ${VM_HOST[b]}" pcmk_off_timeout=$((SBD_MSGWAIT * 2))s op monitor interval=60s
EOC
        return
    fi
    cat << EOC
primitive fence-a stonith:fence_lab params pcmk_host_list=${VM_HOST[a]} op monitor interval=60s
primitive fence-b stonith:fence_lab params pcmk_host_list=${VM_HOST[b]} op monitor interval=60s
location fence-a-elsewhere fence-a -inf: ${VM_HOST[a]}
location fence-b-elsewhere fence-b -inf: ${VM_HOST[b]}
EOC
}

# pcmk_fence_timeout lab|sbd: stonith-timeout (sbd: a fence takes msgwait; sbd(8) asks for more).
pcmk_fence_timeout() {
    if [[ $1 == sbd ]]; then echo "$((SBD_MSGWAIT * 2 + 20))s"; else echo 60s; fi
}

# /etc/default/sbd: sbd(8)'s settings as Debian's file names them. always: a server the lab
# boots again after a fence starts sbd (its slot is cleared first, the administrator's step).
pcmk_sbd_default() {
    cat << EOC
SBD_DEVICE=$SBD_DEV
SBD_WATCHDOG_DEV=/dev/watchdog
SBD_PACEMAKER=yes
SBD_STARTMODE=always
SBD_DELAY_START=no
SBD_TIMEOUT_ACTION=flush,reboot
SBD_OPTS=
EOC
}

# README.md's group (crmsh), with the lab's device, paths and addresses. The grace and lease
# values: 240 s grace, lockd's maximum (nfs-grace's range; nfs-locks ends it as soon as every
# ledger lock is held again; floor 5 s)
# and a 15 s lease. Grace runs from nfsd's start, and under TCG the group's members after nfsd
# (exportfs, nfs-locks, IPaddr2) took about 100 s: with the scripted lab's 60 s grace, grace
# was over before the clients could reach the floating IP, and D was granted C's locks (the
# first p1 run: 2740 conflicting NLM grants, every NFSv4 write EIO). The grace must outlast
# the group's start from nfsd to the IP.
pcmk_ours_crm() {
    pcmk_ours_fs
    pcmk_ours_members
    echo "group nfs fs grace nfsd export locks vip"
}

# The same stack for planned moves by migration (README.md, "Planned moves"): Pacemaker
# migrates a primitive, not a group member, so fs stands outside the group with
# allow-migrate=true, and an order and a colocation tie the group to it. A move of fs runs
# migrate_to on the old server (the stop, then the handoff's offer to the new one) and
# migrate_from on the new one (the claim with the offer's nonce, no full wait).
pcmk_migrate_crm() {
    pcmk_ours_fs "meta allow-migrate=true" "op migrate_to timeout=240s op migrate_from timeout=180s"
    pcmk_ours_members
    cat << EOC
group nfs grace nfsd export locks vip
order fs-first Mandatory: fs nfs
colocation nfs-with-fs inf: nfs fs
EOC
}

# pcmk_ours_fs [META] [OPS]: our filesystem resource, with META attributes and OPS besides the
# lab's usual operations.
pcmk_ours_fs() {
    echo "primitive fs ocf:mmp-ha:mmp-fs params device=/dev/vda directory=/srv/ha fstype=ext4 holder=ext4 ${1:-} $PCMK_OPS ${2:-}"
}

# The members of our group after fs.
pcmk_ours_members() {
    cat << EOC
primitive grace ocf:mmp-ha:nfs-grace params statd_dir=/srv/ha/.nfsinfo grace_time=240 lease_time=15 $PCMK_OPS_NOMON
primitive nfsd ocf:heartbeat:nfsserver params nfs_shared_infodir=/srv/ha/.nfsinfo nfs_no_notify=true nfs_server_scope=nfs-ha $PCMK_OPS
primitive export ocf:heartbeat:exportfs params directory=/srv/ha/export clientspec=$LAB_NET options=rw,sync,no_root_squash,no_subtree_check fsid=0 unlock_on_stop=false $PCMK_OPS
primitive locks ocf:mmp-ha:nfs-locks params ip=$FIP fs=/srv/ha/export statd_dir=/srv/ha/.nfsinfo ledger_dir=/srv/ha/ledger mon_name=nfs-ha min_grace=5 reclaim_timeout=60 record_interval=1 notify_deadline=60 $PCMK_OPS
primitive vip ocf:heartbeat:IPaddr2 params ip=$FIP cidr_netmask=$NET_PREFIX nic=eth0 $PCMK_OPS
EOC
}

# The stock stack as resource-agents documents it: the kernel's own MMP wait is the only gate,
# nfsserver keeps statd and nfsdcld on the shared disk and sets the scope, nfsnotify notifies.
pcmk_stock_crm() {
    cat << EOC
primitive fs ocf:heartbeat:Filesystem params device=/dev/vda directory=/srv/ha fstype=ext4 $PCMK_OPS
primitive nfsd ocf:heartbeat:nfsserver params nfs_shared_infodir=/srv/ha/.nfsinfo nfs_ip=$FIP nfs_no_notify=true nfs_server_scope=nfs-ha $PCMK_OPS
primitive export ocf:heartbeat:exportfs params directory=/srv/ha/export clientspec=$LAB_NET options=rw,sync,no_root_squash,no_subtree_check fsid=0 unlock_on_stop=true $PCMK_OPS
primitive vip ocf:heartbeat:IPaddr2 params ip=$FIP cidr_netmask=$NET_PREFIX nic=eth0 $PCMK_OPS
primitive notify ocf:heartbeat:nfsnotify params source_host=nfs-ha $PCMK_OPS
group nfs fs nfsd export vip notify
EOC
}

# Both servers start corosync and Pacemaker and see each other; A loads STACK's configuration;
# the group starts where Pacemaker places it (ACTIVE is set from where it runs).
pcmk_first_activation() {
    local ta tb n
    fence_server_start
    if [[ $PCMK_SBD == 1 ]]; then
        vm_run a 60 sbd-create "$SBD_WATCHDOG" "$SBD_MSGWAIT" || return 1
        log "sbd disk initialised (watchdog $SBD_WATCHDOG s, msgwait $SBD_MSGWAIT s)"
    fi
    ta=$(vm_exec a pcmk-start) tb=$(vm_exec b pcmk-start)
    vm_wait a "$ta" 120 || return 1
    vm_wait b "$tb" 120 || return 1
    vm_run a 180 pcmk-wait-online 170 || return 1
    log "cluster up: ${VM_HOST[a]} and ${VM_HOST[b]} online; loading the $STACK configuration"
    vm_run a 60 pcmk-configure "$STACK" || return 1
    pcmk_find_active a 240 || return 1
    log "group nfs started on ${VM_HOST[$ACTIVE]}"
}

# pcmk_find_active ASK LIMIT: waits (asking server ASK) until the group's last member runs on
# a server; sets ACTIVE and STANDBY.
pcmk_find_active() {
    local ask=$1 limit=$2 t0 t where n
    t0=$(date +%s)
    while (($(date +%s) - t0 < limit)); do
        t=$(vm_exec "$ask" pcmk-where)
        vm_wait "$ask" "$t" 30 > /dev/null 2>&1
        where=$(tail -1 "$LAB/vm/$ask/out/$t.out" 2> /dev/null)
        if [[ -n $where ]] && n=$(node_of_host "$where"); then
            ACTIVE=$n
            if [[ $n == a ]]; then STANDBY=b; else STANDBY=a; fi
            return 0
        fi
        sleep 2
    done
    vm_run "$ask" 30 pcmk-status
    cat "$LAB/vm/$ask/out/"*pcmk-status.out 2> /dev/null | tail -40
    echo "lab: the group did not start within $limit s" >&2
    return 1
}

# pcmk_use_stack STACK: the group becomes STACK's (ours or stock), started where Pacemaker
# places it; nothing to do if it already is. The clients keep their mounts (same address and
# export): they wait through the switch as through any outage.
pcmk_use_stack() {
    [[ $STACK == "$1" ]] && return 0
    log "switching the group from the $STACK agents to the $1 agents"
    vm_run "$ACTIVE" 600 pcmk-switch "$1" || return 1
    STACK=$1
    pcmk_find_active "$ACTIVE" 400 || return 1
    log "group nfs ($STACK agents) started on ${VM_HOST[$ACTIVE]}"
}

# pcmk_use_fence lab|sbd: Pacemaker fences with the host's power switch or with sbd's poison
# pill from now on (needs PCMK_SBD=1 for sbd).
pcmk_use_fence() {
    [[ $FENCE == "$1" ]] && return 0
    if [[ $1 == sbd && $PCMK_SBD != 1 ]]; then
        echo "lab: sbd fencing needs sbd in the VMs from their boot (a p*w scenario or LAB_SBD=1)" >&2
        return 1
    fi
    log "fencing: from $FENCE to $1"
    vm_run "$ACTIVE" 120 pcmk-fence "$1" "$(pcmk_fence_timeout "$1")" || return 1
    FENCE=$1
}

# pcmk_open STACK FENCE: a scenario's opening after its banner: the group on STACK's agents,
# fencing by FENCE, the workload running, the timeline (SCEN_NAME) started.
pcmk_open() {
    pcmk_use_stack "$1" || return 1
    pcmk_use_fence "$2" || return 1
    workload_start || return 1
    sleep 3
    tl_start "$SCEN_NAME"
}

# pcmk_save_ops NODE: Pacemaker's operation history with each operation's run time, as NODE
# sees it, into $LAB/pcmk-ops-SCENARIO.txt (where a failover's seconds went).
pcmk_save_ops() {
    local t
    t=$(vm_exec "$1" pcmk-ops)
    vm_wait "$1" "$t" 60 > /dev/null 2>&1
    vm_out "$1" "$t" > "$LAB/pcmk-ops-$SCEN_NAME.txt"
}
