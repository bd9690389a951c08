#!/bin/bash
# lockd-recover notify vs nfs-utils sm-notify, side by side in one run, against the same real
# rpc.statd peer in a private network namespace (all of 127.0.0.0/8 answers there, so one
# rpcbind + one rpc.statd stand in for N distinct clients 127.9.a.b).
#
# usage (root): lockd-recover/bench/notify-bench.sh [N ...]     default N: 200 2000
# env: LOCKD_RECOVER=path to the binary (default: cargo build --release, then that binary)
#      SMN_TIMEOUT=seconds: stop sm-notify after that long and report a lower bound (ours runs
#      first, so its row is complete either way); ONLY_OURS=1: run only ours
#
# Each tool gets its own copy of the same N records (my_name without a dot, so both send one
# SM_NOTIFY per client) and no state file. Both must leave sm.bak/ empty (every client
# acknowledged) for the row to count. Prints a markdown table on stdout.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "needs root (network namespace)" >&2; exit 2; }
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(200 2000)
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${LOCKD_RECOVER:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-lockd-recover}
    (cd "$HERE" && cargo build --release -q -p lockd-recover)
    LOCKD_RECOVER=$CARGO_TARGET_DIR/release/lockd-recover
fi

NS=lrbench-$$
WORK=$(mktemp -d /tmp/lrbench.XXXXXX)
PIDS=()
cleanup() {
    for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; wait "${PIDS[i]}" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# Private mount namespace with its own /run: rpcbind's /run/rpcbind.sock must not collide with
# (or be reached by statd instead of) a host rpcbind.
ip netns exec "$NS" unshare -m --propagation private sh -c \
    'mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && exec sleep 3600' &
HOLDER=$!; PIDS+=("$HOLDER")
for _ in $(seq 100); do [ "$(cat /proc/$HOLDER/comm 2>/dev/null)" = sleep ] && break; sleep 0.05; done
in_ns() { nsenter -t "$HOLDER" -m -n -- "$@"; }

# Started with nsenter directly (it execs the daemon), not through the in_ns function: a
# function in the background runs in a subshell, and $! would be that subshell, not the daemon.
nsenter -t "$HOLDER" -m -n -- rpcbind -f -w >"$WORK/rpcbind.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do in_ns rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done
mkdir -p "$WORK/peer/sm" "$WORK/peer/sm.bak"
nsenter -t "$HOLDER" -m -n -- rpc.statd -F -L -P "$WORK/peer" >"$WORK/statd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do in_ns rpcinfo -p 127.0.0.1 2>/dev/null | grep -q status && break; sleep 0.05; done

make_dir() { # DIR N
    mkdir -p "$1/sm" "$1/sm.bak"
    local i ip
    for ((i=0; i<$2; i++)); do
        ip="127.9.$((i / 250)).$((i % 250 + 1))"
        printf '0100007f 000186b5 00000003 00000010 %032x %s benchsrv\n' "$i" "$ip" >"$1/sm/$ip"
    done
}
now() { date +%s.%N; }
left() { find "$1/sm" "$1/sm.bak" -type f | wc -l; }

[ -n "${ONLY_OURS:-}" ] && echo "(ONLY_OURS: sm-notify not run)" >&2
echo "| clients | sm-notify -d -f (s) | lockd-recover notify (s) | speed-up | both notified all |"
echo "|---:|---:|---:|---:|---|"
for n in "${SIZES[@]}"; do
    make_dir "$WORK/smn-$n" "$n"
    make_dir "$WORK/lr-$n" "$n"
    # Ours first: it is short, and a run whose sm-notify is stopped by $SMN_TIMEOUT still
    # yields our row and a lower bound for sm-notify.
    t0=$(now)
    in_ns "$LOCKD_RECOVER" notify ${LR_ARGS:-} --json --state-dir "$WORK/lr-$n" >"$WORK/lr-$n.json" 2>"$WORK/lr-$n.log"; t1=$(now)
    smn_rc=0
    if [ -n "${ONLY_OURS:-}" ]; then
        lr_left=$(left "$WORK/lr-$n")
        printf '| %d | (not run) | %.2f | | ours: %s |\n' "$n" "$(awk "BEGIN{print $t1 - $t0}")" "$([ "$lr_left" = 0 ] && echo yes || echo "no, $lr_left left")"
        continue
    fi
    if [ -n "${SMN_TIMEOUT:-}" ]; then
        in_ns timeout "$SMN_TIMEOUT" sm-notify -d -f -P "$WORK/smn-$n" 2>"$WORK/smn-$n.log" || smn_rc=$?
    else
        in_ns sm-notify -d -f -P "$WORK/smn-$n" 2>"$WORK/smn-$n.log" || smn_rc=$?
    fi
    t2=$(now)
    b=$(awk "BEGIN{print $t1 - $t0}"); a=$(awk "BEGIN{print $t2 - $t1}")
    lr_left=$(left "$WORK/lr-$n"); smn_left=$(left "$WORK/smn-$n")
    if [ "$smn_rc" = 124 ]; then
        # Stopped by the timeout: a lower bound, with how many clients it had not reached.
        printf '| %d | > %.0f (stopped, %d of %d not acknowledged) | %.2f | > %.0fx | ours: %s |\n' \
            "$n" "$a" "$smn_left" "$n" "$b" "$(awk "BEGIN{print $a / $b}")" "$([ "$lr_left" = 0 ] && echo yes || echo "no, $lr_left left")"
        continue
    fi
    ok="no (left unacknowledged: sm-notify $smn_left, ours $lr_left)"; [ "$smn_left" = 0 ] && [ "$lr_left" = 0 ] && ok="yes"
    printf '| %d | %.2f | %.2f | %.1fx | %s |\n' "$n" "$a" "$b" "$(awk "BEGIN{print $a / $b}")" "$ok"
done
