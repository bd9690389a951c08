//! What a simulated run is judged by: the holding intervals, the invariants, and a failure
//! report that names the world to replay.

use super::*;

impl Run {
    pub(super) fn fail(&self, what: &str) -> ! {
        let w = &self.w;
        let which = if w.what.is_empty() {
            format!(
                "case {} seed {} k {:?}: {what}\n  replay: replay(Case::{:?}, {}, {:?})",
                w.case as u8, w.seed, w.k, w.case, w.seed, w.k
            )
        } else {
            format!("{}: {what}", w.what)
        };
        let writes: Vec<Vec<_>> = self
            .logs
            .iter()
            .map(|l| {
                l.iter()
                    .filter(|o| o.write)
                    .map(|o| (o.at.as_millis(), o.ok, o.phase))
                    .collect()
            })
            .collect();
        panic!(
            "{which}\n  world: {w:?}\n  outcome: {:?}\n  intervals: {:?}\n  writes (ms, ok, phase) per actor: {writes:?}",
            self.out,
            self.intervals(),
        )
    }

    /// Each hold as (node, from, to): to the end of the run while it still held, else to its
    /// last successful write (a holder that stopped writes nothing more).
    pub(super) fn intervals(&self) -> Vec<(usize, Duration, Duration)> {
        self.out
            .holds
            .iter()
            .map(|h| {
                let last = self.logs[h.actor]
                    .iter()
                    .rev()
                    .find(|o| o.write && o.ok && o.at >= h.start)
                    .map_or(h.start, |o| o.at);
                let to = if h.end == HoldEnd::Alive {
                    self.end
                } else {
                    last
                };
                (h.actor, h.start, to)
            })
            .collect()
    }

    pub(super) fn wrote(&self, actor: usize, phase: impl Fn(Phase) -> bool) -> bool {
        self.logs[actor]
            .iter()
            .any(|o| o.write && o.ok && phase(o.phase))
    }

    pub(super) fn alive(&self, actor: usize) -> bool {
        self.out
            .holds
            .iter()
            .any(|h| h.actor == actor && h.end == HoldEnd::Alive)
    }

    /// Invariants 1 and 2.
    pub(super) fn check_invariants(&self) {
        self.check_one_holder_at_a_time();
        self.check_fresh_node();
    }

    /// Invariant 1: no two holding intervals of different nodes overlap.
    pub(super) fn check_one_holder_at_a_time(&self) {
        let iv = self.intervals();
        for (i, a) in iv.iter().enumerate() {
            for b in &iv[i + 1..] {
                if a.0 != b.0 && a.1 < b.2 && b.1 < a.2 {
                    self.fail(&format!("two holders at once: {a:?} and {b:?}"));
                }
            }
        }
    }

    /// Invariant 2: the fresh node wins, or a holder wrote while it watched.
    pub(super) fn check_fresh_node(&self) {
        let Some((d_start, d)) = &self.out.d else {
            self.fail("the fresh node never ran");
        };
        let others_alive = (0..D).any(|a| self.alive(a));
        match d {
            Ok(_) if others_alive => self.fail("the fresh node won while a holder is alive"),
            Ok(_) => {}
            Err(e) if e == "in_use" || e == "lost" => {
                let live = (0..D).any(|a| {
                    self.logs[a]
                        .iter()
                        .any(|o| o.write && o.ok && o.at >= *d_start)
                });
                if !live {
                    self.fail("the fresh node was refused though nobody wrote while it watched");
                }
            }
            Err(e) => self.fail(&format!(
                "the fresh node was refused with '{e}': needs a human"
            )),
        }
    }

    /// One line per kind of outcome, for the statistics.
    pub(super) fn signature(&self) -> String {
        let r = |x: &Option<Result<(), String>>| match x {
            None => "-".to_string(),
            Some(Ok(())) => "ok".into(),
            Some(Err(e)) => e.clone(),
        };
        let path = |x: &Option<Result<RollbackPath, String>>| match x {
            None => "-".to_string(),
            Some(Ok(p)) => p.name().into(),
            Some(Err(e)) => e.clone(),
        };
        let d = match &self.out.d {
            Some((_, Ok(_))) => "ok".to_string(),
            Some((_, Err(e))) => e.clone(),
            None => "-".into(),
        };
        let lapsed = if self.out.holds.iter().any(|h| h.end == HoldEnd::Lapsed) {
            " (a kmmpd lapsed)"
        } else {
            ""
        };
        format!(
            "offer={} b_claim={} confirm={} rollback={} cancel={} c={} d={}{lapsed}",
            r(&self.out.offer),
            r(&self.out.b_claim),
            r(&self.out.confirm.as_ref().map(|c| c.1.clone())),
            path(&self.out.rollback),
            path(&self.out.cancel),
            r(&self.out.c_claim),
            d
        )
    }
}
