//! What the scenario tests share.

use std::process::Command;

/// Fails if a network namespace of a lab named `PREFIX`x… is still there:
/// a scenario removes its labs whether it passed or failed.
pub(crate) fn assert_no_lab_left(prefix: &str) {
    let leftover = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let leftover = String::from_utf8_lossy(&leftover.stdout);
    assert!(
        !leftover
            .lines()
            .any(|l| l.starts_with(&format!("{prefix}x"))),
        "labs left behind:\n{leftover}"
    );
}
