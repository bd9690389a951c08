//! `lockd-recover grace set|end|status`.

use super::Ctx;
use crate::cli::{GraceCmd, GraceEndArgs, GraceSetArgs};
use crate::error::{Error, Exit};
use lockd_recover::grace::{self, GraceSettings};

pub fn run(c: &GraceCmd, ctx: &Ctx) -> Result<Exit, Error> {
    match c {
        GraceCmd::Set(a) => set(a, ctx),
        GraceCmd::End(a) => end(a, ctx),
        GraceCmd::Status => {
            let s = grace::status(&ctx.proc);
            ctx.out.emit(&s, |w| writeln!(w, "{s:#?}"))?;
            Ok(Exit::Ok)
        }
    }
}

fn set(a: &GraceSetArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let r = grace::set(
        &ctx.proc,
        &GraceSettings {
            nlm_grace_period: a.nlm,
            v4_grace: a.v4,
            v4_lease: a.lease,
        },
    )?;
    for warn in &r.warnings {
        tracing::warn!("{warn}");
    }
    ctx.out.emit(&r, |w| {
        for (p, v) in &r.written {
            writeln!(w, "wrote {} to {}", v.trim_end(), p.display())?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

fn end(a: &GraceEndArgs, ctx: &Ctx) -> Result<Exit, Error> {
    let r = grace::end(&ctx.proc, a.which)?;
    ctx.out.emit(&r, |w| {
        for p in &r.ended {
            writeln!(w, "ended grace: {}", p.display())?;
        }
        for p in &r.missing {
            writeln!(w, "not present: {}", p.display())?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}
