//! What the edit subcommands (`enable`, `disable`, `interval`, `clear`) share: how long the
//! claimed block is watched, and how an edit's result is printed.

use crate::error::Error;
use crate::exit::Outcome;
use crate::output::{print_json, print_result};
use libmmp::edit::{EditError, EditReport, Settle, CLAIM_SETTLE};
use serde::Serialize;
use std::path::Path;

/// `--full-wait`: the kernel's full wait; otherwise the short watch after our claim.
pub fn settle(full_wait: bool) -> Settle {
    if full_wait {
        Settle::Full
    } else {
        Settle::For(CLAIM_SETTLE)
    }
}

/// `--json` output of an edit.
#[derive(Serialize)]
struct EditJson<'a> {
    ok: bool,
    exit_code: u8,
    message: String,
    #[serde(flatten)]
    report: &'a EditReport,
}

/// `--json` output of a refused or failed edit.
#[derive(Serialize)]
struct RefusalJson<'a> {
    ok: bool,
    action: &'a str,
    device: String,
    changed: bool,
    reason: &'static str,
    exit_code: u8,
    message: String,
}

/// Print how an edit ended (`describe` words a success); a refusal or failure is returned as
/// the error.
pub fn finish_edit(
    action: &str,
    path: &Path,
    json: bool,
    result: Result<EditReport, EditError>,
    describe: impl FnOnce(&EditReport) -> String,
) -> Result<Outcome, Error> {
    match result {
        Ok(r) => {
            let done = EditJson {
                ok: true,
                exit_code: Outcome::Done.exit_code(),
                message: describe(&r),
                report: &r,
            };
            print_result(json, &done, true, &done.message)?;
            Ok(Outcome::Done)
        }
        Err(e) => {
            let (reason, message) = (e.reason(), e.to_string());
            let err = Error::Edit(e);
            if json {
                print_json(&RefusalJson {
                    ok: false,
                    action,
                    device: path.display().to_string(),
                    changed: false,
                    reason,
                    exit_code: err.outcome().exit_code(),
                    message,
                })?;
            }
            // `main` prints the message on stderr and exits with the code above.
            Err(err)
        }
    }
}
