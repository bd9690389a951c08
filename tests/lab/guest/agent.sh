#!/bin/bash
# The lab VM's agent, run by guest/init inside the host's read-only root (chroot over 9p).
# It sets the node up (hostname, network, clock from the host, writable /etc files), then runs
# every command file the host drops into /run/lab/cmd/NAME.sh, in the background, writing
# /run/lab/out/NAME.out (stdout+stderr) and, when it ends, /run/lab/out/NAME.rc (exit status).
# /run/lab is the VM's control directory on the host (9p, read-write).
set -u
. /run/lab/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LAB_NAME LAB_IP LAB_BIN
C=/run/lab

# The guest's clock from the host: the mtime that the host gives a file we just wrote.
sync_clock() {
    : > $C/.clock
    local t
    t=$(stat -c '%.9Y' $C/.clock) && date -s "@$t" > /dev/null
}
sync_clock

hostname "$LAB_NAME"
ip link set lo up
ip link set eth0 up
ip addr add "$LAB_IP/$LAB_PREFIX" dev eth0
# /etc is the host's (read-only): give the lab its own hosts file.
cp $C/hosts /run/hosts && mount --bind /run/hosts /etc/hosts
# No name server: every lookup is answered from the lab's hosts file (nothing leaves the lab).
echo "options attempts:1 timeout:1" > /run/resolv.conf && mount --bind /run/resolv.conf /etc/resolv.conf
mkdir -p /run/rpcbind /run/sendsigs.omit.d /var/lib/nfs/sm /var/lib/nfs/sm.bak /var/lib/nfs/v4recovery
: > /var/lib/nfs/etab; : > /var/lib/nfs/rmtab
mkdir -p $C/cmd $C/out
echo "agent: $LAB_NAME up at $(date +%s.%N), kernel $(uname -r)" > /dev/console
echo "$(date +%s.%N)" > $C/out/.ready.tmp && mv $C/out/.ready.tmp $C/out/ready

declare -A seen
# Poll without forking (a sleep(1) per tick costs a lot under TCG): read on a private fifo
# that nobody writes times out after 0.1 s.
mkfifo /run/agent.tick
exec 3<> /run/agent.tick
while :; do
    for f in $C/cmd/*.sh; do
        [[ -e $f ]] || continue
        n=$(basename "$f" .sh)
        [[ -n ${seen[$n]:-} ]] && continue
        seen[$n]=1
        (
            date +%s.%N > $C/out/$n.start
            bash "$f" > $C/out/$n.out 2>&1 < /dev/null
            echo $? > $C/out/.$n.rc && mv $C/out/.$n.rc $C/out/$n.rc
        ) &
    done
    read -r -t 0.1 -u 3 _
done
