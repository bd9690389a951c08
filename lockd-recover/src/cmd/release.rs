//! `lockd-recover release`: release NLM locks on the old server and verify.

use super::Ctx;
use crate::cli::ReleaseArgs;
use crate::error::{Error, Exit};
use lockd_recover::release::{self, ReleaseMethod};

pub fn run(a: &ReleaseArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let methods = match a.method {
        Some(m) => vec![m],
        None => {
            let mut v = Vec::new();
            if a.ip.is_some() {
                v.push(ReleaseMethod::UnlockIp);
            }
            if a.fs.is_some() {
                v.push(ReleaseMethod::UnlockFs);
            }
            v
        }
    };
    if a.fs.is_none() && !a.no_verify {
        return Err(Error::UnverifiableRelease);
    }
    let r = release::release(&ctx.proc, a.ip, a.fs.as_deref(), &methods, a.settle)?;
    ctx.out.emit(&r, |w| {
        for (p, v) in &r.written {
            writeln!(w, "wrote {:?} to {}", v.trim_end(), p.display())?;
        }
        if let Some(pid) = r.signalled_pid {
            writeln!(w, "sent SIGKILL to lockd thread {pid}")?;
        }
        match &r.verified_fs {
            Some(f) => writeln!(w, "verified: no lock left on {}", f.display()),
            None => writeln!(w, "not verified (--no-verify)"),
        }
    })?;
    Ok(Exit::Ok)
}
