#!/usr/bin/env bash
# The mmpd soak (issue 17), long form: ONE mmpd holding N loop devices (direct I/O) for M
# minutes while a competing O_DIRECT load writes and reads another file on the same disk. It is
# the integration test mmpd/tests/soak.rs (CI runs it with 20 devices for 45 s), built in
# release mode and run with SOAK_DEVICES / SOAK_SECS / SOAK_LOAD and --nocapture.
#
# Usage (root, from anywhere in the workspace):
#   scripts/soak.sh [--devices N] [--minutes M] [--no-load]     defaults: 200 devices, 30 minutes
#
# The build runs under `nice -n 19`; the test (and the mmpd it starts) runs at normal priority,
# since mmpd's scheduling is what is measured. CI=true is set, so a missing prerequisite fails
# instead of skipping. The test prints a summary and one line `SOAK_SUMMARY {json}` (figures for
# BENCHMARKS.md, section "mmpd soak"); this script adds the date and load average around it.
# Everything the test makes (images in a tmpdir, loop devices, mmpd) is removed at its end,
# also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

devices=200
minutes=30
load=on
usage() { sed -n '8,9p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --devices) devices=${2:?}; shift 2 ;;
        --minutes) minutes=${2:?}; shift 2 ;;
        --no-load) load=off; shift ;;
        *) usage ;;
    esac
done
[[ $devices =~ ^[0-9]+$ && $minutes =~ ^[0-9]+$ ]] || usage
[[ $(id -u) -eq 0 ]] || { echo "soak: needs root (loop devices)" >&2; exit 2; }

# Build the release test; cargo names the executable on stderr ("Executable tests/soak.rs (PATH)").
build_log=$(nice -n 19 cargo test --release --locked -p mmpd --test soak --no-run 2>&1) || {
    echo "$build_log" >&2
    exit 1
}
exe=$(sed -n 's/^ *Executable tests\/soak\.rs (\(.*\))$/\1/p' <<<"$build_log")
[[ -x $exe ]] || { echo "soak: cannot find the test executable in:" >&2; echo "$build_log" >&2; exit 1; }

stamp() { echo "# soak $1 $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"; }
echo "# soak: $devices devices, $minutes minutes, competing load $load, kernel $(uname -r), $(nproc) cores"
stamp start
status=0
CI=true SOAK_DEVICES=$devices SOAK_SECS=$((minutes * 60)) SOAK_LOAD=$load \
    "$exe" --exact loop_soak_one_mmpd_holds_many_devices_under_competing_io --nocapture || status=$?
stamp end
exit "$status"
