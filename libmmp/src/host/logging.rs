//! The one logging setup of every binary (mmp-tool, mmpd, lockd-recover, lock-torture):
//! `tracing` to stderr, the level chosen by `-v`, `RUST_LOG` taking precedence, colours only on
//! a terminal, and no timestamps under systemd (the journal adds its own).

use std::io::IsTerminal;

/// The level of each `-v` count for one binary: `levels[0]` without `-v`, the last one for
/// `-vv...` beyond the list. `only_crate` limits the default to that crate's own events (a
/// library's debug lines stay out unless `RUST_LOG` asks for them).
#[derive(Debug, Clone, Copy)]
pub struct LogDefaults {
    pub levels: &'static [&'static str],
    pub only_crate: Option<&'static str>,
}

impl LogDefaults {
    /// The filter directive for `verbose` `-v` flags.
    pub fn directive(&self, verbose: u8) -> String {
        let last = self.levels.len().saturating_sub(1);
        let level = self
            .levels
            .get(usize::from(verbose).min(last))
            .copied()
            .unwrap_or("warn");
        match self.only_crate {
            Some(krate) => format!("{krate}={level}"),
            None => level.to_string(),
        }
    }
}

/// Install the subscriber. A second call (tests) leaves the first one in place.
pub fn init(defaults: LogDefaults, verbose: u8) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(defaults.directive(verbose)));
    // Under systemd stderr goes to the journal (JOURNAL_STREAM is set), which timestamps lines.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_picks_a_level_and_saturates() {
        let d = LogDefaults {
            levels: &["warn", "info", "debug"],
            only_crate: None,
        };
        assert_eq!(d.directive(0), "warn");
        assert_eq!(d.directive(2), "debug");
        assert_eq!(d.directive(9), "debug");
        let d = LogDefaults {
            levels: &["warn", "info"],
            only_crate: Some("lockd_recover"),
        };
        assert_eq!(d.directive(1), "lockd_recover=info");
    }
}
