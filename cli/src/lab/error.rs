//! What can go wrong while building, inspecting or removing a lab.

use std::io;
use std::path::PathBuf;

/// A lab operation failed. Every message says what was wrong, where, and what
/// to do about it, because it reaches an operator as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The lab name does not match `[a-z0-9][a-z0-9-]{0,14}`.
    #[error(
        "invalid lab name {name:?}: {reason} (a name is 1 to 15 characters of a-z, 0-9 and '-', \
         starting with a letter or a digit)"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },

    /// `up` for a name whose state directory already exists.
    #[error(
        "lab {name} already exists (state in {}); remove it first with \
         `causeway lab down --name {name}`",
        dir.display()
    )]
    AlreadyExists {
        /// The lab name.
        name: String,
        /// Its state directory.
        dir: PathBuf,
    },

    /// A namespace the lab would create exists, and no lab recorded it.
    #[error(
        "network namespace {netns} already exists and no causeway lab made it, so lab {name} will \
         neither use nor remove it; if it is a leftover, delete it with `ip netns del {netns}`"
    )]
    NamespaceTaken {
        /// The lab name.
        name: String,
        /// The namespace that is in the way.
        netns: String,
    },

    /// `down` or `status` for a lab that has no record.
    #[error("no lab named {name} (no {}){}", record.display(), stray_hint(stray))]
    NoSuchLab {
        /// The lab name.
        name: String,
        /// Where its record would be.
        record: PathBuf,
        /// Namespaces with the lab's names that exist all the same; the lab
        /// does not remove them, because it has no record of making them.
        stray: Vec<String>,
    },

    /// A program the lab runs is not installed.
    #[error("`{tool}` is not installed; install it with `apt-get install {package}`")]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {}", if stderr.is_empty() { "no output on stderr" } else { stderr })]
    CommandFailed {
        /// The command line, as it could be pasted into a shell.
        command: String,
        /// How it ended, e.g. `exit status: 2`.
        status: String,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },

    /// A command succeeded but printed something the lab cannot read.
    #[error("unexpected output from `{command}`: {detail}")]
    BadOutput {
        /// The command line.
        command: String,
        /// What was wrong with the output.
        detail: String,
    },

    /// A file or directory of the lab's state could not be read or written.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What the lab was doing, e.g. `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the OS (in the message, not chained, so that
        /// `{:#}` does not print it twice).
        error: io::Error,
    },

    /// `lab.json` exists but is not a lab record.
    #[error(
        "lab record {} is unreadable: {error}; remove what it lists by hand (`ip netns del`), \
         then the directory",
        path.display()
    )]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        error: serde_json::Error,
    },

    /// A setting of the lab itself is unusable (the run directory, the
    /// manifests directory).
    #[error("{0}")]
    Config(String),

    /// Links of a new lab did not come up.
    #[error(
        "{} did not come up within {} s (ip link set up succeeded); look at `ip -n NETNS link`",
        links.join(", "),
        waited.as_secs()
    )]
    LinksDown {
        /// The links still down, as `IFNAME in NETNS`.
        links: Vec<String>,
        /// How long `up` waited.
        waited: std::time::Duration,
    },

    /// `up --start`: the appliance exited or did not forward in time.
    #[error(
        "the appliance in {netns} did not start forwarding: {reason}; last lines of {}:\n{tail}",
        log.display()
    )]
    ApplianceNotReady {
        /// The appliance namespace.
        netns: String,
        /// Why the lab gave up waiting.
        reason: String,
        /// The appliance log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },

    /// One of the lab's HTTP backends exited or did not listen in time.
    #[error(
        "the lab backend {backend} did not start: {reason}; last lines of {}:\n{tail}",
        log.display()
    )]
    BackendNotReady {
        /// Which backend, where, e.g. `backend-1 (10.2.0.2:8081 in demo-b)`.
        backend: String,
        /// Why the lab gave up waiting.
        reason: String,
        /// Its log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },

    /// A step of `up` failed; what had been made was removed again.
    #[error("could not build lab {name} (what was made has been removed): {cause}")]
    UpFailed {
        /// The lab name.
        name: String,
        /// The step that failed.
        cause: Box<Self>,
    },

    /// A step of `up` failed and removing the half-built lab failed too.
    #[error(
        "could not build lab {name}: {cause}; removing what was made also failed: {teardown}; \
         retry with `causeway lab down --name {name}`"
    )]
    UpAndTeardownFailed {
        /// The lab name.
        name: String,
        /// The step of `up` that failed.
        cause: Box<Self>,
        /// Why the teardown failed.
        teardown: Box<Self>,
    },
}

fn stray_hint(stray: &[String]) -> String {
    if stray.is_empty() {
        return String::new();
    }
    format!(
        "; namespaces {} exist but no lab record lists them, so they are left alone \
         (remove them with `ip netns del` if they are leftovers)",
        stray.join(", ")
    )
}

/// The result of a lab operation.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            error,
        }
    }
}
