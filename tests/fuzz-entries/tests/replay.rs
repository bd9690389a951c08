//! Every kept fuzz input (`fuzz/corpus/<target>/*`: the seeds and what libFuzzer found;
//! `fuzz/regressions/<target>/*`: the crashes and timeouts found, after their fix) through the
//! same entry point as its fuzz target. Stable Rust, no libFuzzer: this is how CI keeps a fixed
//! crash fixed. `scripts/fuzz.sh` does the fuzzing (FUZZING.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A debug build runs an input far slower than the fuzzer's release build; past this one
/// input is a likely timeout (libFuzzer's limit is 1 s).
const SLOW: Duration = Duration::from_secs(5);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir` (none if it does not exist), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.expect("read a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Subdirectory names of `dir`.
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        e.path()
            .is_dir()
            .then(|| e.file_name().to_string_lossy().into_owned())
    })
    .collect()
}

#[test]
fn every_kept_fuzz_input_replays_without_a_panic() {
    let fuzz = fuzz_dir();
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, entry) in fuzz_entries::TARGETS {
        let files: Vec<PathBuf> = ["corpus", "regressions"]
            .iter()
            .flat_map(|kind| inputs(&fuzz.join(kind).join(name)))
            .collect();
        let t = Instant::now();
        let mut slowest = (Duration::ZERO, PathBuf::new());
        for f in &files {
            let data = std::fs::read(f).expect("read a fuzz input");
            let one = Instant::now();
            if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
                failures.push(format!("{name}: {} panics", f.display()));
            }
            let took = one.elapsed();
            if took > slowest.0 {
                slowest = (took, f.clone());
            }
        }
        if slowest.0 > SLOW {
            failures.push(format!(
                "{name}: {} takes {:?}",
                slowest.1.display(),
                slowest.0
            ));
        }
        eprintln!(
            "{name}: {} inputs in {:.2} s",
            files.len(),
            t.elapsed().as_secs_f64()
        );
        total += files.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total > 0, "no fuzz inputs found under {}", fuzz.display());
}

/// A corpus with no entry point would never be replayed; a target with no corpus starts from
/// nothing. Targets other work adds to fuzz/ without an entry here are named, not failed.
#[test]
fn every_target_has_an_entry_and_a_seed_corpus() {
    let fuzz = fuzz_dir();
    for kind in ["corpus", "regressions"] {
        for dir in subdirs(&fuzz.join(kind)) {
            assert!(
                fuzz_entries::entry(&dir).is_some(),
                "fuzz/{kind}/{dir} has no entry in tests/fuzz-entries (fuzz_entries::TARGETS)"
            );
        }
    }
    for (name, _) in fuzz_entries::TARGETS {
        assert!(
            !inputs(&fuzz.join("corpus").join(name)).is_empty(),
            "fuzz/corpus/{name} is empty: check in seeds (scripts/fuzz-seeds.sh)"
        );
    }
    for f in inputs(&fuzz.join("fuzz_targets")) {
        let name = f.file_stem().unwrap_or_default().to_string_lossy();
        if fuzz_entries::entry(&name).is_none() {
            eprintln!("NOTE: fuzz target {name} has no replay entry in tests/fuzz-entries");
        }
    }
}
