#!/bin/bash
# The lab's VMs (sourced by lab.sh): qemu TCG guests, the command channel to their agent, the
# human monitor (mmpd holder), and the guest kind.
#
# Each VM's directory $LAB/vm/NODE is shared read-write as /run/lab: the host drops cmd/NAME.sh,
# the guest's agent (guest/agent.sh) runs it and writes out/NAME.out and out/NAME.rc.
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

# qemu's options are comma lists: the commas inside array elements are meant.
# shellcheck disable=SC2054

# --- guest kinds ----------------------------------------------------------------------------
# What a VM boots and how its services start depend on the guest kind: LAB_GUEST for the servers
# (A, B), busybox for the clients (C, D). A kind K provides three functions, called through
# `guest OP NODE ARGS...` (or `guest_each OP` for every kind the lab uses):
#   guest_K_check           preflight: appends the Debian packages it lacks to the caller's `missing`
#   guest_K_prepare         makes what its VMs boot from, once per run, under $LAB
#   guest_K_qemu_args NODE  appends to VM_ARGS the kernel, initrd, command line and root of NODE
# and its VMs must start guest/agent.sh (LAB_AGENT in /run/lab/env) once /run/lab is mounted:
# guest/node.sh starts the node's services itself and reads LAB_GUEST from the same env file.
#
# busybox: a busybox initramfs (lib/mkinitramfs.sh, guest/init) mounts the host's root read-only
# over 9p, with tmpfs where the services write, and execs the agent in it; node.sh starts
# rpcbind, rpc.statd, nfsd... by hand (there is no init system).
# systemd (--manager pacemaker): a debootstrapped Debian 12 root (lib/mkroot.sh) with corosync,
# Pacemaker, resource-agents, sbd and our package, booted from a disk image opened with
# snapshot=on (each VM writes only its own overlay); lab-agent.service runs guest/lab-boot, which
# mounts the control directories and runs the agent.
LAB_GUEST=${LAB_GUEST:-busybox}

# The kind of NODE's VM.
guest_kind() {
    case $1 in
    a | b) echo "$LAB_GUEST" ;;
    *) echo busybox ;;
    esac
}

guest() {
    local op=$1 n=${2:-a}
    shift
    "guest_$(guest_kind "$n")_$op" "$@"
}

# guest_each OP: OP of every kind the lab's VMs use (check, prepare).
guest_each() {
    local k
    for k in $(printf '%s\n' busybox "$LAB_GUEST" | sort -u); do "guest_${k}_$1"; done
}

guest_kind_known() { declare -F "guest_${LAB_GUEST}_prepare" > /dev/null; }

guest_busybox_check() {
    [[ -x /bin/busybox ]] || missing+=(busybox-static)
}

guest_busybox_prepare() {
    bash "$here/lib/mkinitramfs.sh" "$KVER" "$LAB/initrd.gz"
}

# no_timer_check: under TCG on a loaded host the kernel's boot-time check of the timer interrupt
# can miss it and panic ("IO-APIC + timer doesn't work!"; seen with a host load of 28).
guest_busybox_qemu_args() {
    VM_ARGS+=(-kernel "/boot/vmlinuz-$KVER" -initrd "$LAB/initrd.gz"
        -append "console=ttyS0 panic=-1 loglevel=4 net.ifnames=0 no_timer_check"
        -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap)
}

guest_systemd_check() {
    command -v debootstrap > /dev/null || missing+=(debootstrap)
    [[ -r /boot/initrd.img-$KVER || -z $KVER ]] || missing+=(initramfs-tools)
}

guest_systemd_prepare() {
    local deb=${LAB_DEB:--}
    log "building the servers' Debian root (lib/mkroot.sh${LAB_ROOT_CACHE:+, cache $LAB_ROOT_CACHE})"
    bash "$here/lib/mkroot.sh" "$KVER" "$deb" "$LAB/share/bin" "$LAB/root.img"
}

# The root disk gets the last PCI slot, so the shared disk stays /dev/vda. The host's initramfs
# finds the root by its label.
guest_systemd_qemu_args() {
    VM_ARGS+=(-kernel "/boot/vmlinuz-$KVER" -initrd "/boot/initrd.img-$KVER"
        -append "console=ttyS0 root=LABEL=labroot rw panic=-1 loglevel=4 net.ifnames=0 no_timer_check systemd.show_status=0"
        -drive "file=$LAB/root.img,format=raw,if=none,id=root,snapshot=on"
        -device virtio-blk-pci,drive=root,addr=0x1e)
}

# --- lifecycle ------------------------------------------------------------------------------
vm_pid() { cat "$LAB/vm/$1/pid"; }

# NODE's memory (MiB): LAB_VM_MEM, but a systemd server runs Pacemaker and needs about 1 GiB.
vm_mem() {
    if [[ $(guest_kind "$1") == systemd ]]; then echo "${LAB_SERVER_MEM:-1024}"; else echo "$VM_MEM"; fi
}

# vm_start NODE: boot NODE's VM in the background (its previous directory kept as vm/NODE.bootN).
vm_start() {
    local n=$1 d=$LAB/vm/$1
    if [[ -d $d ]]; then
        local i=1
        while [[ -d $d.boot$i ]]; do i=$((i + 1)); done
        mv "$d" "$d.boot$i"
    fi
    mkdir -p "$d/cmd" "$d/out"
    vm_write_env "$n" > "$d/env"
    cp "$LAB/hosts" "$d/hosts"
    VM_ARGS=(-accel tcg,tb-size=128 -cpu max -m "$(vm_mem "$n")" -smp 1
        -nodefaults -no-user-config -display none -no-reboot -serial "file:$d/console.log")
    guest qemu_args "$n"
    VM_ARGS+=(-virtfs "local,path=$d,mount_tag=ctl,security_model=none"
        -virtfs "local,path=$LAB/share,mount_tag=labfiles,security_model=none,readonly=on")
    net_qemu_args "$n"
    vm_disk_args "$n"
    ip netns exec "$NS" qemu-system-x86_64 "${VM_ARGS[@]}" > "$d/qemu.log" 2>&1 &
    echo $! > "$d/pid"
}

# The VM's /run/lab/env: who it is and what the lab runs.
vm_write_env() {
    local n=$1
    cat << EOV
LAB_NAME=${VM_HOST[$n]}
LAB_IP=${VM_IP[$n]}
LAB_PREFIX=$NET_PREFIX
LAB_NET=$LAB_NET
LAB_FIP=$FIP
LAB_AGENT=/run/labfiles/guest/agent.sh
LAB_BIN=/run/labfiles/bin
LAB_TICKLE=${LAB_TICKLE:-1}
LAB_HOLDER=$HOLDER
LAB_MMPD_ARGS="$MMPD_ARGS"
LAB_GUEST=$LAB_GUEST
LAB_STOCK=${LAB_STOCK:-plain}
EOV
}

# The servers' shared disks: shared.img (and with the mmpd holder area.img, both found by
# serial in the guest). The human monitor (scenario 5, p4: `stop`/`cont`, `info blockstats`)
# with the mmpd holder or under Pacemaker. Under Pacemaker with sbd (PCMK_SBD=1) also the sbd
# disk (serial labsbd) and qemu's emulated i6300esb watchdog, which powers the VM off when it
# fires (qemu -no-reboot exits). The clients have none.
vm_disk_args() {
    local n=$1 d=$LAB/vm/$1 shared=virtio-blk-pci,drive=d0,share-rw=on
    [[ $n == a || $n == b ]] || return 0
    # The guest finds its disks by serial (/sys/block/vdX/serial).
    [[ $HOLDER == mmpd ]] && shared+=,serial=labshared
    VM_ARGS+=(-drive "file=$LAB/shared.img,format=raw,if=none,id=d0,cache=none,file.locking=off"
        -device "$shared")
    if [[ $HOLDER == mmpd || $MANAGER == pacemaker ]]; then
        # A human monitor on two fifos (mon.in/mon.out).
        rm -f "$d/mon.in" "$d/mon.out"
        mkfifo "$d/mon.in" "$d/mon.out"
        VM_ARGS+=(-chardev "pipe,id=mon0,path=$d/mon" -mon chardev=mon0,mode=readline)
    fi
    if [[ $HOLDER == mmpd ]]; then
        VM_ARGS+=(-drive "file=$LAB/area.img,format=raw,if=none,id=d1,cache=none,file.locking=off"
            -device virtio-blk-pci,drive=d1,share-rw=on,serial=labarea)
    fi
    if [[ $MANAGER == pacemaker && ${PCMK_SBD:-0} == 1 ]]; then
        VM_ARGS+=(-drive "file=$LAB/sbd.img,format=raw,if=none,id=d2,cache=none,file.locking=off"
            -device virtio-blk-pci,drive=d2,share-rw=on,serial=labsbd
            -device i6300esb -action watchdog=poweroff)
    fi
    # Scenario 10's 20 volumes (lib/volumes.sh), after these so that shared.img stays /dev/vda.
    vol_disk_args "$n"
}

vm_wait_ready() {
    local n=$1 limit=$2 d=$LAB/vm/$1 i
    for ((i = 0; i < limit * 5; i++)); do
        [[ -e $d/out/ready ]] && return 0
        if ! kill -0 "$(vm_pid "$n")" 2> /dev/null; then
            echo "lab: VM $n (qemu) exited during boot:" >&2
            tail -n 20 "$d/qemu.log" "$d/console.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "lab: VM $n not ready after $limit s; console:" >&2
    tail -30 "$d/console.log" >&2
    return 1
}

vm_kill() {
    local n=$1 p
    p=$(vm_pid "$n")
    kill -KILL "$p"
    wait "$p" 2> /dev/null
}

# A qemu killed by the fence server (a subshell: it cannot reap it) stays a zombie until lab.sh
# waits for it: not alive.
vm_alive() {
    local p st
    p=$(vm_pid "$1" 2> /dev/null) || return 1
    st=$(cut -d' ' -f3 "/proc/$p/stat" 2> /dev/null) || return 1
    [[ $st != Z ]]
}

# Every VM's qemu, by the pid recorded at its start (checked to be a qemu process first).
vm_kill_all() {
    local n p
    for n in a b c d; do
        [[ -n $LAB && -s $LAB/vm/$n/pid ]] || continue
        p=$(vm_pid "$n")
        if [[ -d /proc/$p && $(cat "/proc/$p/comm" 2> /dev/null) == qemu-system-x86* ]]; then
            kill -KILL "$p" 2> /dev/null
            wait "$p" 2> /dev/null
        fi
    done
}

# Reboot a (killed) server VM and prepare it as the standby.
vm_reboot_server() {
    local n=$1 t
    vm_alive "$n" && vm_kill "$n"
    vm_start "$n"
    vm_wait_ready "$n" 180 || return 1
    if [[ $MANAGER == pacemaker ]]; then
        # It rejoins the cluster as the standby (stickiness keeps the group where it is).
        vm_run "$n" 120 pcmk-start || return 1
        vm_run "$n" 180 pcmk-wait-online 170
        return
    fi
    t=$(vm_exec "$n" server-prep)
    vm_wait "$n" "$t" 120
}

# --- commands -------------------------------------------------------------------------------
# vm_exec NODE ARGS...: run guest/node.sh ARGS in the VM, in the background; prints the tag.
vm_exec() {
    local n=$1
    shift
    # A counter in a file: vm_exec runs in command substitutions (subshells).
    local seq tag
    seq=$(($(cat "$LAB/cmd-seq" 2> /dev/null || echo 0) + 1))
    echo "$seq" > "$LAB/cmd-seq"
    tag=$(printf '%04d-%s' "$seq" "$1")
    local d=$LAB/vm/$n/cmd
    printf 'exec bash /run/labfiles/guest/node.sh %s\n' "$*" > "$d/.$tag"
    mv "$d/.$tag" "$d/$tag.sh"
    echo "$tag"
}

# vm_wait NODE TAG TIMEOUT: wait for the command's exit status (printed output on failure).
vm_wait() {
    local n=$1 tag=$2 limit=$3 out=$LAB/vm/$1/out i rc
    for ((i = 0; i < limit * 10; i++)); do
        if [[ -e $out/$tag.rc ]]; then
            rc=$(cat "$out/$tag.rc")
            if [[ $rc -ne 0 ]]; then
                echo "lab: $n: $tag exited $rc:" >&2
                tail -25 "$out/$tag.out" >&2
            fi
            return "$rc"
        fi
        sleep 0.1
    done
    echo "lab: $n: $tag did not finish within $limit s; output so far:" >&2
    tail -25 "$out/$tag.out" >&2
    return 124
}

# vm_run NODE TIMEOUT ARGS...: vm_exec and vm_wait in one.
vm_run() {
    local n=$1 limit=$2 t
    shift 2
    t=$(vm_exec "$n" "$@")
    vm_wait "$n" "$t" "$limit"
}

vm_out() { cat "$LAB/vm/$1/out/$2.out"; }

# --- pause (scenario 5) ---------------------------------------------------------------------
# LAB_FREEZE=sigstop (default): SIGSTOP/SIGCONT of the qemu process; monitor: the human
# monitor's stop/cont, which also stops the guest's clocks (a hypervisor pause).
freeze_by_monitor() { [[ ${LAB_FREEZE:-sigstop} == monitor ]]; }

vm_pause() {
    if freeze_by_monitor; then
        echo stop 1<> "$LAB/vm/$1/mon.in"
    else
        kill -STOP "$(vm_pid "$1")"
    fi
}

vm_continue() {
    if freeze_by_monitor; then
        echo cont 1<> "$LAB/vm/$1/mon.in"
    else
        kill -CONT "$(vm_pid "$1")"
    fi
}

# vm_fail_disks NODE: NODE's shared disks fail (the mmpd holder's shared.img and area.img, d0
# and d1): the human monitor's `drive_del` detaches their host side, and from then on qemu
# completes every request of the guest to them with an I/O error, whatever the drives' rerror
# and werror say (qemu's hmp-commands.hx, drive_del), as a lost SAN path does. Only the
# servers with the human monitor (mmpd holder, Pacemaker) have one.
vm_fail_disks() {
    local d=$LAB/vm/$1 drive
    [[ -p $d/mon.in ]] || { echo "lab: ${VM_HOST[$1]} has no human monitor" >&2; return 1; }
    for drive in d0 d1; do echo "drive_del $drive" 1<> "$d/mon.in" || return 1; done
}

# mon_writes NODE: write requests the VM's qemu has completed on the shared disk (d0) so far,
# from the human monitor (mmpd holder or Pacemaker; empty if the VM does not answer).
mon_writes() {
    local d=$LAB/vm/$1
    # Fifos opened read-write (1<>) never block, even once qemu has exited (a plain > would).
    [[ -p $d/mon.in ]] || return 0
    timeout 0.2 cat "$d/mon.out" > /dev/null 2>&1
    echo "info blockstats" 1<> "$d/mon.in" || return 0
    timeout 0.5 cat "$d/mon.out" 2> /dev/null | tr -d '\r' | awk '/^d0:/ { f = 1 } f && /wr_operations=/ { sub(/.*wr_operations=/, ""); print $1 + 0; exit }'
}
