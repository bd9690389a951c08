//! How one test of the suite fails.
//!
//! A test is a sequence of steps; the first step that does not behave as the test expects ends
//! it, and the error's message becomes the test's `detail` in the report. Most failures are
//! findings about the filesystem's locks ([`CaseError::Unexpected`]: the message says what was
//! expected and what happened, which is the result the suite exists to report, so it stays a
//! sentence); the others are the steps that could not be carried out at all.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use thiserror::Error;

use crate::lock::errno_name;
use crate::peer::PeerError;

#[derive(Debug, Error)]
pub enum CaseError {
    /// The filesystem's locks did not behave as the test expects.
    #[error("{0}")]
    Unexpected(String),
    /// Our own lock call (not the one under test) failed.
    #[error("{what}: {}", errno_name(*errno))]
    Call { what: String, errno: Errno },
    #[error("cannot {op} {}: {source}", path.display())]
    File {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// The peer could not be asked (closed, timed out, sent garbage).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A step failed after an earlier step set the scene: `context` says which scene.
    #[error("{context}: {source}")]
    Context {
        context: String,
        source: Box<CaseError>,
    },
}

impl CaseError {
    pub(super) fn call(what: impl Into<String>, errno: Errno) -> CaseError {
        CaseError::Call {
            what: what.into(),
            errno,
        }
    }

    pub(super) fn io(what: &'static str, source: io::Error) -> CaseError {
        CaseError::Io { what, source }
    }
}

/// A test's finding: what it expected and what happened instead.
pub(super) fn unexpected(message: impl Into<String>) -> CaseError {
    CaseError::Unexpected(message.into())
}

/// Say in which scene a step failed ("after closing a dup: ...").
pub(super) trait Context<T> {
    fn context(self, context: &str) -> Result<T, CaseError>;
}

impl<T> Context<T> for Result<T, CaseError> {
    fn context(self, context: &str) -> Result<T, CaseError> {
        self.map_err(|e| CaseError::Context {
            context: context.into(),
            source: Box::new(e),
        })
    }
}
