#!/usr/bin/env bash
# Install what building and testing need on a fresh Debian machine (idempotent: installs only
# what is missing). Needs root for apt-get; the Rust toolchain (cargo) must already be present.
set -euo pipefail

packages=(
  # building: blkid crate (bindgen needs libclang), C shims built by tests
  libblkid-dev pkg-config libclang-dev clang gcc
  # reference implementation and loop devices
  e2fsprogs util-linux mount kmod procps bsdutils
  # mmpd unit file check (systemd-analyze verify)
  systemd
  # NSM peers (rpcbind, rpc.statd, sm-notify) and network namespaces
  rpcbind nfs-common iproute2
  # failover lab (tests/lab): VMs with the Debian kernel, kernel NFS server, tickle ACKs
  qemu-system-x86 linux-image-amd64 busybox-static nfs-kernel-server cpio gzip binutils jq perl bc
  resource-agents
  # OCF agents: ocf-tester (resource-agents) validates meta-data with xmllint; crm_resource
  # runs agents without a cluster; the .deb is built with dpkg-deb and installed in a
  # debootstrapped Debian 12 chroot
  libxml2-utils pacemaker-cli-utils dpkg-dev debootstrap
  # mmp-fs fast_takeover reads a real Pacemaker's fencing history: a one-node corosync +
  # Pacemaker cluster in its own namespaces (test_support::pacemaker)
  corosync pacemaker
  # mmp-fs holder=mmpd tests mount an xfs filesystem guarded by an MMP area
  xfsprogs
  # mmp-fs force_unmount kills a mount's users with fuser
  psmisc
  # lockd-recover reads nfsdcld's sqlite tracker (rusqlite links the system libsqlite3); its
  # tests create real databases with nfsdcld (nfs-kernel-server, above)
  libsqlite3-dev
  # benchmarks
  hyperfine
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run it as root (or with sudo): bash $0" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start services on the build machine (rpcbind, nfs-common).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The self-fence regressions (mmpd/tests/self_fence.rs) serve a disk through FUSE (/dev/fuse).
if [[ ! -e /dev/fuse && $(id -u) -eq 0 ]]; then
  modprobe fuse 2>/dev/null || echo "setup: no /dev/fuse and modprobe fuse failed" >&2
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup)" >&2; exit 1; }
echo "setup: ok"
