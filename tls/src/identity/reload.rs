//! One config behind an atomic pointer, replaced only by a better one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::MaterialError;
use super::material::Files;

/// What [`ServerTls::reload_if_changed`](super::ServerTls::reload_if_changed)
/// or [`ClientTls::reload_if_changed`](super::ClientTls::reload_if_changed)
/// did.
#[derive(Debug)]
#[must_use = "a refused reload means the files on disk are not what is served"]
pub enum Reload {
    /// No file's content changed since the config in use was built.
    Unchanged,
    /// The files changed and a new config is now `current()`.
    Reloaded,
    /// The files changed but do not make a valid config; the previous config
    /// stays in use. A warning naming the file was logged the first time this
    /// error was seen.
    Refused(MaterialError),
}

/// The config in use, the file contents it was built from, and the last
/// refusal (so that a bad file left in place warns once, not every poll).
pub(crate) struct Reloader<T> {
    current: ArcSwap<T>,
    paths: Vec<PathBuf>,
    state: Mutex<State>,
}

struct State {
    loaded: Files,
    refused: Option<String>,
}

impl<T> Reloader<T> {
    /// Reads `paths` and builds the first config; fails if that fails.
    pub(crate) fn load(
        paths: Vec<PathBuf>,
        build: impl FnOnce(&Files) -> Result<Arc<T>, MaterialError>,
    ) -> Result<Self, MaterialError> {
        let files = Files::read(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
        let config = build(&files)?;
        Ok(Self {
            current: ArcSwap::new(config),
            paths,
            state: Mutex::new(State {
                loaded: files,
                refused: None,
            }),
        })
    }

    /// A reloader over no files: never changes.
    pub(crate) fn fixed(config: Arc<T>) -> Self {
        Self {
            current: ArcSwap::new(config),
            paths: Vec::new(),
            state: Mutex::new(State {
                loaded: Files::default(),
                refused: None,
            }),
        }
    }

    pub(crate) fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    pub(crate) fn reload_if_changed(
        &self,
        build: impl FnOnce(&Files) -> Result<Arc<T>, MaterialError>,
    ) -> Reload {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let paths: Vec<_> = self.paths.iter().map(PathBuf::as_path).collect();
        let built = Files::read(&paths).and_then(|files| {
            if files == state.loaded {
                return Ok(None);
            }
            build(&files).map(|config| Some((files, config)))
        });
        match built {
            Ok(None) => Reload::Unchanged,
            Ok(Some((files, config))) => {
                self.current.store(config);
                state.loaded = files;
                state.refused = None;
                tracing::debug!(files = ?self.paths, "TLS material reloaded");
                Reload::Reloaded
            }
            Err(e) => {
                let message = e.to_string();
                if state.refused.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        file = %e.path().map(|p| p.display().to_string()).unwrap_or_default(),
                        reason = %message,
                        "refused new TLS material; the previous config stays in use",
                    );
                    state.refused = Some(message);
                }
                Reload::Refused(e)
            }
        }
    }
}
