//! Running programs from tests: the output, or a panic that shows what went wrong.

use crate::Error;
use std::process::{Command, Output};

/// Run to completion; panics only if the program cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run to completion and insist on exit 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        text(&out)
    );
    out
}

/// `sh -c SCRIPT`, which must succeed.
pub fn sh(script: &str) -> Output {
    run_ok(Command::new("sh").args(["-c", script]))
}

/// Run a setup step: its trimmed stdout, or an error naming the command and its stderr.
pub fn try_run(cmd: &mut Command) -> Result<String, Error> {
    let name = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| Error::Spawn {
        cmd: name.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Failed {
            cmd: name,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// stdout followed by stderr, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Exit code, stdout and stderr, labelled, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether a kernel log line (`dmesg`) contains both `needle` and `also`.
pub fn kernel_log_has(needle: &str, also: &str) -> bool {
    let out = run(&mut Command::new("dmesg"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains(needle) && l.contains(also))
}
