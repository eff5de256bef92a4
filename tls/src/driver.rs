//! Which driver carries out the engine's IO: io_uring, or tokio (epoll)
//! where io_uring is unavailable.
//!
//! Container runtimes' default seccomp profiles (recent Docker's among
//! them) block the io_uring system calls, and some kernels are built or
//! booted without io_uring (`kernel.io_uring_disabled`). The terminator should still run there, only
//! slower, so the same [`crate::engine::Engine`] also runs on
//! [`crate::tokio_driver::TokioWorker`]. The choice is made once at start
//! and logged, so an operator who sees lower throughput than expected can
//! tell why from the first lines of the log.
//!
//! The environment variable `CAUSEWAY_DRIVER` overrides the configured
//! choice: `tokio`, `io_uring` (or `io-uring`, `uring`) or `auto`. It is
//! meant for tests and for operators who want the fallback on purpose (to
//! compare, or to rule io_uring out while chasing a problem).

use std::{fmt, str::FromStr};

/// The environment variable that overrides [`DriverChoice`].
pub const DRIVER_ENV: &str = "CAUSEWAY_DRIVER";

/// What the configuration asks for (`auto`, `io_uring` or `tokio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverChoice {
    /// io_uring if this process may create a ring, tokio otherwise.
    #[default]
    Auto,
    /// io_uring, with no fallback: starting fails where it is unavailable.
    IoUring,
    /// The tokio (epoll) driver, even where io_uring would work.
    Tokio,
}

impl FromStr for DriverChoice {
    type Err = UnknownDriver;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(Self::IoUring),
            "tokio" | "epoll" => Ok(Self::Tokio),
            _ => Err(UnknownDriver(s.to_owned())),
        }
    }
}

/// A driver name that is none of `auto`, `io_uring`, `tokio`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown terminator driver {0:?}: expected auto, io_uring or tokio")]
pub struct UnknownDriver(pub String);

/// The driver the workers are built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// [`crate::uring::Worker`].
    IoUring,
    /// [`crate::tokio_driver::TokioWorker`].
    Tokio,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IoUring => "io_uring",
            Self::Tokio => "tokio (epoll)",
        })
    }
}

/// Decides the driver: `CAUSEWAY_DRIVER` if set, else `requested`; `Auto`
/// probes io_uring by creating a small ring with the workers' setup flags.
/// Logs the outcome (a warning when io_uring is unavailable).
///
/// An explicit `IoUring` is not probed: the worker's own setup reports the
/// error, which is what an operator who asked for io_uring wants to see.
#[must_use]
pub fn choose_driver(requested: DriverChoice) -> DriverKind {
    let env = std::env::var(DRIVER_ENV).ok();
    choose(requested, env.as_deref(), probe_io_uring)
}

/// [`choose_driver`] with the environment and the probe passed in.
fn choose(
    requested: DriverChoice,
    env: Option<&str>,
    probe: impl FnOnce() -> std::io::Result<()>,
) -> DriverKind {
    let choice = match env.filter(|v| !v.trim().is_empty()).map(str::parse) {
        None => requested,
        Some(Ok(c)) => {
            if c != requested {
                tracing::info!(
                    "{DRIVER_ENV} overrides the configured driver ({requested:?} → {c:?})"
                );
            }
            c
        }
        Some(Err(e)) => {
            tracing::warn!("{e} in {DRIVER_ENV}; ignoring it");
            requested
        }
    };
    let kind = match choice {
        DriverChoice::IoUring => DriverKind::IoUring,
        DriverChoice::Tokio => DriverKind::Tokio,
        DriverChoice::Auto => match probe() {
            Ok(()) => DriverKind::IoUring,
            Err(err) => {
                tracing::warn!(
                    "io_uring unavailable ({err}); the terminator runs on the tokio (epoll) driver"
                );
                return DriverKind::Tokio;
            }
        },
    };
    tracing::info!("terminator driver: {kind}");
    kind
}

/// Creates (and drops) a ring with the flags [`crate::uring::Worker`]
/// uses, which needs Linux 6.1 (`IORING_SETUP_DEFER_TASKRUN`).
fn probe_io_uring() -> std::io::Result<()> {
    io_uring::IoUring::<io_uring::squeue::Entry>::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .build(8)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EPERM))
    }

    #[test]
    fn auto_follows_the_probe() {
        assert_eq!(
            choose(DriverChoice::Auto, None, || Ok(())),
            DriverKind::IoUring
        );
        assert_eq!(choose(DriverChoice::Auto, None, refused), DriverKind::Tokio);
    }

    #[test]
    fn an_explicit_choice_is_not_probed() {
        let never = || -> std::io::Result<()> { panic!("probed") };
        assert_eq!(choose(DriverChoice::Tokio, None, never), DriverKind::Tokio);
        assert_eq!(
            choose(DriverChoice::IoUring, None, never),
            DriverKind::IoUring
        );
    }

    #[test]
    fn the_environment_overrides_the_configuration() {
        assert_eq!(
            choose(DriverChoice::IoUring, Some("tokio"), || Ok(())),
            DriverKind::Tokio
        );
        assert_eq!(
            choose(DriverChoice::Tokio, Some("io_uring"), || Ok(())),
            DriverKind::IoUring
        );
        assert_eq!(
            choose(DriverChoice::Tokio, Some("auto"), refused),
            DriverKind::Tokio
        );
        // Unknown or empty: the configuration stands.
        assert_eq!(
            choose(DriverChoice::IoUring, Some("kqueue"), || Ok(())),
            DriverKind::IoUring
        );
        assert_eq!(
            choose(DriverChoice::Tokio, Some(""), || Ok(())),
            DriverKind::Tokio
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!("io-uring".parse(), Ok(DriverChoice::IoUring));
        assert_eq!(" Tokio ".parse(), Ok(DriverChoice::Tokio));
        assert!("".parse::<DriverChoice>().is_err());
    }
}
