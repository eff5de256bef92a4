//! The lab's state directory, `<run dir>/lab/NAME/`, and `lab.json`, the
//! record of what the lab made. The record is written before anything is
//! made, and updated before each namespace is created, so that `down` can
//! remove exactly what an interrupted `up` left behind.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};

/// The environment variable that moves the run directory away from
/// `/run/causeway` (labs then live in `$CAUSEWAY_RUN_DIR/lab/`).
pub const RUN_DIR_ENV: &str = "CAUSEWAY_RUN_DIR";
const DEFAULT_RUN_DIR: &str = "/run/causeway";

const RECORD: &str = "lab.json";
const CONFIG: &str = "config.yaml";
const LOG: &str = "appliance.log";
const PID: &str = "appliance.pid";
const SOCKET: &str = "causeway.sock";
const PKI: &str = "pki";

/// The directory that holds every lab's state directory.
pub(crate) fn labs_dir() -> Result<PathBuf> {
    let base = std::env::var_os(RUN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_RUN_DIR), PathBuf::from);
    if !base.is_absolute() {
        return Err(LabError::Config(format!(
            "{RUN_DIR_ENV}={} is not an absolute path; the appliance runs with another working \
             directory, so the lab's paths must be absolute",
            base.display()
        )));
    }
    Ok(base.join("lab"))
}

/// The paths of one lab's state.
#[derive(Debug, Clone)]
pub(crate) struct LabDir {
    pub(crate) dir: PathBuf,
}

impl LabDir {
    pub(crate) fn new(name: &str) -> Result<Self> {
        Ok(Self {
            dir: labs_dir()?.join(name),
        })
    }

    pub(crate) fn record(&self) -> PathBuf {
        self.dir.join(RECORD)
    }
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join(LOG)
    }
    pub(crate) fn pid(&self) -> PathBuf {
        self.dir.join(PID)
    }
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET)
    }
    /// The appliance's state directory (`desired.json`).
    pub(crate) fn appliance_state(&self) -> PathBuf {
        self.dir.join("appliance-state")
    }
    pub(crate) fn pki(&self) -> PathBuf {
        self.dir.join(PKI)
    }
    /// `backend-N.log`: what backend `name` printed.
    pub(crate) fn backend_log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
    /// `backend-N.pid`: backend `name`'s pid.
    pub(crate) fn backend_pid(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pid"))
    }

    /// Creates the state directory; it existing already means the lab does.
    pub(crate) fn create(&self, name: &str) -> Result<()> {
        if let Some(parent) = self.dir.parent() {
            fs::create_dir_all(parent).map_err(|e| LabError::io("create", parent, e))?;
        }
        // create_dir, not create_dir_all: two `up`s of one name race here and
        // exactly one wins.
        match fs::create_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(LabError::AlreadyExists {
                name: name.to_owned(),
                dir: self.dir.clone(),
            }),
            Err(e) => Err(LabError::io("create", &self.dir, e)),
        }
    }

    /// Reads `lab.json`; `Ok(None)` if there is none.
    pub(crate) fn read_record(&self) -> Result<Option<LabRecord>> {
        let path = self.record();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io("read", path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| LabError::BadRecord { path, error })
    }

    /// Replaces `lab.json` whole (write a temporary file, fsync, rename), so a
    /// crash leaves either the old record or the new one.
    pub(crate) fn write_record(&self, record: &LabRecord) -> Result<()> {
        let mut json = serde_json::to_string_pretty(record).expect("a lab record serialises");
        json.push('\n');
        self.write_atomic(&self.record(), json.as_bytes())
    }

    pub(crate) fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(contents)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| LabError::io("write", path, e))
    }

    /// The appliance's pid from `appliance.pid`, if the file exists and
    /// holds one.
    pub(crate) fn read_pid(&self) -> Result<Option<u32>> {
        let path = self.pid();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io("read", path, e)),
        }
    }

    pub(crate) fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LabError::io("remove", &self.dir, e)),
        }
    }
}

/// `lab.json`: what the lab made, so `down` removes that and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LabRecord {
    /// The lab name.
    pub(crate) name: String,
    /// Namespaces the lab made (or was about to make), in creation order.
    pub(crate) namespaces: Vec<String>,
    /// `up --manifests`, kept for the appliance and tests to find.
    #[serde(default)]
    pub(crate) manifests: Option<PathBuf>,
}

/// Names of the labs with a state directory, sorted.
pub(crate) fn list() -> Result<Vec<String>> {
    let dir = labs_dir()?;
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io("read", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LabError::io("read", &dir, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
            && super::name::validate(name).is_ok()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
