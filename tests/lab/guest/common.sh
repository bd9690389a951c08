#!/bin/bash
# Sourced by node.sh and volumes.sh in the servers: what both need (the shared disks by their
# serial, and the tickle ACKs' connection list).

# disk_by_serial SERIAL: the /dev/vdX whose /sys/block/vdX/serial is SERIAL (lab.sh sets the
# serials on qemu's command line); fails if none.
disk_by_serial() {
    local s
    for s in /sys/block/vd*/serial; do
        [[ -r $s && $(cat "$s") == "$1" ]] && { s=${s%/serial}; echo "/dev/${s##*/}"; return 0; }
    done
    return 1
}

TICKLE_TCP=/usr/libexec/heartbeat/tickle_tcp

# conn_record_loop IP DIR: while active, the established TCP connections on the floating IP,
# every second, into DIR/IP on the shared disk (fsynced, renamed into place: like the portblock
# RA's tickle_dir), so the next server can tickle them after a crash.
conn_record_loop() {
    local ip=$1 dir=$2
    mkdir -p "$dir"
    while :; do
        ss -Htn state established src "$ip" | awk '{ print $3 "\t" $4 }' |
            dd of="$dir/.$ip.new" conv=fsync status=none &&
            mv "$dir/.$ip.new" "$dir/$ip"
        sleep 1
    done
}

# tickle_from FILE: tickle ACKs (resource-agents' tickle_tcp) to the connections the old server
# recorded in FILE; prints how many. Fails when there is nothing to tickle (no list, LAB_TICKLE=0,
# no tickle_tcp).
tickle_from() {
    [[ ${LAB_TICKLE:-1} == 1 && -s $1 && -x $TICKLE_TCP ]] || return 1
    "$TICKLE_TCP" -n 3 < "$1" > /dev/null 2>&1
    wc -l < "$1"
}
