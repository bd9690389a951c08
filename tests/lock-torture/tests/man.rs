//! The checked-in man page must match the clap definition (UPDATE_MAN=1 rewrites it).

use std::path::PathBuf;

#[test]
fn man_page_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../man/lock-torture.1");
    let page = lock_torture::cli::render_man_page().expect("render man page");
    if std::env::var("UPDATE_MAN").as_deref() == Ok("1") {
        std::fs::write(&path, &page).expect("write man page");
        return;
    }
    let current = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with UPDATE_MAN=1 cargo test -p lock-torture --test man",
            path.display()
        )
    });
    assert!(
        current == page,
        "{} is out of date: regenerate with UPDATE_MAN=1 cargo test -p lock-torture --test man",
        path.display()
    );
}
