//! Fuzzes the stored state's reader (`store::persist::load`) over files a
//! disk or a hand may have damaged: the input is split into a snapshot and
//! a journal (at its first 0xff byte; with none, it is the journal over a
//! small good snapshot). Loading either fails, naming the damage, or gives
//! a state; a second load (after a torn tail was cut off, or an owed
//! snapshot written) gives the same state.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use causeway_control::store::persist;
use libfuzzer_sys::fuzz_target;

/// A format-2 snapshot of one policy at generation 1.
const SNAPSHOT_JSON: &str = r#"{"format":2,"generation":1,"resources":[{"generation":1,"owner":"ctl","source":"a.yaml","manifest":{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"allow-web"},"spec":{"selector":"all()","ingress":[{"action":"Allow","protocol":"TCP","destination":{"ports":[80]}}]}}}]}"#;

/// The state directory the target writes and loads: in
/// `$CAUSEWAY_FUZZ_DIR` (run.sh makes one and removes it), else in /dev/shm.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("CAUSEWAY_FUZZ_DIR").map_or_else(
            || {
                if std::path::Path::new("/dev/shm").is_dir() {
                    PathBuf::from("/dev/shm")
                } else {
                    std::env::temp_dir()
                }
            },
            PathBuf::from,
        );
        base.join(format!("causeway-fuzz-journal-{}", std::process::id()))
    })
}

fn good_snapshot() -> Vec<u8> {
    let json = SNAPSHOT_JSON.as_bytes();
    let mut s = format!("causeway-state 2 {} {:08x}\n", json.len(), crc32(json)).into_bytes();
    s.extend_from_slice(json);
    s.push(b'\n');
    s
}

/// CRC-32 (IEEE), as crc32fast computes it, so the seeds and the target
/// need no other crate.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("the fuzz state directory");
    let (snapshot, journal) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (data[..at].to_vec(), &data[at + 1..]),
        None => (good_snapshot(), data),
    };
    std::fs::write(persist::path(dir), &snapshot).expect("write the snapshot");
    std::fs::write(persist::journal_path(dir), journal).expect("write the journal");
    match persist::load(dir) {
        Ok(first) => {
            let again = persist::load(dir).expect("a state that loaded loads again");
            assert_eq!(first, again, "a second load differs");
        }
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains("desired."),
                "the file is not named: {message}"
            );
        }
    }
});
