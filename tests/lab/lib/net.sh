#!/bin/bash
# The lab's network (sourced by lab.sh): namespace $NS with bridge br0 and one tap per VM, no
# uplink, addresses only in 198.18.0.0/24: no packet leaves the machine. Names resolve from the
# lab's own hosts file (no name server).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

net_setup() {
    ip netns add "$NS" || return 1
    ip -n "$NS" link set lo up
    ip -n "$NS" link add br0 type bridge
    ip -n "$NS" link set br0 up
    local n
    for n in a b c d; do
        ip -n "$NS" tuntap add "tap$n" mode tap || return 1
        ip -n "$NS" link set "tap$n" master br0 up
    done
}

# Deleting the namespace deletes its bridge and taps.
net_teardown() {
    if [[ -n $NS ]] && ip netns list | grep -qw "$NS"; then
        ip netns delete "$NS"
    fi
}

# $LAB/hosts: every VM and the floating IP (nfs-ha); each VM bind-mounts it on /etc/hosts.
write_hosts_file() {
    local n
    {
        echo "127.0.0.1 localhost"
        for n in a b c d; do echo "${VM_IP[$n]} ${VM_HOST[$n]}"; done
        echo "$FIP nfs-ha"
    } > "$LAB/hosts"
}

# Arguments of qemu for NODE's network card: its tap in the namespace.
net_qemu_args() {
    local n=$1
    VM_ARGS+=(-netdev "tap,id=n0,ifname=tap$n,script=no,downscript=no"
        -device "virtio-net-pci,netdev=n0,mac=${VM_MAC[$n]}")
}

# net_partition_servers on|off: cut the servers A and B off from each other, not from the
# clients: their bridge ports become "isolated" (an isolated port forwards only to ports that
# are not isolated), so corosync loses its peer while C and D still reach both servers.
net_partition_servers() {
    bridge -n "$NS" link set dev tapa isolated "$1" &&
        bridge -n "$NS" link set dev tapb isolated "$1"
}
