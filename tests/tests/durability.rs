//! The stored state on a disk that fills up (issue 19, item 14): the
//! appliance's state directory on a small tmpfs, applies until the disk
//! is full, a kill -9 and a restart. Every apply either is acknowledged
//! and survives, or is refused with a clear error and changes nothing;
//! the appliance starts again on the last acknowledged generation.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use causeway_tests::{Lab, causeway_bin, ok, sh, wait_for};
use serde_json::Value;

/// The venv scripts/deps.sh makes with grpcio and friends.
fn python() -> PathBuf {
    let venv = std::env::var_os("CAUSEWAY_PYENV")
        .map_or_else(|| PathBuf::from("/opt/causeway/pyenv"), PathBuf::from);
    let py = venv.join("bin/python");
    assert!(
        Command::new(&py)
            .args(["-c", "import grpc, grpc_tools, grpc_status"])
            .status()
            .is_ok_and(|s| s.success()),
        "{} lacks grpcio, grpcio-tools or grpcio-status: run scripts/deps.sh (the README's test command does)",
        py.display()
    );
    py
}

/// Runs the Python client (not ours); its JSON lines and whether it
/// succeeded.
fn py(target: &str, args: &[&str]) -> (Vec<Value>, bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/causeway_client.py");
    let out = Command::new(python())
        .arg(script)
        .arg(target)
        .args(args)
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = text
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "python {args:?}: not JSON ({e}): {l}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect();
    (lines, out.status.success())
}

/// A tmpfs mounted on a directory, unmounted when dropped (also when the
/// test fails; lazily if something still holds it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("the mount point");
        ok(&format!(
            "mount -t tmpfs -o size={size},mode=0700 causeway-test {}",
            dir.display()
        ));
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = self.0.display();
        if !sh(&format!("umount {dir}")).status.success() {
            let out = sh(&format!("umount -l {dir}"));
            if !out.status.success() {
                eprintln!(
                    "cannot unmount the tmpfs on {dir}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// (generation, enforced generation) from the Status RPC.
fn generations(target: &str) -> (u64, u64) {
    let (v, success) = py(target, &["status"]);
    assert!(success, "status failed: {v:?}");
    let g = |k: &str| {
        v[0][k]
            .as_u64()
            .or_else(|| v[0][k].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    (g("generation"), g("enforced_generation"))
}

fn holds(target: &str, name: &str) -> bool {
    py(
        target,
        &["get", "kind=GlobalNetworkPolicy", &format!("name={name}")],
    )
    .1
}

#[test]
fn a_full_disk_refuses_the_apply_cleanly_and_a_kill_9_restarts_on_the_last_acknowledged_generation()
{
    let lab = Lab::up("full");
    let status = lab.status();
    let state = PathBuf::from(
        status["appliance"]["state"]
            .as_str()
            .expect("the appliance's state directory"),
    );
    // Dropped before the lab: unmounted (lazily, if the appliance still
    // runs) before `lab down` removes the directory.
    let _disk = Tmpfs::mount(&state, "1m");
    let bin = causeway_bin();
    ok(&format!("{} lab start --name {}", bin.display(), lab.name));
    let target = format!(
        "unix://{}",
        lab.status()["appliance"]["control_socket"]
            .as_str()
            .expect("control socket")
    );

    // New policies of 8 KB each until the 1 MiB disk is full. On the way
    // the journal passes 256 KiB twice, so snapshots are written beside
    // the applies, and the second does not fit.
    let (lines, _) = py(&target, &["apply-fill", "count=400", "bytes=8000"]);
    let (acks, refusal) = lines.split_at(lines.len() - 1);
    let refusal = &refusal[0];
    let last = acks
        .last()
        .unwrap_or_else(|| panic!("no apply acknowledged: {refusal}"));
    let (acked, last_n) = (
        last["generation"].as_u64().expect("generation"),
        last["n"].as_u64().expect("n"),
    );
    println!(
        "{} applies acknowledged up to generation {acked}; then {refusal}",
        acks.len()
    );
    assert_eq!(
        refusal["refused"].as_u64(),
        Some(last_n + 1),
        "the disk never filled: {refusal}"
    );
    // Past 256 KiB of journal (about 32 applies) a snapshot was due.
    assert!(acks.len() > 40, "full before a snapshot was due: {refusal}");
    // A clear error: the disk is full, nothing changed.
    assert_eq!(refusal["code"], "RESOURCE_EXHAUSTED", "{refusal}");
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("disk is full")
            && message.contains("nothing changed")
            && message.contains("No space left on device"),
        "{message}"
    );
    // The state and the policy in force stay at the last acknowledged
    // generation.
    assert_eq!(generations(&target), (acked, acked));
    assert!(holds(&target, &format!("fill-{last_n}")));
    assert!(!holds(&target, &format!("fill-{}", last_n + 1)));
    // A snapshot that did not fit leaves no part of itself behind to keep
    // the space.
    let tmp = state.join("desired.json.tmp");
    assert!(
        wait_for(Duration::from_secs(5), || (!tmp.exists()).then_some(())).is_some(),
        "{} stays",
        tmp.display()
    );

    // kill -9, and a start on the still full disk.
    ok(&format!(
        "{} lab stop --kill --name {}",
        bin.display(),
        lab.name
    ));
    let started = sh(&format!("{} lab start --name {}", bin.display(), lab.name));
    assert!(
        started.status.success(),
        "the appliance does not start again on a full disk: {}\n{}",
        String::from_utf8_lossy(&started.stderr),
        lab.log()
    );
    let back = wait_for(Duration::from_secs(10), || {
        let g = generations(&target);
        (g.1 == g.0).then_some(g)
    });
    assert_eq!(back, Some((acked, acked)), "{}", lab.log());
    assert!(holds(&target, &format!("fill-{last_n}")));
    assert!(!holds(&target, &format!("fill-{}", last_n + 1)));
}
