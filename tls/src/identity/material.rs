//! Reading PEM files into the pieces a rustls config is built from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::MaterialError;

/// The bytes of a set of files, read together so that one reload sees one
/// version of each. Compared whole to tell whether anything changed: the
/// files are a few kilobytes, and content (unlike mtime) cannot be fooled by
/// a copy that keeps timestamps or a rewrite within one clock tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Files(Vec<(PathBuf, Vec<u8>)>);

/// The largest certificate, key or trust bundle file read: a chain and a
/// key are a few kilobytes and Mozilla's whole public CA bundle about
/// 220 KiB, so 1 MiB leaves room while a path pointing at something huge
/// (a log, a disk image) cannot fill memory.
pub const MAX_MATERIAL_FILE: u64 = 1 << 20;

impl Files {
    pub(crate) fn read(paths: &[&Path]) -> Result<Self, MaterialError> {
        paths
            .iter()
            .map(|p| read_capped(p).map(|bytes| (p.to_path_buf(), bytes)))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The bytes of `path`, which must be one of the paths read.
    pub(crate) fn get(&self, path: &Path) -> &[u8] {
        self.0
            .iter()
            .find(|(p, _)| p == path)
            .map_or(&[][..], |(_, b)| b)
    }
}

/// Reads `path` if it is a regular file of at most [`MAX_MATERIAL_FILE`]
/// bytes. It is opened non-blocking (a FIFO does not wait for a writer)
/// and checked with fstat before a byte is read, so `/dev/zero`, a FIFO or
/// a directory is refused at once; the read stops past the limit even if
/// the file grows meanwhile.
fn read_capped(path: &Path) -> Result<Vec<u8>, MaterialError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let read_error = |source| MaterialError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(MaterialError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = || MaterialError::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_MATERIAL_FILE,
    };
    if meta.len() > MAX_MATERIAL_FILE {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MATERIAL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_MATERIAL_FILE {
        return Err(too_large());
    }
    Ok(bytes)
}

fn pem_error(path: &Path, e: pem::Error) -> MaterialError {
    MaterialError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Every certificate in a PEM file, in file order; at least one, each of
/// which parses as X.509.
pub(crate) fn certs(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(MaterialError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    for (index, cert) in certs.iter().enumerate() {
        ParsedCertificate::try_from(cert).map_err(|source| MaterialError::BadCertificate {
            path: path.to_path_buf(),
            index,
            source,
        })?;
    }
    Ok(certs)
}

/// The first private key in a PEM file: PKCS#8, SEC1 or PKCS#1.
pub(crate) fn key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, MaterialError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => MaterialError::NoKey {
            path: path.to_path_buf(),
        },
        e => pem_error(path, e),
    })
}

/// The chain in `cert_path` with the key in `key_path`, checked to belong
/// together.
pub(crate) fn certified_key(
    files: &Files,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, MaterialError> {
    let chain = certs(cert_path, files.get(cert_path))?;
    let key = key(key_path, files.get(key_path))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| MaterialError::BadKey {
            path: key_path.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // A key whose public half the provider cannot derive is let through;
        // the handshake would fail loudly rather than silently.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(MaterialError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
    }
}

/// A trust bundle: every certificate in the file becomes a trust anchor.
/// One unusable certificate refuses the whole bundle, so that a half-broken
/// bundle is noticed rather than half-trusted.
pub(crate) fn roots(files: &Files, path: &Path) -> Result<Arc<RootCertStore>, MaterialError> {
    let certs = match certs(path, files.get(path)) {
        Err(MaterialError::NoCertificate { path }) => {
            return Err(MaterialError::EmptyTrust { path });
        }
        other => other?,
    };
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        store.add(cert).map_err(|e| MaterialError::BadTrust {
            path: path.to_path_buf(),
            reason: format!("certificate {i}: {e}"),
        })?;
    }
    Ok(Arc::new(store))
}
