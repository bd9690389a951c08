#!/bin/bash
# The lab host's end of fence_lab (guest/fence_lab), the servers' power fence under
# --manager pacemaker (sourced by lab.sh). A fence agent in a VM writes a request into its
# control directory ($LAB/vm/NODE/fence/ID.req: "ACTION TARGET FROM"); the fence server, a
# background loop started with the lab, carries it out and answers in ID.res:
#   off     kill -KILL of TARGET's qemu (by the pid recorded at its start): a hard power-off,
#           as a PDU or an IPMI "chassis power off" does; "ok" once the process is gone
#   status  "on" or "off"
#   on, reboot  "error": the lab boots fenced servers itself (stonith-action=off)
# Each request is a line of $LAB/fence.log: "EPOCH FROM ACTION TARGET -> ANSWER". With sbd
# fencing (pcmk_use_fence sbd) fence_lab delivers sbd's poison pill itself and only reports the
# fence done (ID.done: "off TARGET FROM sbd"); the loop logs it as "... -> ok sbd" when it sees it
# (within 0.1 s).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

FENCE_PID=
# While $LAB/fence.lie exists, the fence server answers "ok" to off without powering anything
# off: a fence device that lies (a false confirmation, for the split-brain scenario). While
# $LAB/fence.dead exists it answers nothing at all: a power switch that is gone (scenario p6);
# fence_lab times out (40 s) and fails, as the API requires.

# The lab node (a, b) of a server's host name.
node_of_host() {
    local n
    for n in a b c d; do [[ ${VM_HOST[$n]} == "$1" ]] && { echo "$n"; return 0; }; done
    return 1
}

fence_one() {
    local action=$1 target=$2 n i
    n=$(node_of_host "$target") || { echo "error unknown node $target"; return; }
    case $action in
    status) vm_alive "$n" && echo on || echo off ;;
    off)
        if [[ -e $LAB/fence.lie ]]; then echo ok; return; fi
        if vm_alive "$n"; then
            kill -KILL "$(vm_pid "$n")"
            for ((i = 0; i < 50; i++)); do vm_alive "$n" || break; sleep 0.1; done
        fi
        vm_alive "$n" && echo "error $target still runs" || echo ok
        ;;
    *) echo "error $action is not supported by the lab (it boots fenced servers itself)" ;;
    esac
}

fence_server_loop() {
    local f id req action target from ans
    while :; do
        for f in "$LAB"/vm/a/fence/*.req "$LAB"/vm/b/fence/*.req; do
            [[ -e $f ]] || continue
            id=${f%.req}
            read -r action target from < "$f"
            rm -f "$f"
            if [[ -e $LAB/fence.dead ]]; then
                echo "$(now) $from $action $target -> no answer (fence.dead)" >> "$LAB/fence.log"
                continue
            fi
            ans=$(fence_one "$action" "$target")
            echo "$(now) $from $action $target -> $ans" >> "$LAB/fence.log"
            echo "$ans" > "$id.tmp" && mv "$id.tmp" "$id.res"
        done
        for f in "$LAB"/vm/a/fence/*.done "$LAB"/vm/b/fence/*.done; do
            [[ -e $f ]] || continue
            read -r action target from ans < "$f"
            rm -f "$f"
            echo "$(now) $from $action $target -> ok $ans" >> "$LAB/fence.log"
        done
        sleep 0.1
    done
}

fence_server_start() {
    mkdir -p "$LAB/vm/a/fence" "$LAB/vm/b/fence"
    : > "$LAB/fence.log"
    fence_server_loop &
    FENCE_PID=$!
}

fence_server_stop() {
    [[ -n $FENCE_PID ]] && kill "$FENCE_PID" 2> /dev/null
    FENCE_PID=
}

# fence_time TARGET AFTER: the time of the first "off TARGET -> ok" after AFTER (empty if none).
fence_time() { awk -v t="$2" -v h="$1" '$1 > t && $3 == "off" && $4 == h && $6 == "ok" { print $1; exit }' "$LAB/fence.log"; }

# fence_wait TARGET AFTER LIMIT: waits up to LIMIT s for an "off TARGET -> ok" after AFTER.
fence_wait() {
    local end=$((SECONDS + $3))
    while ((SECONDS < end)); do
        [[ -n $(fence_time "$1" "$2") ]] && return 0
        sleep 1
    done
    return 1
}
