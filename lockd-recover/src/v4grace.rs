//! The NFSv4 half of a takeover: the kernel ends v4 grace itself when every client in
//! nfsdcld's database has sent RECLAIM_COMPLETE (`inc_reclaim_complete()`: "all clients done
//! reclaiming, ending NFSv4 grace period", `fs/nfsd/nfs4state.c`; only with nfsdcld, which
//! sets `track_reclaim_completes`). Locks coming back do not mean a v4 client is done (it may
//! still be reclaiming opens and delegations), so this only watches
//! `/proc/fs/nfsd/v4_end_grace` (reads `Y` once grace has ended, `write_v4_end_grace()`,
//! `fs/nfsd/nfsctl.c`) and writes `Y` there itself only at the deadline, naming the clients
//! that had not completed.

use crate::knobs::{KnobError, ProcRoot, V4_END_GRACE};
use crate::tracker;
use crate::v4state;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// How v4 grace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum V4End {
    /// It had ended before the wait began (no client in the tracker: grace was skipped).
    AlreadyEnded,
    /// The kernel ended it: every client sent RECLAIM_COMPLETE (or its own timer ran out).
    Kernel,
    /// We ended it at the deadline.
    Deadline,
}

#[derive(Debug, Clone, Serialize)]
pub struct V4WaitReport {
    /// `None`: still in grace at the deadline and told not to end it.
    pub ended: Option<V4End>,
    pub ended_after_ms: Option<u64>,
    /// The clients the ledger recorded on the old server.
    pub expected: Vec<String>,
    /// Of those, the ones connected to this server when the wait ended.
    pub reconnected: Vec<String>,
    pub never_reconnected: Vec<String>,
    /// From the tracker (clients in the recovery table but not in the current one, i.e.
    /// without RECLAIM_COMPLETE), when it was given and grace did not end by itself.
    pub not_completed: Option<Vec<String>>,
}

/// Whether v4 grace has ended in this network namespace; `None` without the knob or when it
/// holds neither `Y` nor `N` (the kernel always answers one of them).
pub fn ended(proc: &ProcRoot) -> Result<Option<bool>, KnobError> {
    match proc.read(V4_END_GRACE) {
        Ok(t) => Ok(match t.trim() {
            "Y" => Some(true),
            "N" => Some(false),
            _ => None,
        }),
        Err(KnobError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until the kernel ends v4 grace or `deadline`; at the deadline ends it when
/// `end_at_deadline`.
pub fn wait(
    proc: &ProcRoot,
    expected: &[String],
    deadline: Instant,
    end_at_deadline: bool,
    tracker_db: Option<&Path>,
    poll: Duration,
) -> Result<V4WaitReport, KnobError> {
    let start = Instant::now();
    let mut ended_by = None;
    if ended(proc)? == Some(true) {
        ended_by = Some(V4End::AlreadyEnded);
    }
    while ended_by.is_none() {
        // Without a readable knob (`None`) only the deadline ends the wait.
        if ended(proc)? == Some(true) {
            ended_by = Some(V4End::Kernel);
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
    let connected: Vec<String> = v4state::read_clients(proc)
        .map(|cs| cs.into_iter().map(|c| c.info.name).collect())
        .unwrap_or_default();
    let (reconnected, never_reconnected): (Vec<String>, Vec<String>) = expected
        .iter()
        .cloned()
        .partition(|n| connected.contains(n));
    let not_completed = match (ended_by, tracker_db) {
        (None, Some(db)) => tracker::reclaim_progress(db)
            .ok()
            .map(|p| p.not_completed()),
        _ => None,
    };
    if ended_by.is_none() && end_at_deadline {
        for n in never_reconnected.iter() {
            tracing::warn!("NFSv4 client {n} never reconnected before the deadline");
        }
        if let Some(nc) = &not_completed {
            tracing::warn!("NFSv4 clients without RECLAIM_COMPLETE at the deadline: {nc:?}");
        }
        proc.write(V4_END_GRACE, "Y\n")?;
        ended_by = Some(V4End::Deadline);
    }
    Ok(V4WaitReport {
        ended: ended_by,
        ended_after_ms: ended_by.map(|_| start.elapsed().as_millis() as u64),
        expected: expected.to_vec(),
        reconnected,
        never_reconnected,
        not_completed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_proc::FakeProc;
    use std::fs;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kernel_ending_grace_is_waited_for_and_not_forced() {
        let t = FakeProc::running(8).build();
        fs::write(t.path().join(V4_END_GRACE), "N\n").unwrap();
        let p = ProcRoot::new(t.path());
        let path = t.path().join(V4_END_GRACE);
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            fs::write(path, "Y\n").unwrap();
        });
        let r = wait(
            &p,
            &names(&["c"]),
            Instant::now() + Duration::from_secs(5),
            true,
            None,
            Duration::from_millis(20),
        )
        .unwrap();
        h.join().unwrap();
        assert_eq!(r.ended, Some(V4End::Kernel));
        assert!(r.ended_after_ms.unwrap() >= 150);
        assert_eq!(r.never_reconnected, ["c"]);
    }

    #[test]
    fn deadline_ends_grace_and_names_the_missing_clients() {
        let t = FakeProc::running(8).build();
        fs::write(t.path().join(V4_END_GRACE), "N\n").unwrap();
        let c = t.path().join(v4state::CLIENTS_DIR).join("1");
        fs::create_dir_all(&c).unwrap();
        fs::write(
            c.join("info"),
            "clientid: 0x1\naddress: \"198.18.0.3:1\"\nname: \"back\"\nminor version: 1\n",
        )
        .unwrap();
        fs::write(c.join("states"), "").unwrap();
        let p = ProcRoot::new(t.path());
        let r = wait(
            &p,
            &names(&["back", "gone"]),
            Instant::now() + Duration::from_millis(100),
            true,
            None,
            Duration::from_millis(20),
        )
        .unwrap();
        assert_eq!(r.ended, Some(V4End::Deadline));
        assert_eq!(r.reconnected, ["back"]);
        assert_eq!(r.never_reconnected, ["gone"]);
        assert_eq!(
            fs::read_to_string(t.path().join(V4_END_GRACE)).unwrap(),
            "Y\n"
        );
        // Told not to end it: left alone.
        fs::write(t.path().join(V4_END_GRACE), "N\n").unwrap();
        let r = wait(&p, &[], Instant::now(), false, None, Duration::ZERO).unwrap();
        assert_eq!(r.ended, None);
        assert_eq!(
            fs::read_to_string(t.path().join(V4_END_GRACE)).unwrap(),
            "N\n"
        );
    }

    #[test]
    fn grace_already_over_is_reported_as_such() {
        let t = FakeProc::running(8).build();
        fs::write(t.path().join(V4_END_GRACE), "Y\n").unwrap();
        let r = wait(
            &ProcRoot::new(t.path()),
            &[],
            Instant::now(),
            true,
            None,
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(r.ended, Some(V4End::AlreadyEnded));
    }
}
