#!/bin/bash
# Sourced by node.sh and volumes.sh in the servers: the shared virtio disks by their serial.

# disk_by_serial SERIAL: the /dev/vdX whose /sys/block/vdX/serial is SERIAL (lab.sh sets the
# serials on qemu's command line); fails if none.
disk_by_serial() {
    local s
    for s in /sys/block/vd*/serial; do
        [[ -r $s && $(cat "$s") == "$1" ]] && { s=${s%/serial}; echo "/dev/${s##*/}"; return 0; }
    done
    return 1
}
