#!/bin/bash
# What every scenario prints (sourced by lab.sh): its banner, its RESULT line in
# $LAB/phases.txt and its verdict. A scenario function returns 0 (PASS) or 1 (FAIL).
# shellcheck disable=SC2034,SC2153,SC2154 # sourced by lab.sh: its globals are set and read across these files

# Set by a scenario that killed a server: the next banner boots it again as the standby.
NEED_REBOOT=

# banner TEXT: start a scenario (after rebooting a server the previous one killed).
banner() {
    if [[ -n $NEED_REBOOT ]]; then
        log "booting the killed VM ${VM_HOST[$NEED_REBOOT]} again as the standby"
        vm_reboot_server "$NEED_REBOOT" || return 1
        NEED_REBOOT=
    fi
    echo
    echo "=== $*"
}

# verdict RC: the scenario's closing line.
verdict() { echo "  verdict: $([[ $1 -eq 0 ]] && echo PASS || echo FAIL)"; }

# result FIELDS...: one "RESULT ..." line in $LAB/phases.txt (the machine-readable summary).
result() { echo "RESULT $*" >> "$LAB/phases.txt"; }

# The self-fence bound the holder's block carried before the failover (mmpd holder), or none.
fence_tag_bound_ms() { jq -r '.bound_ms // "none"' <<< "${FENCE_TAG:-null}" 2> /dev/null; }

load_avg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }
