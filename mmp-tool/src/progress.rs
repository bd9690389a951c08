//! The countdown on stderr while a subcommand watches the MMP block.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

/// One line on stderr, redrawn when its text changes, shown only when stderr is a terminal and
/// the user did not ask for quiet (`--quiet`, or `--json` where a command says so); erased
/// when dropped. Scripts and logs never see it.
pub struct Countdown {
    tty: bool,
    shown: bool,
    last: String,
}

impl Countdown {
    pub fn new(quiet: bool) -> Self {
        Countdown {
            tty: !quiet && io::stderr().is_terminal(),
            shown: false,
            last: String::new(),
        }
    }

    /// `mmp-tool: {what} for {total} s: {left} s left`.
    pub fn tick(&mut self, what: &str, elapsed: Duration, total: Duration) {
        let left = seconds_left(elapsed, total);
        self.show(|| format!("{what} for {} s: {left:>3} s left ", total.as_secs()));
    }

    /// Show `mmp-tool: {line}` unless it is what is shown already.
    pub fn show(&mut self, line: impl FnOnce() -> String) {
        if !self.tty {
            return;
        }
        let line = line();
        if line == self.last {
            return;
        }
        let mut e = io::stderr().lock();
        let _ = write!(e, "\r\x1b[Kmmp-tool: {line}");
        let _ = e.flush();
        self.last = line;
        self.shown = true;
    }
}

impl Drop for Countdown {
    fn drop(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

/// Whole seconds left of a wait, rounded up: the countdown reaches 0 when the wait ends.
pub fn seconds_left(elapsed: Duration, total: Duration) -> u64 {
    let ms = total.saturating_sub(elapsed).as_millis().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}
