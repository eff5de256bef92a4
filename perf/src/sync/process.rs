//! `causeway sync` as the scenario runs it (killed when dropped), its
//! status page read over its socket, and what its log and the
//! appliance's log say about each push and each commit.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running `causeway sync`.
pub(crate) struct Sync {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    /// When it was spawned.
    pub(crate) started: Instant,
}

/// What `causeway sync` is started with.
pub(crate) struct Options<'a> {
    pub(crate) causeway: &'a Path,
    /// The appliance's gRPC control socket.
    pub(crate) control: &'a Path,
    pub(crate) etcd: &'a str,
    /// Where its status socket, configuration and log go.
    pub(crate) dir: &'a Path,
    /// `batch_ms` (none: the sync's default).
    pub(crate) batch_ms: Option<u64>,
    /// Tells runs apart in the file names.
    pub(crate) tag: &'a str,
}

impl Sync {
    /// Spawns `causeway sync --appliance unix:CONTROL --status-socket ...`
    /// with `DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=...`.
    ///
    /// # Errors
    /// The process cannot be spawned.
    pub(crate) fn start(o: &Options<'_>) -> anyhow::Result<Self> {
        let socket = o.dir.join(format!("sync-{}.sock", o.tag));
        let log = o.dir.join(format!("sync-{}.log", o.tag));
        let mut command = Command::new(o.causeway);
        command.arg("sync");
        if let Some(ms) = o.batch_ms {
            let config = o.dir.join(format!("sync-{}.yaml", o.tag));
            std::fs::write(&config, format!("batch_ms: {ms}\n"))?;
            command.arg("--config").arg(config);
        }
        let started = Instant::now();
        let child = command
            .arg("--appliance")
            .arg(format!("unix:{}", o.control.display()))
            .arg("--status-socket")
            .arg(&socket)
            .env("DATASTORE_TYPE", "etcdv3")
            .env("ETCD_ENDPOINTS", o.etcd)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {} sync", o.causeway.display()))?;
        Ok(Self {
            child,
            socket,
            log,
            started,
        })
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The status document (`causeway sync status -o json` reads the same
    /// page): `GET /status` on its socket.
    ///
    /// # Errors
    /// It does not answer (yet), or exited.
    pub(crate) async fn status(&mut self) -> anyhow::Result<Value> {
        if let Some(exit) = self.child.try_wait()? {
            bail!(
                "causeway sync exited ({exit}); see {}: {}",
                self.log.display(),
                tail(&self.log, 5)
            );
        }
        status(&self.socket).await
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its status socket.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Polls the status until `ok` says yes, up to `timeout`.
    ///
    /// # Errors
    /// Not within `timeout` (the last status is quoted).
    pub(crate) async fn status_until(
        &mut self,
        timeout: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(s) = self.status().await {
                if ok(&s) {
                    return Ok(s);
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the sync's status after {timeout:?}: {last}")
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `GET /status` on the sync's status socket `socket`.
///
/// # Errors
/// Nothing answers there, or not with JSON.
pub(crate) async fn status(socket: &Path) -> anyhow::Result<Value> {
    let mut conn = tokio::net::UnixStream::connect(socket).await?;
    conn.write_all(b"GET /status HTTP/1.1\r\nHost: sync\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .context("the sync's status page did not answer in 5 s")??;
    let text = String::from_utf8_lossy(&answer);
    let (_, body) = text
        .split_once("\r\n\r\n")
        .context("the sync's status page is not HTTP")?;
    Ok(serde_json::from_str(body)?)
}

/// The last `n` lines of `path`.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The appliance (`status.appliances[0]`) of a sync status document.
pub(crate) fn appliance(s: &Value) -> &Value {
    &s["appliances"][0]
}

/// A `field=value` of a tracing text line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// A `Duration`'s Debug text (`812.3µs`, `1.25ms`, `2.5s`, `40ns`).
pub(crate) fn duration(text: &str) -> Option<Duration> {
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| text.split_at(i))?;
    let v: f64 = number.parse().ok()?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "µs" | "us" => v / 1e6,
        "ns" => v / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// One `configuration committed` line of the appliance's log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Commit {
    pub(crate) changes: u64,
    /// Arrival → planned, → saved (fsync'd), → published (compiled and
    /// handed to the workers).
    pub(crate) planned: Duration,
    pub(crate) saved: Duration,
    pub(crate) published: Duration,
}

/// The commits logged in `log` after byte `from`.
pub(crate) fn commits(log: &Path, from: u64) -> Vec<Commit> {
    lines_after(log, from)
        .iter()
        .filter(|l| l.contains("configuration committed"))
        .filter_map(|l| {
            Some(Commit {
                changes: field(l, "changes")?.parse().ok()?,
                planned: duration(field(l, "planned")?)?,
                saved: duration(field(l, "saved")?)?,
                published: duration(field(l, "published")?)?,
            })
        })
        .collect()
}

/// One `pushed` line of the sync's log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Push {
    pub(crate) put: u64,
    pub(crate) deleted: u64,
    /// The Apply's round trip (wait_enforced).
    pub(crate) took: Duration,
    /// The appliance's own part of it, its arrival → every worker
    /// enforcing (the answer's `enforced_after`); zero in logs before it.
    pub(crate) enforced: Duration,
}

/// The pushes logged in `log` after byte `from`.
pub(crate) fn pushes(log: &Path, from: u64) -> Vec<Push> {
    lines_after(log, from)
        .iter()
        .filter(|l| l.contains(" pushed "))
        .filter_map(|l| {
            Some(Push {
                put: field(l, "put")?.parse().ok()?,
                deleted: field(l, "deleted")?.parse().ok()?,
                took: duration(field(l, "took")?)?,
                enforced: field(l, "enforced").and_then(duration).unwrap_or_default(),
            })
        })
        .collect()
}

/// The size of `path` now: where the next lines will start.
pub(crate) fn offset(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn lines_after(path: &Path, from: u64) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    // Colour codes would split the fields: strip ANSI escapes.
    let text = String::from_utf8_lossy(&bytes[from..]).into_owned();
    text.lines().map(strip_ansi).collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_fields_read_as_tracing_writes_them() {
        assert_eq!(duration("1.5ms"), Some(Duration::from_micros(1500)));
        assert_eq!(duration("812µs"), Some(Duration::from_micros(812)));
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("ms"), None);
        let line = "2026-12-06T22:33:20Z  INFO causeway_control::node: configuration committed generation=5 changes=3 planned=1.2ms saved=2.5ms published=4.75ms";
        let dir = std::env::temp_dir().join(format!("cw-perf-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("a.log");
        std::fs::write(&log, format!("skipped\n{line}\n")).unwrap();
        let c = commits(&log, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].changes, 3);
        assert_eq!(c[0].published, Duration::from_micros(4750));
        assert!(commits(&log, offset(&log)).is_empty());
        let push = "2026-12-06T22:33:20Z  INFO causeway_cli::sync::push: pushed appliance=unix:/x generation=7 put=12 deleted=0 took=30.5ms enforced=1.25ms";
        std::fs::write(&log, format!("\u{1b}[2m{push}\u{1b}[0m\n")).unwrap();
        let p = pushes(&log, 0);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].put, p[0].took, p[0].enforced),
            (
                12,
                Duration::from_micros(30_500),
                Duration::from_micros(1250)
            )
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
