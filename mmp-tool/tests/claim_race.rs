//! Two `mmp-tool claim` processes started at the same moment on a CLEAN block: exactly one
//! wins, over hundreds of rounds.
//!
//! Each round is its own small image (1 MiB, `mkfs.ext4 -O mmp -E mmp_update_interval=1`:
//! a claim of a clean block verifies for 9 s), raced by two claim processes with their own node
//! name and run directory, i.e. two "hosts". Two processes on one image file are a real race:
//! both go through the same page cache, as two hosts go to one LUN. Rounds run in batches of
//! [`BATCH`] (twice as many claim processes at once), so 200 rounds take about four claims'
//! time.
//!
//! - `claims_started_together_exactly_one_wins` (image files; needs only e2fsprogs): both
//!   processes of a round block on opening their round's FIFO and are released together.
//!   Started together means a few milliseconds apart, so usually one process reads the block
//!   after the other's write: it then watches that live sequence for `min(2*CI+1, CI+60)` =
//!   11 s. The winner's node follows its claim at once with a holder, as `mmp-tool claim
//!   --help` asks (here libmmp's `Heartbeat`, the code mmpd runs), so the watcher sees the
//!   block move and refuses ("in_use"). A round where both read CLEAN ends in "lost" for the
//!   earlier writer.
//! - `loop_claims_that_both_read_clean_exactly_one_wins` (root): the images live on a scratch
//!   ext4 frozen with `fsfreeze` while the claims start, so each process reads CLEAN and then
//!   blocks in its write (state D, `percpu_rwsem_wait`) until the thaw: every round is the
//!   LU-13932 race where both saw CLEAN. The later writer must win, the other must see it
//!   ("lost").
//! - `loop_claims_started_together_through_two_loop_devices` (root): a subset of rounds where
//!   each process reaches the image through its own loop device (O_DIRECT), as two hosts do.
//! - `claims_started_together_without_a_holder_exactly_one_wins`: the same race with nobody
//!   following the winner. See its comment.
//! - `fenced_claims_started_together_exactly_one_wins` (image files) and
//!   `loop_fenced_claims_through_two_loop_devices_exactly_one_wins` (root): two survivors both
//!   told that the dead holder was fenced (`claim --fenced dead-node`) race for its block, which
//!   names dead-node: both take the short fence-confirmed path. Rounds of the first:
//!   `$FENCED_RACE_ROUNDS` (default [`FENCED_ROUNDS`], which keeps it well under a minute).
//!
//! Every round asserts: one exit 0 and one exit 1 (a refusal), and the block holds the
//! winner's sequence and node name when the winner exits (and, with a holder, nothing but the
//! winner's node writes it afterwards).
//!
//! The claim process, the winner's holder and the referee are `race_support`'s, shared with
//! race_lanes.rs: thousands of rounds in parallel lanes, through loop devices only, also against
//! a kernel mount, an mmpd, and in the handoff, with random offsets and injected stops
//! (`scripts/race.sh`).

mod race_support;

use libmmp::ondisk::mmp::EXT4_MMP_SEQ_CLEAN;
use race_support::{referee, ClaimSpec, Entry, Racer};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_support::prelude::*;

/// Rounds raced at once (twice as many claim processes).
const BATCH: usize = 50;
/// Rounds raced at once behind a frozen filesystem. The first racer to block waits for the last
/// one to start, and a claim whose write ends over 2 s after its read gives up as `stalled`:
/// 50 rounds (100 processes to start) outlasted that at load 15, and both racers of 43-64 of
/// 100 rounds gave up. 20 rounds keep the freeze short.
const FROZEN_BATCH: usize = 20;
/// Rounds of the main race test.
const ROUNDS: usize = 200;
/// Rounds of the frozen-filesystem race.
const FROZEN_ROUNDS: usize = 100;
/// Rounds through loop devices (two per round).
const LOOP_ROUNDS: usize = 10;
/// Rounds of the fence-confirmed race on image files, unless `$FENCED_RACE_ROUNDS` says.
const FENCED_ROUNDS: usize = 100;
/// The node the racers are told was fenced, and whose live block they find.
const DEAD: &str = "dead-node";
/// A round must be over by then (a claim of a clean block takes 9 s, a watch of a live one 11 s
/// more); a loaded machine gets plenty of room.
const ROUND_LIMIT: Duration = Duration::from_secs(90);
const NODES: [&str; 2] = ["node-a", "node-b"];

/// `n` copies of one small MMP image in `dir` (sparse: only the non-zero 4 KiB pieces written).
fn small_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    let base = dir.join("base.img");
    mkfs_ext4(
        &base,
        1 << 20,
        &["-O", "mmp", "-E", "mmp_update_interval=1"],
    );
    let data = std::fs::read(&base).unwrap();
    (0..n)
        .map(|i| {
            let p = dir.join(format!("r{i:03}.img"));
            let f = File::create(&p).unwrap();
            f.set_len(data.len() as u64).unwrap();
            for (k, chunk) in data.chunks(4096).enumerate() {
                if chunk.iter().any(|&b| b != 0) {
                    f.write_all_at(chunk, (k * 4096) as u64).unwrap();
                }
            }
            p
        })
        .collect()
}

fn wchan(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// Wait until every racer that is still running sleeps in `wchan` (at most `limit`); how many
/// did.
fn wait_blocked(racers: &mut [Racer], wanted: &str, limit: Duration) -> usize {
    let end = Instant::now() + limit;
    loop {
        let mut blocked = 0;
        for r in racers.iter_mut() {
            if r.poll().is_none() && wchan(r.pid()) == wanted {
                blocked += 1;
            }
        }
        if blocked == racers.len() || Instant::now() >= end {
            return blocked;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One round: the devices the two racers use (the same image, or two loop devices of it).
struct Round {
    devs: [PathBuf; 2],
    /// Both racers claim with `--fenced dead-node` (the block names dead-node).
    fenced: bool,
}

impl Round {
    /// Racer `k`'s claim: node `NODES[k]`, run directory `tmp/run-NODE`.
    fn spec(&self, k: usize, tmp: &Path) -> ClaimSpec {
        let spec = ClaimSpec::new(
            &self.devs[k],
            NODES[k],
            &tmp.join(format!("run-{}", NODES[k])),
        );
        if self.fenced {
            spec.with(&["--fenced", DEAD])
        } else {
            spec
        }
    }
}

/// What a round ended with.
#[derive(Debug)]
struct RoundEnd {
    /// The loser's `result` ("lost" or "in_use").
    loser_result: String,
    /// Whether the winner's node had to hold the block after the claim (the loser still ran).
    held: bool,
}

/// Referee one round until both racers exited (the shared [`referee`]); with `hold`, the
/// winner's node heartbeats the block from the moment its claim returned until the other racer
/// is done. Exactly one wins, the other refuses with "lost" or "in_use".
fn referee_pair(
    tmp: &Path,
    round: &Round,
    racers: [Racer; 2],
    hold: bool,
) -> Result<RoundEnd, String> {
    let mut entries: Vec<Entry> = racers
        .into_iter()
        .enumerate()
        .map(|(k, r)| Entry::running(round.spec(k, tmp), r))
        .collect();
    let end = referee(&mut entries, hold, ROUND_LIMIT, |_| Ok(false));
    let both = entries
        .iter()
        .map(Entry::describe)
        .collect::<Vec<_>>()
        .join("\n");
    let end = end.map_err(|e| format!("{e}:\n{both}"))?;
    let Some(w) = end.winner else {
        return Err(format!("no winner:\n{both}"));
    };
    let (win, lose) = (entries[w].json(), entries[1 - w].json());
    if round.fenced && win["claim_path"] != "fenced" {
        return Err(format!("the winner did not take the fenced path:\n{both}"));
    }
    let loser_result = lose["result"].as_str().unwrap_or("").to_string();
    if !["lost", "in_use"].contains(&loser_result.as_str()) {
        return Err(format!("the loser's refusal is '{loser_result}':\n{both}"));
    }
    Ok(RoundEnd {
        loser_result,
        held: end.held,
    })
}

/// How the racers of a batch are started together.
enum Barrier {
    /// Each racer blocks in opening its round's FIFO; all FIFOs are then opened for writing.
    Fifo,
    /// The images' filesystem is frozen: every racer reads CLEAN and blocks in its write until
    /// the thaw.
    Frozen(PathBuf),
}

/// Race every round of `rounds` at once; the result of each.
fn race_batch(
    tmp: &Path,
    rounds: &[Round],
    barrier: &Barrier,
    hold: bool,
) -> Vec<Result<RoundEnd, String>> {
    let mut racers: Vec<Racer> = Vec::new();
    let mut _frozen = None;
    let mut _fifo_writers = Vec::new();
    match barrier {
        Barrier::Fifo => {
            let fifos: Vec<PathBuf> = (0..rounds.len())
                .map(|i| {
                    let f = tmp.join(format!("go-{i}"));
                    let _ = std::fs::remove_file(&f);
                    nix::unistd::mkfifo(&f, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .unwrap();
                    f
                })
                .collect();
            for (r, f) in rounds.iter().zip(&fifos) {
                for k in 0..2 {
                    racers.push(r.spec(k, tmp).spawn(Some(f)));
                }
            }
            let n = wait_blocked(&mut racers, "wait_for_partner", Duration::from_secs(30));
            assert_eq!(n, racers.len(), "not every racer reached the FIFO barrier");
            // O_RDWR does not block; every blocked reader's open returns now. Kept open until
            // the batch is over.
            for f in &fifos {
                _fifo_writers.push(
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(f)
                        .unwrap(),
                );
            }
        }
        Barrier::Frozen(mnt) => {
            // Declared after `racers`: dropped (thawed) first, so killing them cannot hang.
            _frozen = Some(Frozen::new(mnt));
            for r in rounds {
                for k in 0..2 {
                    racers.push(r.spec(k, tmp).spawn(None));
                }
            }
            let n = wait_blocked(&mut racers, "percpu_rwsem_wait", Duration::from_secs(60));
            assert_eq!(
                n,
                racers.len(),
                "not every racer read CLEAN and blocked in its write on the frozen filesystem"
            );
            _frozen = None;
        }
    }
    let mut it = racers.into_iter();
    let pairs: Vec<[Racer; 2]> = (0..rounds.len())
        .map(|_| [it.next().unwrap(), it.next().unwrap()])
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = rounds
            .iter()
            .zip(pairs)
            .map(|(r, p)| s.spawn(move || referee_pair(tmp, r, p, hold)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("referee panicked".into())))
            .collect()
    })
}

/// Race all `rounds` in batches; assert every round and return the losers' results.
fn race_all(
    tmp: &Path,
    rounds: &[Round],
    barrier: &Barrier,
    hold: bool,
    what: &str,
) -> Vec<RoundEnd> {
    let t = Instant::now();
    let mut ends = Vec::new();
    let mut failures = Vec::new();
    let size = match barrier {
        Barrier::Fifo => BATCH,
        Barrier::Frozen(_) => FROZEN_BATCH,
    };
    for (b, batch) in rounds.chunks(size).enumerate() {
        for (i, r) in race_batch(tmp, batch, barrier, hold)
            .into_iter()
            .enumerate()
        {
            match r {
                Ok(e) => ends.push(e),
                Err(e) => failures.push(format!("round {}: {e}", b * size + i)),
            }
        }
    }
    let lost = ends.iter().filter(|e| e.loser_result == "lost").count();
    let held = ends.iter().filter(|e| e.held).count();
    eprintln!(
        "{what}: {} rounds in {:.1} s: {} with exactly one winner ({lost} losers 'lost' after both read the same block, {} 'in_use'; winner's holder needed in {held}), {} failed",
        rounds.len(),
        t.elapsed().as_secs_f64(),
        ends.len(),
        ends.len() - lost,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{what}: {} of {} rounds failed:\n{}",
        failures.len(),
        rounds.len(),
        failures.join("\n")
    );
    ends
}

/// One round per image, both claimers opening the same file.
fn same_file_rounds(images: Vec<PathBuf>, fenced: bool) -> Vec<Round> {
    images
        .into_iter()
        .map(|p| Round {
            devs: [p.clone(), p],
            fenced,
        })
        .collect()
}

#[test]
fn claims_started_together_exactly_one_wins() {
    if !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rounds = same_file_rounds(small_images(tmp.path(), ROUNDS), false);
    race_all(
        tmp.path(),
        &rounds,
        &Barrier::Fifo,
        true,
        "image files, FIFO start",
    );
}

#[test]
fn loop_claims_that_both_read_clean_exactly_one_wins() {
    if !require_loop_devices() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A scratch ext4 (no MMP) to freeze, holding the race images.
    let scratch = tmp.path().join("scratch.img");
    mkfs_ext4(&scratch, 64 << 20, &[]);
    let lp = Loop::attach(&scratch);
    let mnt = tmp.path().join("mnt");
    let _mounted = Mount::new(&lp.dev, &mnt, &["-o", "noatime"]).expect("mount the scratch ext4");
    let rounds: Vec<Round> = small_images(&mnt, FROZEN_ROUNDS)
        .into_iter()
        .map(|p| Round {
            devs: [p.clone(), p],
            fenced: false,
        })
        .collect();
    let ends = race_all(
        tmp.path(),
        &rounds,
        &Barrier::Frozen(mnt.clone()),
        true,
        "both read CLEAN (frozen filesystem)",
    );
    // Both read CLEAN, so neither watched the other: the earlier writer sees the later write.
    for (i, e) in ends.iter().enumerate() {
        assert_eq!(e.loser_result, "lost", "round {i}: {e:?}");
        assert!(!e.held, "round {i}: the loser was still running");
    }
}

#[test]
fn loop_claims_started_together_through_two_loop_devices() {
    if !require_loop_devices() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let images = small_images(tmp.path(), LOOP_ROUNDS);
    let loops: Vec<[Loop; 2]> = images
        .iter()
        .map(|p| [Loop::attach(p), Loop::attach(p)])
        .collect();
    let rounds: Vec<Round> = loops
        .iter()
        .map(|l| Round {
            devs: [l[0].dev.clone(), l[1].dev.clone()],
            fenced: false,
        })
        .collect();
    race_all(
        tmp.path(),
        &rounds,
        &Barrier::Fifo,
        true,
        "two loop devices per image, FIFO start",
    );
    for p in &images {
        assert_ne!(read_block(p).mmp_seq, EXT4_MMP_SEQ_CLEAN);
    }
}

/// The same race with nobody following the winner's claim. Two processes released together by
/// the FIFO barrier are milliseconds apart: the later one reads the earlier one's fresh
/// sequence and watches it for 11 s. Before bare claims refreshed their block, the earlier one
/// verified for 9 s and exited 0, nothing wrote the block any more, and the later one called it
/// stale and claimed too (both exit 0 in 50 of 50 rounds of a trial run). Now the earlier one
/// writes a fresh sequence at the end of its verification, which the watcher sees: it refuses.
#[test]
fn claims_started_together_without_a_holder_exactly_one_wins() {
    if !require_e2fsprogs() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rounds = same_file_rounds(small_images(tmp.path(), ROUNDS), false);
    race_all(
        tmp.path(),
        &rounds,
        &Barrier::Fifo,
        false,
        "image files, FIFO start, no holder",
    );
}

/// `n` small images whose MMP block a dead holder, `dead-node`, left live.
fn dead_holder_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    let images = small_images(dir, n);
    for (i, p) in images.iter().enumerate() {
        write_foreign(p, 0x4000 + i as u32, DEAD);
    }
    images
}

/// Two survivors told that dead-node was fenced claim its block at once: exactly one wins,
/// on the fenced path. `FENCED_RACE_ROUNDS=1000` for a long run.
#[test]
fn fenced_claims_started_together_exactly_one_wins() {
    if !require_e2fsprogs() {
        return;
    }
    let n = std::env::var("FENCED_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FENCED_ROUNDS);
    let tmp = tempfile::tempdir().unwrap();
    let rounds = same_file_rounds(dead_holder_images(tmp.path(), n), true);
    race_all(
        tmp.path(),
        &rounds,
        &Barrier::Fifo,
        true,
        "fence-confirmed claims, image files, FIFO start",
    );
}

#[test]
fn loop_fenced_claims_through_two_loop_devices_exactly_one_wins() {
    if !require_loop_devices() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let images = dead_holder_images(tmp.path(), LOOP_ROUNDS);
    let loops: Vec<[Loop; 2]> = images
        .iter()
        .map(|p| [Loop::attach(p), Loop::attach(p)])
        .collect();
    let rounds: Vec<Round> = loops
        .iter()
        .map(|l| Round {
            devs: [l[0].dev.clone(), l[1].dev.clone()],
            fenced: true,
        })
        .collect();
    race_all(
        tmp.path(),
        &rounds,
        &Barrier::Fifo,
        true,
        "fence-confirmed claims, two loop devices per image, FIFO start",
    );
}
