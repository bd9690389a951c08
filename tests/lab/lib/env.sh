#!/bin/bash
# The lab's constants, logging, preflight, setup and cleanup (sourced by lab.sh). Every process,
# tap, namespace and file the lab makes is removed by cleanup (EXIT trap).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

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
MMP_BLOCK=
FENCE_TAG=
LAB=
NS=
KVER=
BIN_SRC=
LAB_DEB=
SAMPLER_PID=
ACTIVE=a
STANDBY=b
T_START=$(date +%s)

log() { echo "[lab $(date +%T)] $*"; }
now() { date +%s.%N; }
elapsed_total() { echo $(($(date +%s) - T_START)); }
dt() { echo "$(now) - $1" | bc | awk '{printf "%.1f", $1}'; }

# --- preflight ------------------------------------------------------------------------------
# preflight BIN_DIR: root, the Debian packages, a guest kernel, the tools (built unless BIN_DIR).
preflight() {
    local want_bin=$1 missing=()
    if [[ $(id -u) -ne 0 ]]; then
        echo "lab.sh: must run as root (network namespace, taps, qemu)" >&2
        return 1
    fi
    host_packages_missing
    guest_each check
    find_guest_kernel || missing+=(linux-image-amd64)
    [[ -n $want_bin ]] || command -v dpkg-parsechangelog > /dev/null || missing+=(dpkg-dev)
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "lab.sh: missing Debian packages: ${missing[*]}" >&2
        echo "        apt-get install -y --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
    if [[ -n $want_bin ]]; then
        check_tools "$want_bin" || return 1
        BIN_SRC=$want_bin
    else
        build_package || return 1
    fi
}

# Appends to the caller's `missing` the packages of the host-side commands that are absent.
host_packages_missing() {
    local c
    for c in qemu-system-x86_64:qemu-system-x86 ip:iproute2 mkfs.ext4:e2fsprogs jq:jq \
        cpio:cpio gzip:gzip strip:binutils modprobe:kmod; do
        command -v "${c%%:*}" > /dev/null || missing+=("${c#*:}")
    done
    [[ -x /usr/sbin/rpc.nfsd ]] || missing+=(nfs-kernel-server)
    [[ -x /usr/sbin/rpc.statd ]] || missing+=(nfs-common)
    [[ -x /usr/sbin/rpcbind || -x /sbin/rpcbind ]] || missing+=(rpcbind)
}

# Sets KVER: the newest installed kernel that has nfsd.
find_guest_kernel() {
    local k
    # shellcheck disable=SC2012 # kernel versions, no odd file names
    for k in $(ls -1 /boot/vmlinuz-* 2> /dev/null | sed 's|/boot/vmlinuz-||' | sort -V -r); do
        if [[ -n $(find "/lib/modules/$k/kernel/fs/nfsd" -name 'nfsd.ko*' 2> /dev/null) ]]; then
            KVER=$k
            return 0
        fi
    done
    return 1
}

# Builds the Debian package (scripts/build-deb.sh) with LAB_PROFILE (default release); sets
# LAB_DEB. The guests run what the package ships, installed as stage_files shows.
build_package() {
    local profile=${LAB_PROFILE:-release} out
    log "building the Debian package (scripts/build-deb.sh --profile $profile)"
    out=$(bash "$repo/scripts/build-deb.sh" --profile "$profile") ||
        { echo "lab.sh: scripts/build-deb.sh failed" >&2; return 1; }
    LAB_DEB=$(tail -n 1 <<< "$out")
}

check_tools() {
    local dir=$1 bins=(mmp-tool lockd-recover lock-torture) c
    [[ ${HOLDER:-ext4} == mmpd ]] && bins+=(mmpd)
    for c in "${bins[@]}"; do
        [[ -x $dir/$c ]] || {
            echo "lab.sh: $dir/$c missing (build it or pass --bin-dir)" >&2
            return 1
        }
    done
}

# --- setup and cleanup ----------------------------------------------------------------------
lab_setup() {
    LAB=$(mktemp -d "${TMPDIR:-/tmp}/halab.XXXXXX") || return 1
    NS=halab$$
    trap cleanup EXIT
    trap 'echo "lab.sh: interrupted" >&2; exit 130' INT TERM HUP
    log "lab directory $LAB, namespace $NS, guest kernel $KVER"
    stage_files || return 1
    [[ $MANAGER == pacemaker ]] && pcmk_write_config
    make_shared_disks || return 1
    if [[ $VOLUMES == 1 ]]; then vol_make_disks || return 1; fi
    net_setup || return 1
    write_hosts_file
    if [[ $VOLUMES == 1 ]]; then vol_hosts; fi
    boot_all_vms || return 1
    first_activation || return 1
    [[ $MANAGER == pacemaker ]] || ACTIVE=a STANDBY=b
    log "lab ready in $(elapsed_total) s: ${VM_HOST[$ACTIVE]} active with $FIP, ${VM_HOST[$STANDBY]} standby, C and D mounted"
}

# Our tools (the package, or --bin-dir's binaries stripped) and guest/ into the directory shared
# with the VMs (/run/labfiles in the guests); the guest's boot files.
stage_files() {
    mkdir -p "$LAB/share/bin" "$LAB/vm"
    if [[ -n $LAB_DEB ]]; then
        install_package || return 1
    else
        local b
        for b in mmp-tool lockd-recover lock-torture mmpd; do
            [[ -x $BIN_SRC/$b ]] && strip -o "$LAB/share/bin/$b" "$BIN_SRC/$b"
        done
    fi
    check_tools "$LAB/share/bin" || return 1
    cp -r "$here/guest" "$LAB/share/guest"
    guest_each prepare
}

# The package as a user gets it, extracted into the shared directory (share/usr/sbin,
# share/usr/bin, the agents' links in share/usr/lib/ocf/resource.d/mmp-ha, ...); share/bin
# (LAB_BIN in the guests) links to its binaries with relative links, which resolve inside
# /run/labfiles in the guests too.
install_package() {
    dpkg-deb -x "$LAB_DEB" "$LAB/share" || return 1
    local p
    for p in "$LAB"/share/usr/sbin/* "$LAB"/share/usr/bin/*; do
        ln -s "../${p#"$LAB/share/"}" "$LAB/share/bin/${p##*/}"
    done
    log "our tools from ${LAB_DEB##*/}, extracted into $LAB/share"
}

make_shared_disks() {
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
        # The service's directories exist from the start (Pacemaker's exportfs needs its
        # directory before anything else could make it).
        mkdir -p "$LAB/skel/export" "$LAB/skel/ledger" "$LAB/skel/.nfsinfo"
        mkfs.ext4 -q -F -b 4096 -O mmp -E mmp_update_interval=1,lazy_itable_init=0,lazy_journal_init=0 \
            -L halab -d "$LAB/skel" "$LAB/shared.img" || return 1
        MMP_BLOCK=$(dumpe2fs -h "$LAB/shared.img" 2> /dev/null | awk -F: '/MMP block number/ {print $2+0}')
    fi
}

boot_all_vms() {
    log "booting 4 VMs (TCG)"
    local t0 n
    t0=$(now)
    for n in a b c d; do vm_start "$n"; done
    for n in a b c d; do vm_wait_ready "$n" 180 || return 1; done
    log "all VMs up in $(dt "$t0") s"
}

# Both servers prepared, A takes the (fresh) filesystem, then both clients mount it. Under
# Pacemaker the cluster starts the group where it places it (ACTIVE is set from there).
first_activation() {
    local ta tb
    # Scenario 10: its two services and 20 volumes instead (lib/volumes.sh).
    if [[ $VOLUMES == 1 ]]; then vol_first_activation; return; fi
    if [[ $MANAGER == pacemaker ]]; then
        pcmk_first_activation || return 1
        clients_mount
        return
    fi
    ta=$(vm_exec a server-prep) tb=$(vm_exec b server-prep)
    vm_wait a "$ta" 120 || return 1
    vm_wait b "$tb" 120 || return 1
    log "first activation on A (fresh filesystem)"
    ta=$(vm_exec a activate ours)
    vm_wait a "$ta" 120 || return 1
    clients_mount
}

clients_mount() {
    local tc td
    # Each client mounts NFSv3 and NFSv4 (C 4.2, D 4.1) from the same servers.
    tc=$(vm_exec c client-prep 4.2) td=$(vm_exec d client-prep 4.1)
    vm_wait c "$tc" 120 || return 1
    vm_wait d "$td" 120 || return 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    fence_server_stop
    vm_kill_all
    [[ -n ${SAMPLER_PID:-} ]] && kill "$SAMPLER_PID" 2> /dev/null
    net_teardown
    if [[ -n $LAB && -d $LAB ]]; then
        if [[ $keep -eq 1 ]]; then
            log "kept $LAB (--keep)"
        else
            rm -rf "$LAB"
        fi
    fi
    exit $rc
}
