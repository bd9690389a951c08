//! Setting and ending the NLM and NFSv4 grace periods (`fs/lockd/procfs.c`,
//! `fs/lockd/svc.c`, `fs/nfsd/nfsctl.c`).

use crate::knobs::{
    KnobError, ProcRoot, NFSD_THREADS, NLM_END_GRACE, NLM_GRACE_PERIOD, NLM_TIMEOUT, V4_END_GRACE,
    V4_GRACE_TIME, V4_LEASE_TIME,
};
use serde::Serialize;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GraceError {
    #[error(transparent)]
    Knob(#[from] KnobError),
    #[error("nfsd is running ({threads} threads in {path}): grace and lease times can only be set while nfsd is stopped; set them before starting nfsd (or stop it with rpc.nfsd 0)")]
    NfsdRunning { threads: u64, path: PathBuf },
    #[error("{what} {value} is out of range {min}..={max} ({why})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
        why: &'static str,
    },
    #[error(
        "neither {nlm} nor {v4} exists: no lock manager to end grace for (is nfsd/lockd loaded?)"
    )]
    NoGraceKnob { nlm: PathBuf, v4: PathBuf },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GraceSettings {
    pub nlm_grace_period: Option<u64>,
    pub v4_grace: Option<u64>,
    pub v4_lease: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraceSetReport {
    pub written: Vec<(PathBuf, String)>,
    /// lockd grace that will apply: `roundup(nlm_grace_period, nlm_timeout)`, or
    /// `5 * nlm_timeout` when the period is 0 (`get_lockd_grace_period()`).
    pub effective_nlm_grace: Option<u64>,
    pub warnings: Vec<String>,
}

fn check_range(
    what: &'static str,
    v: u64,
    min: u64,
    max: u64,
    why: &'static str,
) -> Result<(), GraceError> {
    if v < min || v > max {
        return Err(GraceError::OutOfRange {
            what,
            value: v,
            min,
            max,
            why,
        });
    }
    Ok(())
}

pub fn effective_nlm_grace(period: u64, timeout: u64) -> u64 {
    if period == 0 {
        timeout * 5
    } else if timeout == 0 {
        period
    } else {
        period.div_ceil(timeout) * timeout
    }
}

/// The kernel's limits for each value given.
fn check_ranges(s: &GraceSettings) -> Result<(), GraceError> {
    if let Some(v) = s.nlm_grace_period {
        check_range(
            "--nlm",
            v,
            0,
            240,
            "nlm_grace_period sysctl limits, fs/lockd/svc.c",
        )?;
    }
    if let Some(v) = s.v4_grace {
        check_range(
            "--v4",
            v,
            10,
            3600,
            "__nfsd4_write_time(), fs/nfsd/nfsctl.c",
        )?;
    }
    if let Some(v) = s.v4_lease {
        check_range(
            "--lease",
            v,
            10,
            3600,
            "__nfsd4_write_time(), fs/nfsd/nfsctl.c",
        )?;
    }
    Ok(())
}

/// nfsd must be stopped; without the nfsd filesystem that is fine unless a v4 time is set.
fn check_nfsd_stopped(proc: &ProcRoot, needs_nfsd: bool) -> Result<(), GraceError> {
    match proc.nfsd_threads() {
        Ok(0) => Ok(()),
        Ok(threads) => Err(GraceError::NfsdRunning {
            threads,
            path: proc.path(NFSD_THREADS),
        }),
        Err(KnobError::Missing { .. }) if !needs_nfsd => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets grace/lease times. Refuses while nfsd runs: the v4 knobs return EBUSY then, and
/// setting only the NLM half would leave the two grace periods inconsistent.
pub fn set(proc: &ProcRoot, s: &GraceSettings) -> Result<GraceSetReport, GraceError> {
    check_ranges(s)?;
    check_nfsd_stopped(proc, s.v4_grace.is_some() || s.v4_lease.is_some())?;
    let mut warnings = Vec::new();
    let lease = match s.v4_lease {
        Some(l) => Some(l),
        None if s.v4_grace.is_some() => proc.read_u64(V4_LEASE_TIME).ok(),
        None => None,
    };
    if let (Some(g), Some(l)) = (s.v4_grace, lease) {
        if g < l {
            warnings.push(format!(
                "v4 grace {g}s is shorter than the lease {l}s: clients may not notice the restart before grace ends"
            ));
        }
    }
    let mut written = Vec::new();
    // Lease first: nfsd derives other timers from it.
    for (rel, v) in [
        (V4_LEASE_TIME, s.v4_lease),
        (V4_GRACE_TIME, s.v4_grace),
        (NLM_GRACE_PERIOD, s.nlm_grace_period),
    ] {
        if let Some(v) = v {
            let text = format!("{v}\n");
            proc.write(rel, &text)?;
            written.push((proc.path(rel), text));
        }
    }
    let effective_nlm_grace = match s.nlm_grace_period {
        Some(p) => {
            let timeout = proc.read_u64(NLM_TIMEOUT).unwrap_or(10);
            let eff = effective_nlm_grace(p, timeout);
            if eff != p {
                warnings.push(format!(
                    "lockd rounds grace up to a multiple of nlm_timeout ({timeout}s): effective NLM grace is {eff}s"
                ));
            }
            Some(eff)
        }
        None => None,
    };
    Ok(GraceSetReport {
        written,
        effective_nlm_grace,
        warnings,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GraceWhich {
    /// lockd (NLM) grace: /proc/fs/lockd/nlm_end_grace
    Nlm,
    /// NFSv4 grace: /proc/fs/nfsd/v4_end_grace
    V4,
    /// both (grace is shared per network namespace: NLM non-reclaim locks wait for both)
    Both,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraceEndReport {
    pub ended: Vec<PathBuf>,
    pub missing: Vec<PathBuf>,
}

/// Ends grace by writing `Y` to the end-grace knobs that exist. Fails if none exists.
pub fn end(proc: &ProcRoot, which: GraceWhich) -> Result<GraceEndReport, GraceError> {
    let mut rep = GraceEndReport {
        ended: Vec::new(),
        missing: Vec::new(),
    };
    let knobs: &[&str] = match which {
        GraceWhich::Nlm => &[NLM_END_GRACE],
        GraceWhich::V4 => &[V4_END_GRACE],
        GraceWhich::Both => &[NLM_END_GRACE, V4_END_GRACE],
    };
    for rel in knobs {
        match proc.write(rel, "Y\n") {
            Ok(()) => rep.ended.push(proc.path(rel)),
            Err(KnobError::Missing { path, .. }) => rep.missing.push(path),
            Err(e) => return Err(e.into()),
        }
    }
    if rep.ended.is_empty() {
        return Err(GraceError::NoGraceKnob {
            nlm: proc.path(NLM_END_GRACE),
            v4: proc.path(V4_END_GRACE),
        });
    }
    Ok(rep)
}

#[derive(Debug, Clone, Serialize)]
pub struct GraceStatus {
    /// `Y` when lockd's grace has ended (the knob reads `Y`/`N`).
    pub nlm_end_grace: Option<String>,
    pub v4_end_grace: Option<String>,
    pub nlm_grace_period: Option<u64>,
    pub nlm_timeout: Option<u64>,
    pub v4_grace: Option<u64>,
    pub v4_lease: Option<u64>,
    pub nfsd_threads: Option<u64>,
}

pub fn status(proc: &ProcRoot) -> GraceStatus {
    let s = |rel| proc.read(rel).ok().map(|t| t.trim().to_owned());
    let n = |rel| proc.read_u64(rel).ok();
    GraceStatus {
        nlm_end_grace: s(NLM_END_GRACE),
        v4_end_grace: s(V4_END_GRACE),
        nlm_grace_period: n(NLM_GRACE_PERIOD),
        nlm_timeout: n(NLM_TIMEOUT),
        v4_grace: n(V4_GRACE_TIME),
        v4_lease: n(V4_LEASE_TIME),
        nfsd_threads: n(NFSD_THREADS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knobs::tests::{fake_proc, read};
    use std::fs;

    #[test]
    fn grace_set_writes_knobs_when_nfsd_is_stopped() {
        let t = fake_proc("6.18.0\n", Some(0), "");
        let p = ProcRoot::new(t.path());
        let r = set(
            &p,
            &GraceSettings {
                nlm_grace_period: Some(15),
                v4_grace: Some(15),
                v4_lease: Some(10),
            },
        )
        .unwrap();
        assert_eq!(read(&t, NLM_GRACE_PERIOD), "15\n");
        assert_eq!(read(&t, V4_GRACE_TIME), "15\n");
        assert_eq!(read(&t, V4_LEASE_TIME), "10\n");
        assert_eq!(r.effective_nlm_grace, Some(20), "rounded up to nlm_timeout");
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn grace_set_is_refused_while_nfsd_runs() {
        let t = fake_proc("6.18.0\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let e = set(
            &p,
            &GraceSettings {
                nlm_grace_period: Some(15),
                v4_grace: Some(15),
                v4_lease: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, GraceError::NfsdRunning { threads: 8, .. }));
        assert!(e.to_string().contains("while nfsd is stopped"));
        assert_eq!(read(&t, NLM_GRACE_PERIOD), "", "nothing written");
        assert_eq!(read(&t, V4_GRACE_TIME), "");
    }

    #[test]
    fn grace_set_range_checks() {
        let t = fake_proc("6.18.0\n", Some(0), "");
        let p = ProcRoot::new(t.path());
        for s in [
            GraceSettings {
                nlm_grace_period: Some(241),
                ..Default::default()
            },
            GraceSettings {
                v4_grace: Some(9),
                ..Default::default()
            },
            GraceSettings {
                v4_lease: Some(3601),
                ..Default::default()
            },
        ] {
            assert!(matches!(set(&p, &s), Err(GraceError::OutOfRange { .. })));
        }
        assert_eq!(read(&t, NLM_GRACE_PERIOD), "");
    }

    #[test]
    fn grace_end_writes_y_to_both_knobs() {
        let t = fake_proc("6.18.0\n", Some(8), "");
        let p = ProcRoot::new(t.path());
        let r = end(&p, GraceWhich::Both).unwrap();
        assert_eq!(r.ended.len(), 2);
        assert_eq!(read(&t, NLM_END_GRACE), "Y\n");
        assert_eq!(read(&t, V4_END_GRACE), "Y\n");
    }

    #[test]
    fn grace_end_with_only_lockd_and_with_nothing() {
        let t = fake_proc("6.18.0\n", None, "");
        fs::remove_file(t.path().join(V4_END_GRACE)).unwrap();
        let p = ProcRoot::new(t.path());
        let r = end(&p, GraceWhich::Both).unwrap();
        assert_eq!((r.ended.len(), r.missing.len()), (1, 1));
        fs::remove_file(t.path().join(NLM_END_GRACE)).unwrap();
        assert!(matches!(
            end(&p, GraceWhich::Both),
            Err(GraceError::NoGraceKnob { .. })
        ));
    }

    #[test]
    fn effective_grace_matches_get_lockd_grace_period() {
        assert_eq!(effective_nlm_grace(0, 10), 50);
        assert_eq!(effective_nlm_grace(15, 10), 20);
        assert_eq!(effective_nlm_grace(30, 10), 30);
    }
}
