//! Kernel TLS (kTLS): whether this kernel could take a connection's
//! records, and which path each TLS leg took.
//!
//! Linux seals and opens TLS records itself once a socket has the `tls`
//! upper-layer protocol (`setsockopt(SOL_TCP, TCP_ULP, "tls")`, then the
//! traffic secrets with `SOL_TLS` / `TLS_TX` and `TLS_RX`; Linux 4.13 for
//! sending, 4.17 for receiving, 5.1 for TLS 1.3). The terminator probes
//! for the ULP once at start ([`probe`]) and decides per leg, when its
//! handshake is done, from the probe and the negotiated cipher suite
//! ([`record_path`]).
//!
//! This version has one data path: records are sealed and opened in user
//! space by rustls. The kernel path is not built, because the machines it
//! is developed and benchmarked on have no `tls` ULP (no module, no
//! `modprobe`), so it could be neither tested nor measured; the decision
//! and its counter (`causeway_terminator_tls_record_path_total{path,
//! reason}`) are here so an operator sees why every leg is in user space,
//! and so the kernel path has one place to plug in.

use std::{fmt, io};

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KtlsSupport {
    /// Not probed (engines built outside a terminator: tests, benches).
    Unprobed,
    /// The kernel has the `tls` ULP (it answered `ENOTCONN` for an
    /// unconnected socket: the ULP exists but needs an established one).
    Available,
    /// `ENOENT`: no `tls` ULP is registered and none could be loaded
    /// (`CONFIG_TLS` off, or a module the kernel cannot load).
    NoTlsUlp,
    /// Another refusal (`errno`), e.g. a seccomp filter.
    Refused(i32),
}

impl fmt::Display for KtlsSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unprobed => f.write_str("not probed"),
            Self::Available => f.write_str("kernel has the tls ULP"),
            Self::NoTlsUlp => f.write_str("kernel has no tls ULP"),
            Self::Refused(e) => write!(
                f,
                "kernel refused the tls ULP: {}",
                io::Error::from_raw_os_error(*e)
            ),
        }
    }
}

/// Asks the kernel for the `tls` ULP on a fresh, unconnected TCP socket:
/// a kernel that has it refuses with `ENOTCONN` (the ULP only attaches to
/// an established connection), one without it with `ENOENT`. The socket
/// is closed again; nothing else changes.
#[must_use]
pub fn probe() -> KtlsSupport {
    // SAFETY: a socket we own, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return KtlsSupport::Refused(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    let name = b"tls";
    // SAFETY: `name` is valid for its length, the option takes a string.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: closed once.
    unsafe {
        libc::close(fd);
    }
    classify(r, errno)
}

/// The probe's answer from `setsockopt`'s result and errno.
fn classify(r: i32, errno: i32) -> KtlsSupport {
    match (r, errno) {
        (0, _) | (_, libc::ENOTCONN) => KtlsSupport::Available,
        (_, libc::ENOENT) => KtlsSupport::NoTlsUlp,
        (_, e) => KtlsSupport::Refused(e),
    }
}

/// Why a TLS leg's records are sealed in user space: a small enum that
/// indexes a counter array (`tls_record_path_total{path="userspace",
/// reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Userspace {
    /// The probe was not run.
    Unprobed,
    /// The kernel has no `tls` ULP.
    NoTlsUlp,
    /// The kernel refused the probe for another reason.
    KernelRefused,
    /// The negotiated cipher suite is not one kTLS takes.
    CipherSuite,
    /// The kernel could take it, but this version has no kernel path.
    KernelPathNotBuilt,
}

impl Userspace {
    /// Every reason, in counter order.
    pub const ALL: [Self; 5] = [
        Self::Unprobed,
        Self::NoTlsUlp,
        Self::KernelRefused,
        Self::CipherSuite,
        Self::KernelPathNotBuilt,
    ];

    /// The label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unprobed => "not_probed",
            Self::NoTlsUlp => "no_tls_ulp",
            Self::KernelRefused => "kernel_refused",
            Self::CipherSuite => "cipher_suite",
            Self::KernelPathNotBuilt => "kernel_path_not_built",
        }
    }
}

/// Whether Linux's kTLS takes `suite` (`include/uapi/linux/tls.h`: AES-GCM
/// 128 and 256, AES-CCM 128, ChaCha20-Poly1305, in TLS 1.2 and 1.3).
#[must_use]
pub fn kernel_takes(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS13_AES_256_GCM_SHA384
            | S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS13_AES_128_CCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// The path a leg whose handshake negotiated `suite` takes, given what
/// the probe found. Always user space in this version (see the module
/// doc); the reason is the first thing that rules the kernel out.
#[must_use]
pub fn record_path(support: KtlsSupport, suite: Option<rustls::CipherSuite>) -> Userspace {
    match support {
        KtlsSupport::Unprobed => Userspace::Unprobed,
        KtlsSupport::NoTlsUlp => Userspace::NoTlsUlp,
        KtlsSupport::Refused(_) => Userspace::KernelRefused,
        KtlsSupport::Available if !suite.is_some_and(kernel_takes) => Userspace::CipherSuite,
        KtlsSupport::Available => Userspace::KernelPathNotBuilt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite as S;

    #[test]
    fn the_probe_reads_the_kernels_answer() {
        assert_eq!(classify(-1, libc::ENOTCONN), KtlsSupport::Available);
        assert_eq!(classify(0, 0), KtlsSupport::Available);
        assert_eq!(classify(-1, libc::ENOENT), KtlsSupport::NoTlsUlp);
        assert_eq!(classify(-1, libc::EPERM), KtlsSupport::Refused(libc::EPERM));
    }

    #[test]
    fn the_probe_agrees_with_the_kernels_list_of_ulps() {
        // The list names registered ULPs only; a loadable module is not
        // listed until loaded, so only one direction is certain.
        let listed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
            .is_ok_and(|l| l.split_whitespace().any(|u| u == "tls"));
        let found = probe();
        if listed {
            assert_eq!(found, KtlsSupport::Available);
        }
        if found == KtlsSupport::NoTlsUlp {
            assert!(!listed);
        }
        assert_ne!(found, KtlsSupport::Unprobed);
    }

    #[test]
    fn every_leg_is_in_user_space_with_the_first_reason_that_applies() {
        let aes = Some(S::TLS13_AES_256_GCM_SHA384);
        assert_eq!(record_path(KtlsSupport::NoTlsUlp, aes), Userspace::NoTlsUlp);
        assert_eq!(
            record_path(KtlsSupport::Refused(libc::EPERM), aes),
            Userspace::KernelRefused
        );
        assert_eq!(record_path(KtlsSupport::Unprobed, aes), Userspace::Unprobed);
        assert_eq!(
            record_path(
                KtlsSupport::Available,
                Some(S::TLS_RSA_WITH_AES_128_CBC_SHA)
            ),
            Userspace::CipherSuite
        );
        assert_eq!(
            record_path(KtlsSupport::Available, None),
            Userspace::CipherSuite
        );
        assert_eq!(
            record_path(KtlsSupport::Available, aes),
            Userspace::KernelPathNotBuilt
        );
    }

    #[test]
    fn the_kernel_takes_every_suite_rustls_offers() {
        for suite in rustls::crypto::ring::ALL_CIPHER_SUITES {
            assert!(kernel_takes(suite.suite()), "{:?}", suite.suite());
        }
    }
}
