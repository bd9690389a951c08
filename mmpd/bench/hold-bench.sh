#!/usr/bin/env bash
# mmpd hold benchmark (root). Results go in BENCHMARKS.md, section mmpd.
#
# Part 1, holding cost: mmpd holding 1, 100 and 1,000 devices (small image files, $COUNTS) and
# 100 loop devices ($LOOP_COUNTS: O_DIRECT, as on real block devices) at a 1 s interval. After
# READY: CPU % of one core (utime+stime from /proc/PID/stat over $SAMPLE s), split into the
# main thread and the device threads (precise, from /proc/PID/task/*/schedstat), the CPU of all
# kworker threads meanwhile (system-wide: syncfs's write-back runs there), VmRSS, VmHWM,
# threads ("other threads": the I/O pool, or one thread per device before the pool). Side by side, the kernel holding the same filesystems mounted through loop devices
# ($KERNEL_COUNTS; its kmmpd kthreads, schedstat). The run directory (lock and state files) is a
# tmpfs, as /run is on a real host (RUN_FS=disk puts it on the disk filesystem of the tmpdir).
#
# Part 2, failover time: from a holder's death to the next node's successful mount, host A
# through loop device A, host B through loop device B of one image:
#   ours:   mmpd holds through A, kill -9, then `mmp-tool mount` through B
#   kernel: the kernel holds through A and "dies": we save the MMP block as kmmpd last wrote
#           it, unmount (which writes CLEAN) and put the saved block back, i.e. the block a
#           crashed kmmpd leaves (you cannot kill a kernel mount); then `mount` through B
#   and the two crossed cases (mmpd dies -> kernel mount, kernel dies -> mmp-tool mount).
#
# Part 3 (PARTS=fenced), the fence-confirmed takeover side by side with the rest, in one run:
#   the kernel's dirty mount, `mmp-tool mount` (kmmpd holder, mmpd holder), `mmp-tool mount
#   --fenced NODE` (both holders; NODE is the name the dead holder wrote: the host name for
#   kmmpd, host-a for mmpd), and mmpd B `--fenced host-a` taking over from mmpd A (death to
#   mmpd B's READY); with $MMPD_TESTING built, also mmpd-wd (the watchdog tag) both ways.
#
# Usage: sudo mmpd/bench/hold-bench.sh            (from the workspace root)
#   COUNTS="1 100 1000" LOOP_COUNTS=100 KERNEL_COUNTS="1 100" SAMPLE=30 ROUNDS=1
#   PARTS="hold failover fenced" RUN_FS=tmpfs|disk NAME=mmpd (the holder's name in the rows, e.g. to
#   compare two builds: NAME=mmpd-before MMPD=/path/to/old/mmpd)
#   MMPD=... TOOL=... (default: $CARGO_TARGET_DIR or target, release/{mmpd,mmp-tool}; build with
#   `cargo build --release -p mmpd -p mmp-tool`)
#   MMPD_TESTING=... (the failover case "mmpd-wd": a release build with the test watchdog, which
#   the shipped mmpd does not have; default $TARGET/testing/release/mmpd, build with
#   `cargo build --release -p mmpd --features testing --target-dir target/testing`)
# Needs: e2fsprogs, util-linux (losetup, mount), jq. Everything it makes lives in a tmpdir and is
# removed at exit (processes killed by pid, mounts unmounted, its own loop devices detached).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MMPD=${MMPD:-$TARGET/release/mmpd}
MMPD_TESTING=${MMPD_TESTING:-$TARGET/testing/release/mmpd}
TOOL=${TOOL:-$TARGET/release/mmp-tool}
COUNTS=${COUNTS-"1 100 1000"}
LOOP_COUNTS=${LOOP_COUNTS-"100"}
KERNEL_COUNTS=${KERNEL_COUNTS-"1 100"}
SAMPLE=${SAMPLE:-30}
ROUNDS=${ROUNDS:-1}
PARTS=${PARTS:-"hold failover"}
NAME=${NAME:-mmpd}
HZ=$(getconf CLK_TCK)

[ "$(id -u)" = 0 ] || { echo "hold-bench: needs root (loop devices, mount)" >&2; exit 2; }
for t in "$MMPD" "$TOOL"; do
    [ -x "$t" ] || { echo "hold-bench: $t not built (cargo build --release -p mmpd -p mmp-tool)" >&2; exit 2; }
done
for c in mkfs.ext4 losetup mount jq; do
    command -v "$c" >/dev/null || { echo "hold-bench: $c not installed" >&2; exit 2; }
done

T=$(mktemp -d /tmp/hold-bench.XXXXXX)
PIDS=()
LOOPS=()
MOUNTS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && umount "$m"; done
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# utime + stime of a process (all its threads), in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# Loop devices attached in $(...) subshells are added to LOOPS by the caller.
attach() { losetup -f --show "$1"; }
# Forget what is gone, so the cleanup never touches a loop device or pid someone else reuses.
detach() {
    losetup -d "$1"
    local x keep=()
    for x in "${LOOPS[@]}"; do [ "$x" = "$1" ] || keep+=("$x"); done
    LOOPS=("${keep[@]}")
}
reap() { # pid: wait for it (its exit code in REAPED), then forget it
    local x keep=()
    REAPED=0
    wait "$1" 2>/dev/null || REAPED=$?
    for x in "${PIDS[@]}"; do [ "$x" = "$1" ] || keep+=("$x"); done
    PIDS=("${keep[@]}")
}
wait_log() { # file needle seconds
    local end=$((SECONDS + $3))
    while ! grep -q "$2" "$1"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.05
    done
}
seq_of() { "$TOOL" dump --json "$1" | jq -r .sequence; }

echo "# hold-bench $(date -u +%FT%TZ) kernel $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# mmpd: $MMPD"
echo "# e2fsprogs: $(dpkg-query -W -f='${Version}' e2fsprogs 2>/dev/null || echo '?')"

# One small image with MMP (4 MiB, no journal: only the MMP block matters), copied sparsely.
BASE=$T/base.img
truncate -s 4M "$BASE"
mkfs.ext4 -q -F -O mmp,^has_journal -E mmp_update_interval=1 "$BASE"
images() { # n dir: make n copies in dir, print their paths
    mkdir -p "$2"
    for i in $(seq -w 1 "$1"); do
        cp --sparse=always "$BASE" "$2/d$i.img"
        echo "$2/d$i.img"
    done
}

# Precise CPU time (ns) of tasks: the first field of /proc/PID/task/TID/schedstat.
sched_ns() { # files...
    awk '{ s += $1 } END { printf "%d", s }' "$@"
}
# CPU time (ns) of every kworker thread, "pid ns" per line: the writeback that syncfs(2) hands
# to the flusher runs there (fdatasync does it in the caller), so it is counted beside mmpd's
# own time. System-wide: it includes whatever else the machine writes back meanwhile.
kworkers() {
    local p
    for p in $(pgrep kworker); do
        [ -r "/proc/$p/schedstat" ] && echo "$p $(cut -d' ' -f1 "/proc/$p/schedstat" 2>/dev/null || echo 0)"
    done
}
kw_pct() { # file0 file1 seconds: kworker CPU % of one core between two snapshots (new threads count whole)
    awk -v s="$3" 'NR == FNR { a[$1] = $2; next } { d += $2 - ($1 in a ? a[$1] : 0) } END { printf "%.2f", d / 1e9 / s * 100 }' "$1" "$2"
}
pct() { # ns0 ns1 seconds
    awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN { printf "%.2f", (b - a) / 1e9 / s * 100 }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# The run directory (lock and state files): on a tmpfs, as /run is on a real host, unless
# RUN_FS=disk (then on the disk filesystem of $T).
RUN_FS=${RUN_FS:-tmpfs}
RUNROOT=$T/run
mkdir -p "$RUNROOT"
if [ "$RUN_FS" = tmpfs ]; then
    mount -t tmpfs -o size=64m,mode=0755 hold-bench-run "$RUNROOT"
    MOUNTS+=("$RUNROOT")
fi

hold_ours() { # n mode(files|loops)
    local n=$1 mode=$2 dir=$T/ours-$1-$2 log=$T/mmpd-$1-$2.log pid t0 t1 c0 c1 m0 m1 w0 w1 s0 s1 ready rel code
    local devs=() l
    mapfile -t imgs < <(images "$n" "$dir")
    if [ "$mode" = loops ]; then
        for i in "${imgs[@]}"; do
            l=$(attach "$i")
            LOOPS+=("$l")
            devs+=("$l")
        done
    else
        devs=("${imgs[@]}")
    fi
    : >"$log"
    t0=$(now)
    "$MMPD" --run-dir "$RUNROOT/ours-$n-$mode" --node-name bench --interval 1 "${devs[@]}" 2>"$log" &
    pid=$!
    PIDS+=("$pid")
    if ! wait_log "$log" "ready:" 300; then
        echo "| $n $mode | mmpd | not ready after 300 s: $(grep -c ERROR "$log") errors, e.g. $(grep -m1 ERROR "$log" | cut -c1-160) |"
        { kill -9 "$pid"; reap "$pid"; } 2>/dev/null
        return
    fi
    ready=$(since "$t0")
    sleep 2
    s0=$(seq_of "${devs[0]}")
    c0=$(ticks "$pid")
    m0=$(sched_ns "/proc/$pid/task/$pid/schedstat")
    w0=$(sched_ns /proc/"$pid"/task/*/schedstat)
    kworkers >"$T/kw0"
    t1=$(now)
    sleep "$SAMPLE"
    c1=$(ticks "$pid")
    m1=$(sched_ns "/proc/$pid/task/$pid/schedstat")
    w1=$(sched_ns /proc/"$pid"/task/*/schedstat)
    kworkers >"$T/kw1"
    s1=$(seq_of "${devs[0]}")
    local secs cpu rss hwm thr writes fenced warn
    secs=$(since "$t1")
    cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) / hz / s * 100 }')
    rss=$(status_kib "$pid" VmRSS)
    hwm=$(status_kib "$pid" VmHWM)
    thr=$(status_kib "$pid" Threads)
    writes=$(awk -v a="$s0" -v b="$s1" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) / s }')
    fenced=$(grep -c "FENCING" "$log" || true)
    warn=$(grep -c "heartbeat failed" "$log" || true)
    local r0
    r0=$(now)
    kill -TERM "$pid"
    reap "$pid"
    code=$REAPED
    rel=$(since "$r0")
    printf '| %s | %s, %s | %s s | **%s %%** | %s %% | %s %% | %s %% | **%s MiB** | %s MiB | %s | %s/s | %s | %s | %s s, exit %s |\n' \
        "$n" "$NAME" "$([ "$mode" = loops ] && echo "loop devices (O_DIRECT)" || echo "image files")" "$ready" "$cpu" \
        "$(pct "$m0" "$m1" "$secs")" "$(pct "$((w0 - m0))" "$((w1 - m1))" "$secs")" "$(kw_pct "$T/kw0" "$T/kw1" "$secs")" \
        "$(mib "$rss")" "$(mib "$hwm")" "$thr" "$writes" "$fenced" "$warn" "$rel" "$code"
    if [ "$mode" = loops ]; then
        for l in "${devs[@]}"; do detach "$l"; done
    fi
    rm -rf "$dir"
}

hold_kernel() { # n: the kernel holds n of the same filesystems, mounted through loop devices
    local n=$1 dir=$T/kern-$1 i l m t0 t1 k0 k1 s0 s1 secs
    mapfile -t imgs < <(images "$n" "$dir")
    local loops=() mnts=() ks=()
    t0=$(now)
    for i in "${!imgs[@]}"; do
        l=$(attach "${imgs[$i]}")
        LOOPS+=("$l")
        m=$dir/m$i
        mkdir -p "$m"
        mount -t ext4 -o noatime "$l" "$m"
        MOUNTS+=("$m")
        loops+=("$l")
        mnts+=("$m")
    done
    local ready
    ready=$(since "$t0")
    sleep 2
    for l in "${loops[@]}"; do
        ks+=("/proc/$(pgrep -x "kmmpd-${l#/dev/}")/schedstat")
    done
    s0=$(seq_of "${loops[0]}")
    k0=$(sched_ns "${ks[@]}")
    t1=$(now)
    sleep "$SAMPLE"
    k1=$(sched_ns "${ks[@]}")
    s1=$(seq_of "${loops[0]}")
    secs=$(since "$t1")
    local writes r0 rel
    writes=$(awk -v a="$s0" -v b="$s1" -v s="$secs" 'BEGIN { printf "%.2f", (b - a) / s }')
    r0=$(now)
    for m in "${mnts[@]}"; do umount "$m"; done
    rel=$(since "$r0")
    for l in "${loops[@]}"; do detach "$l"; done
    printf '| %s | kernel kmmpd, loop devices | %s s (mount) | — | — | %s %% (kmmpd kthreads) | — | — | — | %s kthreads | %s/s | — | — | %s s (umount) |\n' \
        "$n" "$ready" "$(pct "$k0" "$k1" "$secs")" "${#ks[@]}" "$writes" "$rel"
    rm -rf "$dir"
}

if [[ " $PARTS " == *" hold "* ]]; then
    echo
    echo "## Holding N devices, interval 1 s, CPU over ${SAMPLE} s after READY, run dir on $RUN_FS"
    echo
    echo "| devices | holder | claim to READY | CPU, one core (stat utime+stime) | main thread (schedstat) | other threads (schedstat) | kworkers, system-wide (schedstat) | VmRSS | VmHWM | threads | writes/s (one device) | FENCING | heartbeat failed | release |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $COUNTS; do hold_ours "$n" files; done
    for n in $LOOP_COUNTS; do hold_ours "$n" loops; done
    for n in $KERNEL_COUNTS; do hold_kernel "$n"; done
fi

# ---------------------------------------------------------------------------------------------
# Part 2: failover after a holder's death.
IMG=$T/shared.img
MNT=$T/mnt
mkdir -p "$MNT"
MOUNTS+=("$MNT")

fresh_image() {
    truncate -s 0 "$IMG"
    truncate -s 64M "$IMG"
    mkfs.ext4 -q -F -O mmp -E mmp_update_interval=1 "$IMG"
}

mmp_offset() { "$TOOL" dump --json "$IMG" | jq -r '.block_number * .block_size'; }
mmp_bsize() { "$TOOL" dump --json "$IMG" | jq -r .block_size; }

# Holder A, then its death: sets TD (epoch seconds of the death). With "wd", mmpd runs with
# the watchdog fence (--fail-intervals 2 --watchdog-timeout 3) and publishes its self-fence
# bound (6 s) in the block; the watchdog is a plain file here (MMPD_TEST_FAKE_WATCHDOG=1, which
# only a build with the `testing` feature honours: $MMPD_TESTING), i.e. the kill -9 stands for
# the reset the watchdog would cause.
die_mmpd() { # devA [wd]
    local log=$T/a.log pid args=() mmpd=$MMPD
    : >"$log"
    if [ "${2:-}" = wd ]; then
        : >"$T/watchdog"
        args=(--fence watchdog --watchdog-device "$T/watchdog" --watchdog-timeout 3 --fail-intervals 2)
        mmpd=$MMPD_TESTING
        [ -x "$mmpd" ] || { echo "hold-bench: $mmpd not built (cargo build --release -p mmpd --features testing --target-dir target/testing)" >&2; exit 2; }
    fi
    MMPD_TEST_FAKE_WATCHDOG=1 "$mmpd" --run-dir "$T/run-a" --node-name host-a "${args[@]}" "$1" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_log "$log" "ready:" 60 || { echo "mmpd A not ready: $(tail -n3 "$log")" >&2; exit 1; }
    sleep 3
    # (stderr off: bash's "Killed" job notice)
    {
        kill -9 "$pid"
        TD=$(now)
        reap "$pid"
    } 2>/dev/null
}

die_kernel() { # devA
    local off bs
    off=$(mmp_offset)
    bs=$(mmp_bsize)
    mount -t ext4 "$1" "$MNT"
    sleep 3
    # The block as kmmpd wrote it last (through A, O_DIRECT), then a clean unmount, then the
    # saved block back: what a crashed kmmpd leaves behind.
    dd if="$1" of="$T/kmmpd.blk" bs="$bs" skip=$((off / bs)) count=1 iflag=direct status=none
    umount "$MNT"
    dd if="$T/kmmpd.blk" of="$1" bs="$bs" seek=$((off / bs)) count=1 oflag=direct,sync conv=notrunc status=none
    TD=$(now)
}

# Mount through B (with --fenced NODE when given): sets TOOK (seconds since TD) and DETAIL.
mount_ours() { # devB [fenced-node]
    local out code=0 fenced=()
    [ -n "${2:-}" ] && fenced=(--fenced "$2")
    out=$("$TOOL" mount --json --node-name host-b --run-dir "$T/run-b" "${fenced[@]}" "$1" "$MNT" 2>"$T/mount.err") || code=$?
    TOOK=$(since "$TD")
    DETAIL="exit $code, $(jq -r '"result \(.result), path \(.claim_path)\(if .fenced_watch_seconds then " (watch \(.fenced_watch_seconds) s)" else "" end), claim \(.claim_seconds * 100 | round / 100) s, CLEAN-to-mount(8) window \(.handoff_window_ms * 1000 | round / 1000) ms, mount(8) \(.mount_seconds * 100 | round / 100) s"' <<<"$out")"
    mountpoint -q "$MNT" && umount "$MNT"
}

# mmpd B takes over with --fenced host-a: sets TOOK (death to READY) and DETAIL.
mmpd_fenced() { # devB
    local log=$T/b.log pid
    : >"$log"
    "$MMPD" --run-dir "$T/run-b" --node-name host-b --fenced host-a "$1" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_log "$log" "ready:" 60 || { echo "mmpd B not ready: $(tail -n3 "$log")" >&2; exit 1; }
    TOOK=$(since "$TD")
    DETAIL="$(grep -o 'path="[a-z]*" watch_s=[0-9.]*' "$log" | head -n1)"
    kill "$pid"
    reap "$pid"
}

mount_kernel() { # devB
    local code=0
    mount -t ext4 "$1" "$MNT" 2>"$T/mount.err" || code=$?
    TOOK=$(since "$TD")
    DETAIL="exit $code $(head -c 120 "$T/mount.err")"
    mountpoint -q "$MNT" && umount "$MNT"
}

failover() { # holder(mmpd|mmpd-wd|kernel) mounter(ours|kernel)
    local a b blk
    fresh_image
    a=$(attach "$IMG")
    b=$(attach "$IMG")
    LOOPS+=("$a" "$b")
    case $1 in
    mmpd) die_mmpd "$a" ;;
    mmpd-wd) die_mmpd "$a" wd ;;
    *) die_kernel "$a" ;;
    esac
    blk=$("$TOOL" dump --json "$b" | jq -r '"\(.sequence_hex), node \(.node_name), CI \(.check_interval)"')
    if "$TOOL" check --json --timeout 0.1 "$b" 2>/dev/null | jq -e '.fence_tag != null' >/dev/null; then
        blk="$blk, fence tag"
    fi
    local dead=host-a how
    [ "$1" = kernel ] && dead=$(uname -n)
    case $2 in
    ours) mount_ours "$b"; how='mmp-tool mount' ;;
    ours-fenced) mount_ours "$b" "$dead"; how="mmp-tool mount --fenced $dead" ;;
    mmpd-fenced) mmpd_fenced "$b"; how="mmpd --fenced $dead (to READY)" ;;
    *) mount_kernel "$b"; how='mount -t ext4' ;;
    esac
    printf '| %s dies (left %s) | %s | **%s s** | %s |\n' "$1" "$blk" "$how" "$TOOK" "$DETAIL"
    detach "$a"
    detach "$b"
}

if [[ " $PARTS " == *" failover "* ]]; then
    echo
    echo "## Failover: holder through loop A dies, next node mounts through loop B"
    echo
    echo "| holder | next node runs | death to mounted | details |"
    echo "|---|---|---:|---|"
    for _ in $(seq "$ROUNDS"); do
        failover mmpd ours
        failover mmpd-wd ours
        failover kernel kernel
        failover mmpd kernel
        failover mmpd-wd kernel
        failover kernel ours
    done
fi

if [[ " $PARTS " == *" fenced "* ]]; then
    echo
    echo "## Fence-confirmed takeover: holder through loop A dies, next node through loop B"
    echo
    echo "| holder | next node runs | death to mounted (mmpd: to READY) | details |"
    echo "|---|---|---:|---|"
    for _ in $(seq "$ROUNDS"); do
        failover kernel kernel
        failover kernel ours
        failover kernel ours-fenced
        failover mmpd ours
        failover mmpd ours-fenced
        failover mmpd mmpd-fenced
        if [ -x "$MMPD_TESTING" ]; then
            failover mmpd-wd ours
            failover mmpd-wd ours-fenced
        fi
    done
fi
