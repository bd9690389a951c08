#!/bin/bash
# Build the root filesystem image of the lab's `systemd` guest kind (the Pacemaker lab's servers):
# a debootstrapped Debian 12 with systemd, corosync, Pacemaker, crmsh, resource-agents, sbd and
# the NFS server, plus the guest kernel's modules, our package installed with dpkg, the lab's
# fence agent (guest/fence_lab) and the unit that starts the lab's agent (guest/lab-boot).
#
#   mkroot.sh KVER DEB|- BINDIR OUT.img
#     DEB: our package (scripts/build-deb.sh), installed with dpkg -i in the root; "-": install
#          BINDIR's mmp-tool/lockd-recover/mmpd into /usr/sbin and the agents' links by hand.
#   LAB_ROOT_CACHE=DIR keeps the debootstrapped root as DIR/root-<hash>.tar (about 530 MB) and
#     reuses it (a debootstrap takes about 90 s here); unset, the root is made in the image's
#     directory and removed with it.
#   LAB_MIRROR: the Debian mirror (default http://deb.debian.org/debian).
# Exit: 0 built, 2 setup error (debootstrap failed: the message names the log).
set -euo pipefail
kver=$1 deb=$2 bindir=$3 out=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
MIRROR=${LAB_MIRROR:-http://deb.debian.org/debian}
# What the servers run. Pacemaker's own packages pull in corosync's libraries, crmsh python3.
PKGS=systemd-sysv,udev,kmod,iproute2,procps,psmisc,netbase,e2fsprogs,corosync,pacemaker
PKGS+=,pacemaker-cli-utils,crmsh,resource-agents,sbd,nfs-kernel-server,nfs-common,rpcbind,jq,busybox
key=$(echo "$SUITE $MIRROR $PKGS" | sha256sum | cut -c1-12)
work=$(dirname "$out")/root.d
log() { echo "[mkroot $(date +%T)] $*" >&2; }

fetch_root() {
    local cache=${LAB_ROOT_CACHE:-} tar
    rm -rf "$work"
    mkdir -p "$work"
    if [[ -n $cache ]]; then
        tar=$cache/root-$key.tar
        if [[ -s $tar ]]; then
            log "debootstrapped root from the cache ($tar)"
            tar -C "$work" -xf "$tar"
            return 0
        fi
    fi
    log "debootstrap $SUITE ($MIRROR): about 90 s"
    if ! debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$work" "$MIRROR" \
        > "$work.debootstrap.log" 2>&1; then
        echo "mkroot: debootstrap failed; the end of $work.debootstrap.log:" >&2
        tail -15 "$work.debootstrap.log" >&2
        exit 2
    fi
    rm -f "$work.debootstrap.log"
    if [[ -n $cache ]]; then
        mkdir -p "$cache"
        tar -C "$work" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
        log "cached as $tar"
    fi
}

# The guest kernel's modules (the host's /lib/modules/KVER) without the parts no lab VM uses.
copy_modules() {
    mkdir -p "$work/lib/modules"
    tar -C /lib/modules -cf - --exclude="$kver/kernel/drivers/gpu" --exclude="$kver/kernel/sound" \
        --exclude="$kver/kernel/drivers/media" --exclude="$kver/kernel/drivers/net/wireless" \
        --exclude="$kver/kernel/drivers/infiniband" --exclude="$kver/kernel/drivers/staging" \
        --exclude="$kver/kernel/drivers/bluetooth" --exclude="$kver/kernel/net/wireless" \
        --exclude="$kver/kernel/net/mac80211" "$kver" | tar -C "$work/lib/modules" -xf -
    depmod -b "$work" "$kver"
}

# Our tools as a user installs them: the package, or (no package) the binaries and the agents'
# links where the package puts them.
install_tools() {
    if [[ $deb != - ]]; then
        cp "$deb" "$work/tmp/mmp-ha.deb"
        chroot "$work" dpkg -i /tmp/mmp-ha.deb > /dev/null
        rm -f "$work/tmp/mmp-ha.deb"
        return 0
    fi
    local b a
    for b in mmp-tool lockd-recover mmpd lock-torture; do
        [[ -x $bindir/$b ]] && install -m 0755 "$bindir/$b" "$work/usr/sbin/$b"
    done
    a=$work/usr/lib/ocf/resource.d/mmp-ha
    mkdir -p "$a"
    ln -sf /usr/sbin/mmp-tool "$a/mmp-fs"
    ln -sf /usr/sbin/lockd-recover "$a/nfs-grace"
    ln -sf /usr/sbin/lockd-recover "$a/nfs-locks"
}

# Boot as the lab needs: the agent unit, nothing started that the test starts itself
# (corosync, Pacemaker, sbd and the NFS server are the cluster's to start), no gettys or timers.
configure_units() {
    install -m 0755 "$here/guest/lab-boot" "$work/usr/local/sbin/lab-boot"
    install -m 0755 "$here/guest/fence_lab" "$work/usr/sbin/fence_lab"
    ln -sf fence_lab "$work/usr/sbin/fence_sbd"
    cat > "$work/etc/systemd/system/lab-agent.service" << 'EOU'
[Unit]
Description=failover lab agent (runs the commands the host drops into /run/lab)
After=local-fs.target systemd-modules-load.service
[Service]
ExecStart=/usr/local/sbin/lab-boot
KillMode=process
[Install]
WantedBy=multi-user.target
EOU
    local u
    chroot "$work" systemctl enable lab-agent.service > /dev/null 2>&1
    for u in corosync pacemaker sbd nfs-server nfs-kernel-server logd e2scrub_reap \
        apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
        fstrim.timer nfs-blkmap; do
        chroot "$work" systemctl disable "$u" > /dev/null 2>&1 || true
    done
    for u in getty@tty1 serial-getty@ttyS0 systemd-timesyncd; do
        chroot "$work" systemctl mask "$u" > /dev/null 2>&1 || true
    done
    # README's step for the stock nfsserver with nfsdcld (Debian 12): nfsserver's stop stops
    # nfs-server.service but not nfsdcld, which keeps its database open under the shared
    # infodir, so the unbind of /var/lib/nfs failed ("target is busy") and Pacemaker fenced the
    # node in every planned move. PartOf makes nfsdcld stop with nfs-server.
    mkdir -p "$work/etc/systemd/system/nfsdcld.service.d"
    printf '[Unit]\nPartOf=nfs-server.service\n' > "$work/etc/systemd/system/nfsdcld.service.d/ha.conf"
    echo "LABEL=labroot / ext4 defaults,noatime 0 0" > "$work/etc/fstab"
    echo labguest > "$work/etc/hostname"
    # corosync and Pacemaker log to the journal only; keep it in memory, and copy it to the
    # serial console (vm/NODE/console.log on the host), which outlives a fenced VM.
    mkdir -p "$work/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\nForwardToConsole=yes\nTTYPath=/dev/ttyS0\nMaxLevelConsole=info\n' \
        > "$work/etc/systemd/journald.conf.d/lab.conf"
}

fetch_root
copy_modules
install_tools
configure_units
size=$(($(du -sm "$work" | cut -f1) * 13 / 10 + 256))
rm -f "$out"
mkfs.ext4 -q -F -L labroot -d "$work" "$out" "${size}M"
rm -rf "$work"
log "root image $out (${size} MiB)"
