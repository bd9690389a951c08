#!/usr/bin/env bash
# Test the Debian package on a clean Debian 12: build it (scripts/build-deb.sh), debootstrap a
# minbase bookworm chroot, then inside it install, check, upgrade under a running mmpd, remove
# and purge.
#
#   scripts/test-deb.sh [--profile PROFILE]        (passed to build-deb.sh; default release)
#   DEB_TEST_MIRROR=http://deb.debian.org/debian   (the mirror debootstrap uses)
#
# What it checks: every file where the package should put it (binaries stripped, the agents'
# links resolving to their binaries, mmpd@.service, man pages, docs, examples, an empty
# /etc/mmpd, no conffile); the four binaries run; the example mmpd configuration parses; the
# agents answer meta-data once their crate has an agent module (see check_agents); no unit
# enabled and no service touched: systemctl, deb-systemd-helper, deb-systemd-invoke, invoke-rc.d,
# service, start-stop-daemon, pkill and killall are recorders in the chroot's PATH, and the
# only call allowed is `systemctl daemon-reload`; an upgrade (dpkg -i again) and a removal
# while a real mmpd holds an MMP area leave it running and its block live (stopping it would
# write CLEAN); after dpkg -P the chroot is as it was (but for dpkg's database and logs).
#
# The chroot is made once and cached as a tar under target/deb-test/ (remove it to refresh);
# each run unpacks it into a directory of its own, which is removed at exit (trap), with its
# /proc unmounted and its mmpd stopped first. Nothing outside those directories is touched.
# Needs root, debootstrap and (the first time) the mirror; without them it skips, or fails
# with CI=true.
# shellcheck disable=SC2016 # dpkg-query's ${Field} formats are meant literally
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${DEB_TEST_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
t0=$(date +%s.%N)
took() { echo "$(date +%s.%N) - $1" | bc | awk '{printf "%.1f", $1}'; }
log() { echo "test-deb [$(took "$t0") s] $*"; }

cannot_run() {
    if [[ ${CI:-} == true ]]; then
        echo "test-deb.sh: FAILED: $* (CI=true)" >&2
        exit 1
    fi
    echo "SKIPPED: test-deb.sh: $*"
    exit 0
}
[[ $(id -u) -eq 0 ]] || cannot_run "needs root (debootstrap, chroot, mount)"
command -v debootstrap > /dev/null || cannot_run "debootstrap is missing (apt-get install debootstrap)"

deb=$(bash "$repo/scripts/build-deb.sh" "$@" | tail -n 1)
log "built $deb"

arch=$(dpkg --print-architecture)
cache_dir=${CARGO_TARGET_DIR:-$repo/target}/deb-test
cache=$cache_dir/$suite-minbase-$arch.tar
mkdir -p "$cache_dir"
work=$(mktemp -d "$cache_dir/run.XXXXXX")
root=$work/root
# Everything the test makes inside the chroot (recorders' log, the MMP area, mmpd's files).
T=/mmp-ha-test
mmpd_pid=
failures=0
chroot_source=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    stop_mmpd
    if mountpoint -q "$root/proc"; then
        umount "$root/proc" || umount -l "$root/proc" || true
    fi
    if findmnt -rn -o TARGET | grep -q "^$work/"; then
        echo "test-deb.sh: not removing $work: something is still mounted below it" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    log "done: $([[ $rc -eq 0 ]] && echo PASS || echo "FAIL (exit $rc)"), chroot from $chroot_source"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "test-deb.sh: interrupted" >&2; exit 130' INT TERM HUP

# Runs a command in the chroot with a clean environment (chroot and env exec it: run in the
# background, $! is the command's pid).
in_root_cmd=(chroot "$root" /usr/bin/env -i HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
in_root() { "${in_root_cmd[@]}" "$@"; }
# expect DESCRIPTION COMMAND...: runs the check, counts a failure.
expect() {
    local what=$1
    shift
    if "$@"; then
        echo "  ok: $what"
    else
        echo "  FAILED: $what" >&2
        failures=$((failures + 1))
    fi
}

# The chroot: the cached tar, or debootstrap (then cached before anything else touches it).
make_chroot() {
    mkdir "$root"
    if [[ -s $cache ]]; then
        tar --numeric-owner -xpf "$cache" -C "$root"
        chroot_source="the cache ($cache)"
        return
    fi
    log "debootstrap --variant=minbase $suite from $mirror (first run: cached afterwards)"
    debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        echo "test-deb.sh: debootstrap failed (log above)" >&2
        return 1
    }
    tar --numeric-owner -cf "$cache.tmp.$$" -C "$root" . && mv "$cache.tmp.$$" "$cache"
    chroot_source="debootstrap ($mirror)"
}

# Recorders for every command a maintainer script could use to start, stop or signal a
# service, first in the chroot's PATH; a systemd that "runs" (so postinst's daemon-reload is
# exercised); the test's own directory.
prepare_chroot() {
    mount -t proc proc "$root/proc"
    mkdir -p "$root$T" "$root/run/systemd/system"
    local c
    for c in systemctl deb-systemd-helper deb-systemd-invoke invoke-rc.d service \
        start-stop-daemon pkill killall; do
        printf '#!/bin/sh\necho "%s $*" >> %s/calls\nexit 0\n' "$c" "$T" > "$root/usr/local/sbin/$c"
        chmod 0755 "$root/usr/local/sbin/$c"
    done
    : > "$root$T/calls"
}

# Every path in the chroot with its type and mode, but for what dpkg keeps by design (its
# database and logs), the runtime directories and the test's own.
snapshot() {
    (cd "$root" && find . \( -path ./proc -o -path ./run -o -path ./tmp -o -path ".$T" \
        -o -path ./var/lib/dpkg -o -path ./var/log \) -prune -o -printf '%y %m %p\n' | sort)
}

# Installs with apt-get the Depends that minbase lacks (none, as of bookworm).
install_depends() {
    local dep missing=()
    while read -r dep; do
        [[ -n $dep ]] || continue
        in_root dpkg-query -W -f='${Status}\n' "$dep" 2> /dev/null | grep -q "install ok installed" ||
            missing+=("$dep")
    done < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g')
    [[ ${#missing[@]} -eq 0 ]] && return
    log "installing the missing Depends: ${missing[*]}"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    in_root apt-get update -qq && in_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# --- checks ---------------------------------------------------------------------------------
is_file() { [[ -f $root$1 && ! -L $root$1 ]]; }
is_exec() { is_file "$1" && [[ -x $root$1 ]]; }
resolves_to() { [[ -L $root$1 && $(in_root readlink -f "$1") == "$2" ]]; }
# (.debug_gdb_scripts is not debug info: Rust puts it in every binary, strip keeps it.)
no_debug_info() { ! readelf -S -W "$root$1" | grep -Eq ' \.debug_(info|line|abbrev|str|ranges) '; }
gzip_ok() { is_file "$1" && gzip -t "$root$1"; }
dir_empty() { [[ -d $root$1 && -z $(ls -A "$root$1") ]]; }
unit_execstart() { grep -qx 'ExecStart=/usr/sbin/mmpd --config /etc/mmpd/%i.toml' "$root$1"; }
no_conffile() { [[ -z $(in_root dpkg-query -W -f='${Conffiles}' mmp-ha) ]]; }
runs() { in_root "$@" > /dev/null; }
# The units enabled (links in /etc/systemd/*/*.wants/): compared with those before dpkg -i.
enabled_units() { (cd "$root/etc/systemd" 2> /dev/null && find . -path '*.wants/*' | sort); }
no_enabled_unit() { [[ $(enabled_units) == "$enabled_before" ]]; }
# The recorders saw daemon-reload N times and nothing else.
only_daemon_reloads() {
    [[ $(grep -cvx 'systemctl --system daemon-reload' "$root$T/calls") -eq 0 &&
        $(grep -cx 'systemctl --system daemon-reload' "$root$T/calls") -eq $1 ]]
}
owned_by_root() { [[ -z $(dpkg-deb -c "$deb" | awk '$2 != "root/root"') ]]; }
removed() {
    local p
    for p in /usr/sbin/mmp-tool /usr/sbin/mmpd /usr/sbin/lockd-recover /usr/bin/lock-torture \
        /usr/lib/ocf/resource.d/mmp-ha /lib/systemd/system/mmpd@.service; do
        [[ ! -e $root$p && ! -L $root$p ]] || return 1
    done
}
purged() {
    local status
    status=$(in_root dpkg-query -W -f='${Status}' mmp-ha 2> /dev/null) || return 0
    [[ $status == *" not-installed" ]]
}
example_parses() {
    local out
    out=$(in_root mmpd --config /usr/share/doc/mmp-ha/examples/ost0.toml 2>&1) && return 1
    [[ $out == *"stat failed"* && $out != *"invalid configuration"* ]]
}

check_installed() {
    local b p s
    for b in mmp-tool mmpd lockd-recover; do
        expect "/usr/sbin/$b, stripped" is_exec "/usr/sbin/$b"
        expect "/usr/sbin/$b has no debug info" no_debug_info "/usr/sbin/$b"
        expect "$b --version runs" runs "/usr/sbin/$b" --version
    done
    expect "/usr/bin/lock-torture" is_exec /usr/bin/lock-torture
    expect "/usr/bin/lock-torture has no debug info" no_debug_info /usr/bin/lock-torture
    expect "lock-torture --version runs" runs lock-torture --version
    check_agents
    expect "/lib/systemd/system/mmpd@.service runs /usr/sbin/mmpd" unit_execstart /lib/systemd/system/mmpd@.service
    for p in "$repo"/man/*.[1-9]; do
        s=${p##*.}
        expect "man page ${p##*/}" gzip_ok "/usr/share/man/man$s/${p##*/}.gz"
    done
    for p in README.md.gz BENCHMARKS.md.gz changelog.Debian.gz; do
        expect "/usr/share/doc/mmp-ha/$p" gzip_ok "/usr/share/doc/mmp-ha/$p"
    done
    expect "/usr/share/doc/mmp-ha/copyright, machine-readable" \
        grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' \
        "$root/usr/share/doc/mmp-ha/copyright"
    expect "examples/README" is_file /usr/share/doc/mmp-ha/examples/README
    expect "examples/ost0.toml parses (mmpd stops at the missing device)" example_parses
    expect "/etc/mmpd exists and is empty" dir_empty /etc/mmpd
    expect "no conffile" no_conffile
    expect "no unit enabled (no new link under /etc/systemd/*/*.wants)" no_enabled_unit
}

# The agents' links resolve to their binaries. meta-data is required from the agents of a
# crate that has an agent module (mmp-tool/src/agent, lockd-recover/src/agent): before that,
# the binary does not know it is an agent. The lead's merge of the agents turns this on.
check_agents() {
    local a bin dir=/usr/lib/ocf/resource.d/mmp-ha
    for a in mmp-fs:mmp-tool nfs-grace:lockd-recover nfs-locks:lockd-recover; do
        bin=${a#*:} a=${a%%:*}
        expect "agent $dir/$a -> /usr/sbin/$bin" resolves_to "$dir/$a" "/usr/sbin/$bin"
        if [[ -d $repo/$bin/src/agent ]]; then
            expect "agent $a answers meta-data" agent_meta_data "$dir/$a" "$a"
        else
            echo "  (agent $a: meta-data not checked, $bin has no src/agent module)"
        fi
    done
}
agent_meta_data() {
    local xml=$work/meta-data.xml dtd=/usr/share/resource-agents/ra-api-1.dtd
    in_root "$1" meta-data > "$xml" || return 1
    grep -q "<resource-agent name=\"$2\"" "$xml" || return 1
    if command -v xmllint > /dev/null && [[ -r $dtd ]]; then
        # Next to the document, where its DOCTYPE (SYSTEM "ra-api-1.dtd") points.
        cp "$dtd" "$work/"
        xmllint --noout --dtdvalid "$dtd" "$xml" || return 1
    fi
}

# --- a running mmpd across the upgrade ------------------------------------------------------
# The installed mmpd holds an MMP area (a file in the chroot) with the exit fence; returns once
# it has claimed it (about 9 s).
start_mmpd() {
    truncate -s 4M "$root$T/area.img"
    in_root mmp-tool format-area --run-dir "$T/run" "$T/area.img" > /dev/null
    # To read the block after dpkg -r too.
    cp "$root/usr/sbin/mmp-tool" "$root$T/mmp-tool"
    "${in_root_cmd[@]}" /usr/sbin/mmpd --fence exit --interval 1 --run-dir "$T/run" "$T/area.img" \
        > "$root$T/mmpd.log" 2>&1 < /dev/null &
    mmpd_pid=$!
    for _ in $(seq 1 60); do
        grep -q 'ready:' "$root$T/mmpd.log" && return 0
        kill -0 "$mmpd_pid" 2> /dev/null || break
        sleep 0.5
    done
    cat "$root$T/mmpd.log" >&2
    echo "test-deb.sh: mmpd did not claim the area" >&2
    return 1
}
stop_mmpd() {
    [[ -n $mmpd_pid ]] || return 0
    kill "$mmpd_pid" 2> /dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$mmpd_pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -9 "$mmpd_pid" 2> /dev/null || true
    wait "$mmpd_pid" 2> /dev/null || true
    mmpd_pid=
}
# mmpd still runs (same pid, same program) and its heartbeat still moves the sequence.
mmpd_still_holding() {
    [[ $(cat "/proc/$mmpd_pid/comm" 2> /dev/null) == mmpd ]] || return 1
    local s1 s2
    s1=$(area_field sequence) && sleep 2.2 && s2=$(area_field sequence)
    [[ $(area_field state) == live && -n $s1 && $s1 != "$s2" ]]
}
area_field() { in_root "$T/mmp-tool" status --json "$T/area.img" | jq -r ".$1"; }

# --- main -----------------------------------------------------------------------------------
if command -v lintian > /dev/null; then
    log "lintian"
    expect "lintian: no error" lintian --fail-on error "$deb"
else
    log "lintian is not installed: not run"
fi
expect "every file in the package is root:root" owned_by_root

make_chroot
log "chroot ready ($chroot_source)"
prepare_chroot
install_depends
before=$(snapshot)
enabled_before=$(enabled_units)
cp "$deb" "$root$T/mmp-ha.deb"

log "dpkg -i"
in_root dpkg -i "$T/mmp-ha.deb" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 1; }
check_installed
expect "maintainer scripts: one daemon-reload, nothing else" only_daemon_reloads 1

log "upgrade (dpkg -i again) while mmpd holds an MMP area"
start_mmpd
in_root dpkg -i "$T/mmp-ha.deb" > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 1; }
expect "mmpd still runs and its block is live after the upgrade" mmpd_still_holding
expect "no unit enabled after the upgrade" no_enabled_unit
expect "maintainer scripts: daemon-reload again, nothing else" only_daemon_reloads 2

log "dpkg -r"
in_root dpkg -r mmp-ha > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 1; }
expect "mmpd still runs after the removal" mmpd_still_holding
expect "maintainer scripts: daemon-reload after the removal, nothing else" only_daemon_reloads 3
stop_mmpd
expect "the binaries and agents are gone after dpkg -r" removed

log "dpkg -P"
in_root dpkg -P mmp-ha > "$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 1; }
expect "dpkg knows no mmp-ha any more" purged
after=$(snapshot)
expect "after dpkg -P the chroot is as before dpkg -i" diff <(echo "$before") <(echo "$after")

if [[ $failures -gt 0 ]]; then
    echo "test-deb.sh: $failures check(s) failed" >&2
    exit 1
fi
