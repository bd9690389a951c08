#!/bin/bash
# The failover lab: two NFS servers (A, B) on one shared disk (ext4 with MMP, or with --holder mmpd
# plain ext4 plus a shared MMP area held by mmpd with the watchdog fence) and two NFS clients (C runs
# the workload, D probes for conflicting grants), four qemu TCG VMs on a bridge inside a network
# namespace made for the lab. See tests/lab/README.md.
#
#   tests/lab/lab.sh [--scenarios LIST] [--rounds N] [--keep] [--bin-dir DIR] [--holder ext4|mmpd]
#                    [--manager scripts|pacemaker]
#     LIST: comma list of 1 2 3 4 5 6 7 8 9 s1 s3 (s = the same drill with the stock tools; 5 = frozen
#           holder, --holder mmpd only; 6 = our OCF agents mmp-fs, nfs-grace, nfs-locks; either holder;
#           7, 8 = a planned handoff rolled back, its target killed mid-handoff; 9 = the active
#           server's disks fail under load, --holder mmpd only), or
#           ci (= 2,1), all (= 2,1,3,4,7,8), bench (= 1,s1,3,s3). Default: ci.
#           10 / s10 (alone, its own lab: 20 shared volumes, two NFS services in their own
#           network namespaces, 60 lock holders; A killed, B takes svc1 over, ours / stock).
#     --holder: the MMP gate. ext4 (default): MMP ext4, `mmp-tool mount`, kmmpd holds it.
#           mmpd (or LAB_HOLDER=mmpd): plain ext4 + a shared MMP area held by mmpd with the
#           watchdog fence (LAB_MMPD_ARGS); scenarios 1 2 3 4 5 9 only.
#     --manager: who switches the servers. scripts (default): our node scripts. pacemaker: A and B
#           are a corosync/Pacemaker cluster (Debian's packages, a debootstrapped systemd root)
#           with real fencing (fence_lab, the host's power switch, or sbd); scenarios p1 (hard
#           failover, our agents), p2 (split brain after a lying fence, our agents), p3 (planned
#           move, crm resource move), ps3, ps1 (p3, p1 with the stock agents), p4 (frozen
#           holder, power fence), p5 (a fenced server returns), p6 (the fence fails), p7 (p2,
#           then the partition heals: the falsely fenced server returns), p8 (planned move by
#           migration: mmp-fs's migrate_to/migrate_from, the handoff), p9 (p8's target killed
#           mid-handoff), p1w, p4w (p1, p4 with sbd fencing: its disk and qemu's i6300esb
#           watchdog); ci = p1, all = p1,p2,p7,p3,p8,p9,ps3,ps1,p4,p5,p6,p1w,p4w;
#           bench = p1,ps1,p3,p8,ps3.
# Exit: 0 every scenario passed, 1 a scenario failed, 2 setup error (missing package, not root).
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
scenarios=ci rounds=10 keep=0 bin_dir=${LAB_BIN_DIR:-} HOLDER=${LAB_HOLDER:-ext4} MANAGER=${LAB_MANAGER:-scripts}
while [[ $# -gt 0 ]]; do
    case $1 in
    --scenarios) scenarios=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --holder) HOLDER=$2; shift 2 ;;
    --manager) MANAGER=$2; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lab.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $MANAGER in
scripts) ;;
pacemaker)
    # The servers run corosync and Pacemaker: the systemd guest (a debootstrapped Debian root).
    LAB_GUEST=systemd
    case $scenarios in
    ci) scenarios=p1 ;;
    all) scenarios=p1,p2,p7,p3,p8,p9,ps3,ps1,p4,p5,p6,p1w,p4w ;;
    bench) scenarios=p1,ps1,p3,p8,ps3 ;;
    esac
    ;;
*) echo "lab.sh: --manager must be scripts or pacemaker, not '$MANAGER'" >&2; exit 2 ;;
esac
if [[ $MANAGER == pacemaker && ,$scenarios, =~ ,[0-9s][0-9]*, ]]; then
    echo "lab.sh: with --manager pacemaker only the p* scenarios run (Pacemaker drives the servers)" >&2
    exit 2
fi
if [[ $MANAGER != pacemaker && ,$scenarios, =~ ,p ]]; then
    echo "lab.sh: the p* scenarios need --manager pacemaker" >&2
    exit 2
fi
if [[ $MANAGER == pacemaker && $HOLDER != ext4 ]]; then
    echo "lab.sh: --manager pacemaker runs the ext4 holder only (mmp-fs holder=ext4)" >&2
    exit 2
fi
case $scenarios in
ci) scenarios=2,1 ;;
all) scenarios=2,1,3,4,7,8 ;;
bench) scenarios=1,s1,3,s3 ;;
esac
# Scenario 10 (s10) builds its own lab (lib/volumes.sh): 20 volumes, two services, no single-disk
# service; it runs alone, one lab per variant, ext4 holder, scripted manager.
VOLUMES=0
if [[ ,$scenarios, =~ ,s?10, ]]; then
    if [[ $scenarios != 10 && $scenarios != s10 ]]; then
        echo "lab.sh: scenario 10 or s10 runs alone (its own lab: --scenarios 10, or s10)" >&2
        exit 2
    fi
    if [[ $HOLDER != ext4 || $MANAGER != scripts ]]; then
        echo "lab.sh: scenario 10 needs the ext4 holder and the scripted manager" >&2
        exit 2
    fi
    VOLUMES=1
fi
# The stock drill has no mmpd counterpart: with the mmpd holder, bench is ours only.
[[ $HOLDER == mmpd && $scenarios == 1,s1,3,s3 ]] && scenarios=1,3

case $HOLDER in
ext4 | mmpd) ;;
*) echo "lab.sh: --holder must be ext4 or mmpd, not '$HOLDER'" >&2; exit 2 ;;
esac
if [[ $HOLDER != mmpd && ,$scenarios, =~ ,[59], ]]; then
    echo "lab.sh: scenarios 5 (frozen holder) and 9 (disk fault) need --holder mmpd (the watchdog fence)" >&2
    exit 2
fi
if [[ $HOLDER == mmpd && ,$scenarios, =~ ,s[13], ]]; then
    echo "lab.sh: the stock scenarios (s1, s3) need the ext4 holder (their kernel mount is the gate)" >&2
    exit 2
fi

# The host side: lib/ holds the machinery, scenarios/ one file per scenario, each defining
# scenario_ID for its ids (see tests/lab/README.md, "Adding a scenario").
# shellcheck source=lib/env.sh
. "$here/lib/env.sh"
# shellcheck source=lib/vm.sh
. "$here/lib/vm.sh"
# shellcheck source=lib/net.sh
. "$here/lib/net.sh"
# shellcheck source=lib/timeline.sh
. "$here/lib/timeline.sh"
# shellcheck source=lib/workload.sh
. "$here/lib/workload.sh"
# shellcheck source=lib/verdict.sh
. "$here/lib/verdict.sh"
# shellcheck source=lib/failover.sh
. "$here/lib/failover.sh"
# shellcheck source=lib/pcmk.sh
. "$here/lib/pcmk.sh"
# shellcheck source=lib/fence.sh
. "$here/lib/fence.sh"
# shellcheck source=lib/volumes.sh
. "$here/lib/volumes.sh"
# shellcheck source=scenarios/1-hard-failover.sh
. "$here/scenarios/1-hard-failover.sh"
# shellcheck source=scenarios/2-split-brain.sh
. "$here/scenarios/2-split-brain.sh"
# shellcheck source=scenarios/3-planned-handoff.sh
. "$here/scenarios/3-planned-handoff.sh"
# shellcheck source=scenarios/4-rounds.sh
. "$here/scenarios/4-rounds.sh"
# shellcheck source=scenarios/5-frozen-holder.sh
. "$here/scenarios/5-frozen-holder.sh"
# shellcheck source=scenarios/6-ocf-nfs-agents.sh
. "$here/scenarios/6-ocf-nfs-agents.sh"
# shellcheck source=scenarios/7-handoff-faults.sh
. "$here/scenarios/7-handoff-faults.sh"
# shellcheck source=scenarios/9-disk-fault.sh
. "$here/scenarios/9-disk-fault.sh"
# shellcheck source=scenarios/10-many-volumes.sh
. "$here/scenarios/10-many-volumes.sh"
# shellcheck source=scenarios/p1-pcmk-hard.sh
. "$here/scenarios/p1-pcmk-hard.sh"
# shellcheck source=scenarios/p2-pcmk-split.sh
. "$here/scenarios/p2-pcmk-split.sh"
# shellcheck source=scenarios/p3-pcmk-move.sh
. "$here/scenarios/p3-pcmk-move.sh"
# shellcheck source=scenarios/p4-pcmk-frozen.sh
. "$here/scenarios/p4-pcmk-frozen.sh"
# shellcheck source=scenarios/p5-pcmk-return.sh
. "$here/scenarios/p5-pcmk-return.sh"
# shellcheck source=scenarios/p6-pcmk-fence-fails.sh
. "$here/scenarios/p6-pcmk-fence-fails.sh"
# shellcheck source=scenarios/p7-pcmk-split-return.sh
. "$here/scenarios/p7-pcmk-split-return.sh"
# shellcheck source=scenarios/p9-pcmk-migrate-killed.sh
. "$here/scenarios/p9-pcmk-migrate-killed.sh"

IFS=, read -r -a list <<< "$scenarios"
for s in "${list[@]}"; do
    declare -F "scenario_$s" > /dev/null || { echo "lab.sh: unknown scenario $s" >&2; exit 2; }
done
guest_kind_known || { echo "lab.sh: unknown guest kind LAB_GUEST=$LAB_GUEST" >&2; exit 2; }

[[ $scenarios == s10 ]] && VOL_MODE=stock
preflight "$bin_dir" || exit 2
lab_setup || { echo "lab.sh: setup failed" >&2; exit 2; }

failed=0
results=()
for s in "${list[@]}"; do
    "scenario_$s"
    rc=$?
    results+=("scenario $s: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL)")
    [[ $rc -eq 0 ]] || failed=1
done
echo
echo "=== summary ($(elapsed_total) s in all)"
printf '%s\n' "${results[@]}"
printf '%s\n' "${results[@]}" > "$LAB/summary.txt"
npass=$(printf '%s\n' "${results[@]}" | grep -c ': PASS$')
echo "$npass passed, $((${#results[@]} - npass)) failed"
exit $failed
