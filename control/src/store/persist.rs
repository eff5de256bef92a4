//! The desired state on disk: a snapshot, `DIR/desired.json`, replaced
//! atomically, and a journal of the changes since, `DIR/desired.journal`,
//! appended to.
//!
//! A change ([`commit`]) appends one record (the resources it put and
//! the ids it deleted) to the journal and fdatasyncs it: its cost follows
//! the change, not the state, which at 10k rules is megabytes. An apply is
//! acknowledged only after its record is on disk. When the journal has
//! grown past half the snapshot (and 256 KiB), the change renames it to
//! `desired.journal.old` (the next record starts a new journal) and says
//! a snapshot is due; [`fold`] writes it, in the background, and removes
//! the old journal. Loading replays the old journal, then the new one; an
//! old journal still there (a stop before its fold finished) is folded at
//! once.
//!
//! A snapshot ([`save`]) writes `desired.json.tmp`, fsyncs it, renames it
//! over `desired.json` and fsyncs the directory, so that after a crash at
//! any moment (a kill -9, or the power) the file holds either the previous
//! state or the new one, whole; then it removes the journal. A crash
//! between the two leaves records the snapshot already holds: loading
//! skips records whose generation is not above the snapshot's.
//!
//! The snapshot is a header line, `causeway-state 2 LEN CRC32`, then
//! one line of JSON, `{"format": 2, "generation": N, "resources": [{
//! "generation": G, "owner": WHO, "source": FILE, "manifest": {...}}]}`
//! ("owner" absent: stored before resources had owners), LEN and CRC32
//! (hex) being those of the JSON's bytes. A snapshot is only ever renamed
//! into place whole, so one whose length or checksum fails is damage
//! (a disk, or a hand, changed it): loading fails, naming it. Format 1,
//! the JSON alone with `"format": 1` and no header, was written before
//! snapshots had a checksum; it is still read (and still what an operator
//! may write by hand), and the next snapshot is written as format 2.
//!
//! A journal record is one line, `c1 LEN CRC32 JSON`, the JSON being
//! `{"generation": N, "put": [resources as in the snapshot], "delete":
//! [ids]}` and LEN and CRC32 (hex) those of its bytes. A crash while
//! appending leaves at most one torn record, the last, never
//! acknowledged: its line unended, or its length not its JSON's. Loading
//! drops it (and cuts it off the file, so that the next record follows a
//! whole one). A whole record (its line ended, its length right) whose
//! CRC32 fails was written and synced whole and changed since: damage,
//! wherever it is, as is any bad record before the last: loading fails,
//! naming the file, the record and its byte offset, and changes nothing.
//!
//! A full disk fails the change that meets it and nothing else: a record
//! that does not fit is cut off again, a snapshot that does not fit is
//! removed (its temporary file) and the journals it would have replaced
//! stay, so the state on disk is still the last acknowledged one. A start
//! that cannot write the snapshot it owes (the disk still full) says so
//! and runs on the journals.
//!
//! Reading back goes through the same loader as an apply, so a file edited
//! by hand is checked as strictly as an apply, and a state that does not
//! load stops the appliance from starting (fail closed) with the file
//! named.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Desired, Entry, loaded_from_manifest};

/// The snapshot's name in the state directory.
pub const FILE: &str = "desired.json";

/// The journal's name in the state directory.
pub const JOURNAL: &str = "desired.journal";

/// The snapshot format written: a checksummed header line, then JSON.
const FORMAT: u32 = 2;

/// The snapshot format written before snapshots had a checksum: the JSON
/// alone. Still read.
const FORMAT_UNCHECKED: u32 = 1;

/// A snapshot's header line's first word.
const SNAPSHOT_TAG: &str = "causeway-state";

/// A journal record's first word.
const RECORD_TAG: &str = "c1";

/// The journal is folded into a new snapshot once it is larger than this
/// and than half the snapshot.
const JOURNAL_MIN_FOLD: u64 = 256 << 10;

/// A journal record, borrowed from the state, for appending.
#[derive(Serialize)]
struct RecordRef<'a> {
    generation: u64,
    put: Vec<StoredRef<'a>>,
    delete: Vec<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    generation: u64,
    put: Vec<StoredResource>,
    delete: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    format: u32,
    generation: u64,
    resources: Vec<StoredResource>,
}

/// [`OnDisk`], borrowed from the state, for saving.
#[derive(Serialize)]
struct OnDiskRef<'a> {
    format: u32,
    generation: u64,
    resources: Vec<StoredRef<'a>>,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    generation: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    owner: &'a str,
    source: &'a Path,
    manifest: &'a serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredResource {
    generation: u64,
    /// Absent in states written before resources had owners.
    #[serde(default)]
    owner: String,
    source: PathBuf,
    manifest: serde_json::Value,
}

/// The path of the state file (the snapshot) in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The path of the journal in `dir`.
pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL)
}

/// The path of the journal set aside for a snapshot in `dir`.
pub fn old_journal_path(dir: &Path) -> PathBuf {
    dir.join(format!("{JOURNAL}.old"))
}

fn stored(e: &Entry) -> StoredRef<'_> {
    StoredRef {
        generation: e.generation,
        owner: &e.owner,
        source: &e.loaded.source.file,
        manifest: &e.loaded.manifest,
    }
}

/// Records the change from `prev` (what `dir` holds) to `next` durably,
/// as one journal record. Returns whether a snapshot of `next` is due:
/// the journal had grown large, and was set aside as the old journal
/// for [`fold`] to take in (the next record starts a new one).
///
/// # Errors
/// A write or a sync fails; what `dir` held before stays loadable (a
/// partly written record is cut off again).
pub fn commit(dir: &Path, prev: &Desired, next: &Desired) -> Result<bool> {
    commit_folding_at(dir, prev, next, JOURNAL_MIN_FOLD)
}

/// What `next` holds that `prev` does not, and the ids `prev` holds that
/// `next` does not: the maps' diff, which skips the nodes the two share
/// (a plan's next state shares all but the paths to what it changed), so
/// a change of one resource in 10 000 compares a few dozen entries.
pub(crate) fn changed<'a>(
    prev: &'a imbl::OrdMap<String, Arc<Entry>>,
    next: &'a imbl::OrdMap<String, Arc<Entry>>,
) -> (Vec<&'a Arc<Entry>>, Vec<&'a str>) {
    let (mut put, mut delete) = (Vec::new(), Vec::new());
    for item in prev.diff(next) {
        match item {
            imbl::ordmap::DiffItem::Add(_, e)
            | imbl::ordmap::DiffItem::Update { new: (_, e), .. } => {
                put.push(e);
            }
            imbl::ordmap::DiffItem::Remove(id, _) => delete.push(id.as_str()),
        }
    }
    (put, delete)
}

/// [`commit`], setting the journal aside once it is larger than
/// `min_fold` and than half the snapshot.
pub(crate) fn commit_folding_at(
    dir: &Path,
    prev: &Desired,
    next: &Desired,
    min_fold: u64,
) -> Result<bool> {
    let journal = journal_path(dir);
    let journal_len = match fs::metadata(&journal) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", journal.display())),
    };
    let snapshot_len = fs::metadata(path(dir)).map_or(0, |m| m.len());
    if snapshot_len == 0 {
        save(dir, next)?;
        return Ok(false);
    }
    let (put, delete) = changed(&prev.entries, &next.entries);
    let record = RecordRef {
        generation: next.generation,
        put: put.into_iter().map(|e| stored(e)).collect(),
        delete,
    };
    let json = serde_json::to_vec(&record).context("serialising the change")?;
    let mut line = format!(
        "{RECORD_TAG} {} {:08x} ",
        json.len(),
        crc32fast::hash(&json)
    )
    .into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .with_context(|| format!("opening {}", journal.display()))?;
    if let Err(e) = f
        .write_all(&line)
        .and_then(|()| f.sync_data())
        .with_context(|| format!("appending to {}", journal.display()))
    {
        // Not acknowledged: the record must not stay, whole or in part,
        // for the next one to follow it (or to be replayed).
        let _ = f.set_len(journal_len).and_then(|()| f.sync_data());
        return Err(e);
    }
    if journal_len == 0 {
        // A new file: its name must be durable too.
        sync_dir(dir)?;
    }
    // The change is on disk from here: nothing below may fail it.
    let old = old_journal_path(dir);
    let grown = journal_len + line.len() as u64 > min_fold.max(snapshot_len / 2);
    if !grown || old.exists() {
        // Not due, or a fold is still taking the old journal in.
        return Ok(false);
    }
    match fs::rename(&journal, &old)
        .map_err(anyhow::Error::from)
        .and_then(|()| sync_dir(dir))
    {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::warn!(
                journal = %journal.display(),
                error = %format!("{e:#}"),
                "could not set the journal aside for a snapshot; it grows until the next start"
            );
            Ok(false)
        }
    }
}

/// Takes the old journal into a snapshot of `state`, the state it ends
/// with: [`commit`] said one was due. Runs beside further commits (they
/// go to the new journal), so the answers need not wait for it; a crash
/// in the middle leaves the old journal, which loading replays.
///
/// # Errors
/// A write or a sync fails; the old journal stays, and the next start
/// takes it in.
pub fn fold(dir: &Path, state: &Desired) -> Result<()> {
    write_snapshot(dir, state)?;
    remove_durably(dir, &old_journal_path(dir))
}

/// Removes `file` from `dir`, durably; gone already is fine.
fn remove_durably(dir: &Path, file: &Path) -> Result<()> {
    match fs::remove_file(file) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", file.display())),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

/// Writes `state` into `dir` atomically and durably as the whole state:
/// a snapshot, and no journal.
///
/// # Errors
/// The directory cannot be made or written, or a sync fails.
pub fn save(dir: &Path, state: &Desired) -> Result<()> {
    write_snapshot(dir, state)?;
    // The snapshot holds every record now (a crash before these lines
    // leaves records that loading skips by their generation).
    remove_durably(dir, &old_journal_path(dir))?;
    remove_durably(dir, &journal_path(dir))
}

/// Replaces the snapshot with `state` atomically and durably.
fn write_snapshot(dir: &Path, state: &Desired) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Borrowed and compact: a 10k-rule state is megabytes, and copying
    // then pretty-printing it cost more than the disk.
    let disk = OnDiskRef {
        format: FORMAT,
        generation: state.generation,
        resources: state.entries.values().map(|e| stored(e)).collect(),
    };
    let json = serde_json::to_vec(&disk).context("serialising the state")?;
    let mut bytes = format!(
        "{SNAPSHOT_TAG} {FORMAT} {} {:08x}\n",
        json.len(),
        crc32fast::hash(&json)
    )
    .into_bytes();
    bytes.reserve(json.len() + 1);
    bytes.extend_from_slice(&json);
    bytes.push(b'\n');
    let tmp = dir.join(format!("{FILE}.tmp"));
    let target = path(dir);
    let written = File::create(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))
        .and_then(|mut f| {
            f.write_all(&bytes)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.sync_all()
                .with_context(|| format!("syncing {}", tmp.display()))
        })
        .and_then(|()| {
            fs::rename(&tmp, &target)
                .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))
        });
    if let Err(e) = written {
        // A full disk, most likely: the part written must not keep the
        // space the next change (a journal record) needs.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Reads the state saved in `dir`; `None` when there is none yet.
///
/// # Errors
/// The file exists but cannot be read, is not this format, or a resource
/// in it does not load: every problem, with the file named.
pub fn load(dir: &Path) -> Result<Option<Desired>> {
    let file = path(dir);
    let journal = journal_path(dir);
    let bytes = match fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if journal.exists() || old_journal_path(dir).exists() {
                bail!(
                    "{}: a journal without its snapshot {}; the appliance will not start on it",
                    journal.display(),
                    file.display()
                );
            }
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let (json, format) = snapshot_json(&file, &bytes)?;
    let disk: OnDisk = serde_json::from_slice(json)
        .with_context(|| format!("{}: not a causeway state file", file.display()))?;
    if disk.format != format {
        bail!(
            "{}: format {} is not one this causeway reads here ({}); the appliance will not start on it",
            file.display(),
            disk.format,
            if format == FORMAT {
                format!("format {FORMAT}, as its header says")
            } else {
                format!("format {FORMAT_UNCHECKED} without a header, or {FORMAT} with one")
            }
        );
    }
    let mut state = Desired {
        generation: disk.generation,
        ..Desired::default()
    };
    put(&file, &mut state, disk.resources, "resources")?;
    let old = old_journal_path(dir);
    replay(&old, &mut state, false)?;
    replay(&journal, &mut state, true)?;
    if old.exists() {
        // A snapshot that did not finish before the stop: take it now. If
        // it cannot be written (the disk is still full), the journals
        // hold the state as well: run on them, and take it at the next
        // start.
        if let Err(e) = save(dir, &state) {
            tracing::warn!(
                dir = %dir.display(),
                error = %format!("{e:#}"),
                "could not write the snapshot the journals owe; running on the journals (the next start tries again)"
            );
        }
    }
    Ok(Some(state))
}

/// The JSON of the snapshot `bytes` (read from `file`) and the format its
/// header names: [`FORMAT`] after a header whose length and checksum are
/// the JSON's, [`FORMAT_UNCHECKED`] for JSON with no header.
///
/// # Errors
/// A header that is not one, or whose length or checksum fails: damage.
fn snapshot_json<'a>(file: &Path, bytes: &'a [u8]) -> Result<(&'a [u8], u32)> {
    if bytes.first() == Some(&b'{') {
        return Ok((bytes, FORMAT_UNCHECKED));
    }
    let damaged = |why: &str| {
        anyhow::anyhow!(
            "{}: the snapshot is damaged ({why}); it was written whole, so this is damage on disk, not a crash, and the appliance will not start on it: restore the state directory from a backup, or move it aside to start from the configuration file",
            file.display()
        )
    };
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(damaged("no header line"));
    };
    let header =
        std::str::from_utf8(&bytes[..end]).map_err(|_| damaged("its header is not text"))?;
    let words: Vec<&str> = header.split(' ').collect();
    let [tag, format, len, crc] = words[..] else {
        return Err(damaged(
            "its header is not `causeway-state FORMAT LEN CRC32`",
        ));
    };
    if tag != SNAPSHOT_TAG {
        return Err(damaged(
            "its header is not `causeway-state FORMAT LEN CRC32`",
        ));
    }
    if format != FORMAT.to_string() {
        bail!(
            "{}: format {format} is not one this causeway reads ({FORMAT_UNCHECKED} or {FORMAT}); the appliance will not start on it",
            file.display()
        );
    }
    let body = &bytes[end + 1..];
    let Some(json) = body.strip_suffix(b"\n") else {
        return Err(damaged("it does not end with its line"));
    };
    if len.parse::<usize>().ok() != Some(json.len()) {
        return Err(damaged(&format!(
            "its length is not its header's: {} bytes, the header says {len}",
            json.len()
        )));
    }
    if u32::from_str_radix(crc, 16).ok() != Some(crc32fast::hash(json)) {
        return Err(damaged(&format!(
            "its CRC32 is {:08x}, the header says {crc}",
            crc32fast::hash(json)
        )));
    }
    Ok((json, FORMAT))
}

/// Applies the journal's records above the snapshot's generation to
/// `state`; if `live` (the journal appended to, not one set aside whole),
/// drops (and cuts off) a torn last record.
fn replay(journal: &Path, state: &mut Desired, live: bool) -> Result<()> {
    let bytes = match fs::read(journal) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", journal.display())),
    };
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        n += 1;
        let record = match parse_record(&bytes[at..]) {
            Ok((json, len)) => {
                let record: Record = serde_json::from_slice(json).with_context(|| {
                    format!(
                        "{}: record {n} (byte {at}) is not a change",
                        journal.display()
                    )
                })?;
                at += len;
                record
            }
            Err(BadRecord::Incomplete(why, len))
                if live && (!bytes[at..].contains(&b'\n') || at + len >= bytes.len()) =>
            {
                // The last record, torn by a crash before it was
                // acknowledged: drop it, and cut it off so that the next
                // record follows a whole one.
                tracing::warn!(
                    journal = %journal.display(),
                    record = n,
                    byte = at,
                    reason = why,
                    "dropping a torn last journal record (a crash before its change was acknowledged)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(journal)
                    .with_context(|| format!("opening {}", journal.display()))?;
                f.set_len(at as u64)
                    .and_then(|()| f.sync_all())
                    .with_context(|| {
                        format!("cutting the torn record off {}", journal.display())
                    })?;
                break;
            }
            Err(BadRecord::Checksum) => bail!(
                "{}: record {n} (byte {at}) is damaged (its CRC32 is not its JSON's): a whole record, written and synced whole, whose bytes changed since, not one torn by a crash; the appliance will not start on it: restore the state directory from a backup, or move it aside to start from the configuration file",
                journal.display(),
            ),
            Err(BadRecord::Incomplete(why, _)) => bail!(
                "{}: record {n} (byte {at}) is damaged ({why}) and {}; the appliance will not start on it",
                journal.display(),
                if live {
                    "is not the last"
                } else {
                    "the journal was set aside whole"
                }
            ),
        };
        if record.generation <= state.generation {
            // Already in the snapshot (a crash between writing a snapshot
            // and removing the journal).
            continue;
        }
        for id in &record.delete {
            state.entries.remove(id);
        }
        put(journal, state, record.put, &format!("record {n}, put"))?;
        state.generation = record.generation;
    }
    Ok(())
}

/// Loads stored `resources` (read from `file`, listed there as `list`)
/// into `state` through the apply loader.
///
/// # Errors
/// Any resource does not load: every problem, each at `list[i]`, with
/// the file named.
fn put(file: &Path, state: &mut Desired, resources: Vec<StoredResource>, list: &str) -> Result<()> {
    let mut problems = Vec::new();
    for (i, r) in resources.into_iter().enumerate() {
        match loaded_from_manifest(&r.manifest, &r.source) {
            Ok(loaded) => {
                let id = loaded.resource.id();
                state.entries.insert(
                    id,
                    Arc::new(Entry::new(loaded, r.generation, r.owner.into())),
                );
            }
            Err(errors) => problems.extend(errors.into_iter().map(|e| format!("{list}[{i}]: {e}"))),
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}: the stored state does not load; the appliance will not start on it:\n  {}",
            file.display(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Why the bytes at a record's place are not a good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadRecord {
    /// Not a whole record (why, and how far it went): what a crash while
    /// appending leaves, as the last record.
    Incomplete(&'static str, usize),
    /// A whole record (its line ended, its length its JSON's) whose CRC32
    /// is not its JSON's: no crash leaves that; damage.
    Checksum,
}

/// The JSON of the record at the start of `bytes` and the record's whole
/// length, or why it is not a good record.
fn parse_record(bytes: &[u8]) -> Result<(&[u8], usize), BadRecord> {
    use BadRecord::Incomplete;
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(Incomplete("no end of line", bytes.len()));
    };
    let line = &bytes[..end];
    let mut words = line.splitn(4, |&b| b == b' ');
    let (Some(tag), Some(len), Some(crc), Some(json)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Incomplete("not `c1 LEN CRC32 JSON`", end + 1));
    };
    if tag != RECORD_TAG.as_bytes() {
        return Err(Incomplete("not a c1 record", end + 1));
    }
    let number = |w: &[u8], radix| {
        std::str::from_utf8(w)
            .ok()
            .and_then(|t| u64::from_str_radix(t, radix).ok())
    };
    if number(len, 10) != Some(json.len() as u64) {
        return Err(Incomplete("its length is not its JSON's", end + 1));
    }
    if number(crc, 16) != Some(u64::from(crc32fast::hash(json))) {
        return Err(BadRecord::Checksum);
    }
    Ok((json, end + 1))
}
