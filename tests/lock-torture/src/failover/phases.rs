//! The supervisor's run, step by step: start the holder and wait until it holds every lock,
//! start the probe, watch both until the duration ends or a signal arrives (restarting a
//! holder that dies), ask the probe for a final round, then stop the holder and judge.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::events::{
    HelperParams, HolderEvent, IoResult, ProbeEvent, ProbeMode, ProbeResult, ProbeState,
};
use super::plan::{prepare_targets, validate};
use super::status::{write_status, Snapshot};
use super::verdict::{judge_probe, record_loss, FailoverReport, Holders, LockState};
use super::{FailoverError, FailoverOptions};
use crate::lock::LockKind;
use crate::stats::ErrnoCounts;
use crate::sys;

#[derive(Clone, Copy)]
enum Source {
    Holder(u32),
    Probe,
}

struct Msg {
    source: Source,
    /// None: end of the helper's output (it exited).
    line: Option<String>,
    at: Instant,
}

struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Helper {
    fn spawn(
        what: &'static str,
        sub: &str,
        params: &HelperParams,
        source: Source,
        tx: Sender<Msg>,
    ) -> Result<Helper, FailoverError> {
        let exe =
            std::env::current_exe().map_err(|source| FailoverError::Spawn { what, source })?;
        let json =
            serde_json::to_string(params).map_err(|e| FailoverError::Options(e.to_string()))?;
        let mut child = Command::new(exe)
            .arg(sub)
            .arg("--params")
            .arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| FailoverError::Spawn { what, source })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let src = source;
                    if tx
                        .send(Msg {
                            source: src,
                            line: Some(line),
                            at: Instant::now(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let _ = tx.send(Msg {
                source,
                line: None,
                at: Instant::now(),
            });
        });
        Ok(Helper { child, stdin })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tell(&mut self, cmd: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{cmd}").and_then(|()| s.flush());
        }
    }

    /// Close stdin (= stop), wait up to `t`, then SIGKILL. Returns how it ended.
    fn finish(mut self, t: Duration) -> String {
        self.stdin = None;
        let end = Instant::now() + t;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return st.to_string(),
                Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return format!("killed after not stopping within {t:?}");
                }
            }
        }
    }
}

/// Why the watch ended.
#[derive(Clone, Copy)]
enum Stop {
    Signal,
    Duration,
    /// Every helper's output channel closed (cannot happen while the supervisor holds a sender).
    Error,
}

impl Stop {
    /// The report's `stopped_by`.
    fn label(self) -> &'static str {
        match self {
            Stop::Signal => "SIGINT/SIGTERM",
            Stop::Duration => "duration",
            Stop::Error => "error",
        }
    }
}

/// Run failover mode until the duration ends or SIGINT/SIGTERM arrives.
pub fn run(opts: &FailoverOptions, fs_type: &str) -> Result<FailoverReport, FailoverError> {
    validate(opts)?;
    let targets = prepare_targets(opts)?;
    sys::install_stop_handlers().map_err(FailoverError::Signals)?;
    let params = HelperParams {
        kind: opts.kind,
        targets,
        interval_ms: opts.interval.as_millis() as u64,
        probe: opts.probe,
    };
    let mut sup = Supervisor::new(opts, params, fs_type);
    if opts.probe_only {
        // The locks are held elsewhere (another client of the same export): every range is
        // presumed held, and whatever the probe can take is reported.
        sup.state = vec![LockState::Held; sup.n];
    } else {
        sup.start_holder()?;
    }
    sup.start_probe()?;
    let stop = sup.watch()?;
    let confirmed = sup.final_probe_round();
    Ok(sup.finish(stop, confirmed.as_deref()))
}

/// Everything the supervisor tracks while it runs.
struct Supervisor<'a> {
    opts: &'a FailoverOptions,
    params: HelperParams,
    /// The number of locks.
    n: usize,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    start: Instant,
    /// The live holder's generation: 1, then one more for each restart.
    generation: u32,
    holder: Option<Helper>,
    /// Every holder pid so far.
    holder_pids: BTreeSet<i64>,
    probe: Option<Helper>,
    state: Vec<LockState>,
    /// When each lock was last granted: probe checks made before that say nothing about it.
    acquired_at: Vec<u64>,
    rep: FailoverReport,
    /// When the holder last reported a round in which every write succeeded.
    last_ok_round: Instant,
}

impl<'a> Supervisor<'a> {
    fn new(opts: &'a FailoverOptions, params: HelperParams, fs_type: &str) -> Supervisor<'a> {
        let n = params.targets.len();
        let (tx, rx) = mpsc::channel::<Msg>();
        let rep = empty_report(opts, &params, fs_type);
        Supervisor {
            opts,
            params,
            n,
            tx,
            rx,
            start: Instant::now(),
            generation: 1,
            holder: None,
            holder_pids: BTreeSet::new(),
            probe: None,
            state: vec![LockState::Acquiring; n],
            acquired_at: vec![0u64; n],
            rep,
            last_ok_round: Instant::now(),
        }
    }

    fn spawn_holder(&self) -> Result<Helper, FailoverError> {
        Helper::spawn(
            "holder",
            "__holder",
            &self.params,
            Source::Holder(self.generation),
            self.tx.clone(),
        )
    }

    /// Start the first holder and wait for it to take every lock: anything else is a setup
    /// error.
    fn start_holder(&mut self) -> Result<(), FailoverError> {
        let h = self.spawn_holder()?;
        self.holder_pids.insert(i64::from(h.pid()));
        self.holder = Some(h);
        let ready_timeout = Duration::from_secs(30);
        loop {
            let msg = match self.rx.recv_timeout(ready_timeout) {
                Ok(m) => m,
                Err(_) => {
                    if let Some(h) = self.holder.take() {
                        h.finish(Duration::ZERO);
                    }
                    return Err(FailoverError::NotReady(ready_timeout));
                }
            };
            let Some(line) = msg.line else {
                let how = self
                    .holder
                    .take()
                    .map(|h| h.finish(Duration::from_secs(1)))
                    .unwrap_or_default();
                return Err(FailoverError::Spawn {
                    what: "holder",
                    source: io::Error::other(format!("exited before taking its locks ({how})")),
                });
            };
            match serde_json::from_str::<HolderEvent>(&line) {
                Ok(HolderEvent::Acquired { lock, mono_ns }) => {
                    if let Some(s) = self.state.get_mut(lock as usize) {
                        *s = LockState::Held;
                        self.acquired_at[lock as usize] = mono_ns;
                    }
                }
                Ok(HolderEvent::AcquireFailed { lock, errno }) => {
                    if let Some(h) = self.holder.take() {
                        h.finish(Duration::from_secs(5));
                    }
                    let t = &self.params.targets[lock as usize];
                    return Err(FailoverError::Acquire {
                        lock,
                        path: t.path.clone(),
                        range: t.range,
                        errno,
                    });
                }
                Ok(HolderEvent::Ready { .. }) => break,
                Ok(_) => {}
                Err(e) => warn!("holder said something unreadable: {e}: {line}"),
            }
        }
        info!(
            "holder pid {} holds {} {} locks",
            self.holder.as_ref().map_or(0, Helper::pid),
            self.n,
            self.opts.kind
        );
        Ok(())
    }

    fn start_probe(&mut self) -> Result<(), FailoverError> {
        if self.opts.probe != ProbeMode::None {
            let probe_params = HelperParams {
                interval_ms: self.opts.probe_interval.as_millis() as u64,
                ..self.params.clone()
            };
            self.probe = Some(Helper::spawn(
                "probe",
                "__probe",
                &probe_params,
                Source::Probe,
                self.tx.clone(),
            )?);
        }
        Ok(())
    }

    /// Watch the helpers until the duration ends or a signal arrives, keeping the status file
    /// current. Fails only when a dead holder cannot be restarted.
    fn watch(&mut self) -> Result<Stop, FailoverError> {
        self.last_ok_round = Instant::now();
        let mut last_status = Instant::now() - self.opts.interval;
        let deadline = self.opts.duration.map(|d| self.start + d);
        loop {
            if sys::stop_requested() {
                return Ok(Stop::Signal);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Stop::Duration);
            }
            if let Some(path) = &self.opts.status_file {
                if last_status.elapsed() >= self.opts.interval.min(Duration::from_millis(500)) {
                    last_status = Instant::now();
                    write_status(path, &self.snapshot());
                }
            }
            let msg = match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(Stop::Error),
            };
            match (msg.source, msg.line) {
                (Source::Holder(g), Some(line)) if g == self.generation => {
                    self.on_holder_line(g, &line, msg.at)
                }
                (Source::Holder(g), None) if g == self.generation => self.on_holder_exit(g)?,
                (Source::Holder(_), _) => {} // an older generation's last words
                (Source::Probe, Some(line)) => match serde_json::from_str::<ProbeEvent>(&line) {
                    Ok(ProbeEvent::Round { results, .. }) => self.judge(&results),
                    Err(e) => warn!("probe said something unreadable: {e}: {line}"),
                },
                (Source::Probe, None) => {
                    let how = self
                        .probe
                        .take()
                        .map(|p| p.finish(Duration::from_secs(1)))
                        .unwrap_or_default();
                    warn!("the probe exited early ({how}); continuing without it");
                }
            }
        }
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            start: self.start,
            holder_pid: self.holder.as_ref().map(Helper::pid),
            generation: self.generation,
            probe_pid: self.probe.as_ref().map(Helper::pid),
            state: &self.state,
            lost: self.rep.locks_lost,
        }
    }

    /// A line from the live holder: a (re)grant, or a round of writes (received at `at`).
    fn on_holder_line(&mut self, generation: u32, line: &str, at: Instant) {
        match serde_json::from_str::<HolderEvent>(line) {
            Ok(HolderEvent::Acquired { lock, mono_ns }) => {
                if let Some(s) = self.state.get_mut(lock as usize) {
                    if *s == LockState::Lost {
                        info!("lock {lock} taken again by holder generation {generation}");
                    }
                    *s = LockState::Held;
                    self.acquired_at[lock as usize] = mono_ns;
                }
            }
            Ok(HolderEvent::Tick { results, .. }) => self.count_writes(&results, at),
            Ok(_) => {}
            Err(e) => warn!("holder said something unreadable: {e}: {line}"),
        }
    }

    /// Count a round of writes; a round in which every lock was written closes an I/O gap.
    fn count_writes(&mut self, results: &[IoResult], at: Instant) {
        let rep = &mut self.rep;
        let mut all_ok = !results.is_empty();
        for r in results {
            rep.longest_io_call_ms = rep.longest_io_call_ms.max(r.ms);
            match &r.errno {
                None => rep.writes_ok += 1,
                Some(e) => {
                    all_ok = false;
                    rep.write_errors.add(e, 1);
                }
            }
        }
        if all_ok && results.len() == self.n {
            let gap = at.duration_since(self.last_ok_round).as_secs_f64() * 1e3;
            rep.longest_io_gap_ms = rep.longest_io_gap_ms.max(gap);
            self.last_ok_round = at;
        }
    }

    /// The live holder died: every lock it held is gone with it. Restart it unless
    /// `--no-restart`.
    fn on_holder_exit(&mut self, generation: u32) -> Result<(), FailoverError> {
        let how = self
            .holder
            .take()
            .map(|h| h.finish(Duration::from_secs(1)))
            .unwrap_or_default();
        let at = self.start.elapsed().as_secs_f64();
        self.rep.holder_exits.push(format!(
            "holder generation {generation} exited at {at:.2} s: {how}"
        ));
        for i in 0..self.n {
            self.lose(i, format!("holder process exited ({how})"));
            self.state[i] = LockState::Lost;
        }
        if self.opts.restart {
            self.generation += 1;
            self.rep.holder_restarts += 1;
            let h = self.spawn_holder()?;
            self.holder_pids.insert(i64::from(h.pid()));
            info!("restarted the holder as pid {}", h.pid());
            self.holder = Some(h);
        }
        Ok(())
    }

    fn lose(&mut self, lock: usize, reason: String) {
        let at_s = self.start.elapsed().as_secs_f64();
        record_loss(&mut self.rep, &mut self.state, lock, reason, at_s);
    }

    /// Judge one probe round against what the supervisor knows about the holder.
    fn judge(&mut self, results: &[ProbeResult]) {
        self.rep.probe_rounds += 1;
        let start = self.start;
        let lose = |rep: &mut FailoverReport, state: &mut [LockState], i: usize, why: String| {
            record_loss(rep, state, i, why, start.elapsed().as_secs_f64())
        };
        judge_probe(
            &mut self.rep,
            &mut self.state,
            results,
            &Holders {
                kind: self.opts.kind,
                current_pid: self.holder.as_ref().map(|h| i64::from(h.pid())),
                pids: &self.holder_pids,
                acquired_at: &self.acquired_at,
            },
            &lose,
        );
    }

    /// Final check while the holder still holds everything: ask the probe for one last round
    /// and return, per lock, whether it found the lock held. `None` without a probe or when
    /// the round did not come back.
    fn final_probe_round(&mut self) -> Option<Vec<bool>> {
        let mut p = self.probe.take()?;
        p.tell("final");
        let mut confirmed: Option<Vec<bool>> = None;
        let end = Instant::now() + self.opts.probe_interval + Duration::from_secs(10);
        while confirmed.is_none() && Instant::now() < end {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg {
                    source: Source::Probe,
                    line: Some(line),
                    ..
                }) => {
                    if let Ok(ProbeEvent::Round {
                        results,
                        final_round,
                        ..
                    }) = serde_json::from_str::<ProbeEvent>(&line)
                    {
                        self.judge(&results);
                        if final_round {
                            let mut v = vec![false; self.n];
                            for r in &results {
                                if let Some(slot) = v.get_mut(r.lock as usize) {
                                    *slot = r.state == ProbeState::Held;
                                }
                            }
                            confirmed = Some(v);
                        }
                    }
                }
                Ok(Msg {
                    source: Source::Probe,
                    line: None,
                    ..
                }) => break,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let how = p.finish(Duration::from_secs(2));
        if confirmed.is_none() {
            warn!("the final probe round did not come back ({how})");
        }
        confirmed
    }

    /// Stop the holder, fill in the report's totals and verdict, write the last status.
    fn finish(mut self, stop: Stop, confirmed: Option<&[bool]>) -> FailoverReport {
        let rep = &mut self.rep;
        rep.longest_io_gap_ms = rep
            .longest_io_gap_ms
            .max(self.last_ok_round.elapsed().as_secs_f64() * 1e3);
        rep.locks_held_at_end = self
            .state
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                **s == LockState::Held
                    && match confirmed {
                        None => true,
                        Some(c) => c[*i],
                    }
            })
            .count() as u32;
        if let Some(mut h) = self.holder.take() {
            h.tell("stop");
            let how = h.finish(Duration::from_secs(10));
            info!("holder stopped: {how}");
        }
        let rep = &mut self.rep;
        rep.duration_s = self.start.elapsed().as_secs_f64();
        rep.stopped_by = stop.label().into();
        rep.enolck = rep.write_errors.get("ENOLCK");
        rep.eio = rep.write_errors.get("EIO");
        rep.decide();
        if let Some(path) = &self.opts.status_file {
            write_status(path, &self.snapshot());
        }
        self.rep
    }
}

/// The report before anything happened.
fn empty_report(opts: &FailoverOptions, params: &HelperParams, fs_type: &str) -> FailoverReport {
    FailoverReport {
        mode: "failover".into(),
        role: if opts.probe_only {
            "probe-only"
        } else {
            "holder"
        }
        .into(),
        path: params.targets[0].path.display().to_string(),
        fs_type: fs_type.into(),
        kind: opts.kind,
        probe: if opts.kind == LockKind::Flock && opts.probe == ProbeMode::Getlk {
            ProbeMode::Setlk
        } else {
            opts.probe
        },
        locks: params.targets.len() as u32,
        duration_s: 0.0,
        stopped_by: String::new(),
        locks_held_at_end: 0,
        locks_lost: 0,
        loss_events: Vec::new(),
        holder_restarts: 0,
        holder_exits: Vec::new(),
        writes_ok: 0,
        write_errors: ErrnoCounts::default(),
        enolck: 0,
        eio: 0,
        longest_io_call_ms: 0.0,
        longest_io_gap_ms: 0.0,
        conflicting_grants: 0,
        free_observations: 0,
        foreign_holder_observations: 0,
        probe_rounds: 0,
        probe_errors: ErrnoCounts::default(),
        probe_longest_ms: 0.0,
        verdict: String::new(),
    }
}
