//! The lab's PKI: a CA and the certificates the terminator, its clients and
//! its upstreams present, made by `up` in `<state dir>/pki/`.
//!
//! | file | identity (URI SAN) | other SANs | extended key usage |
//! |---|---|---|---|
//! | `ca.pem` | the lab CA | | (CA: keyCertSign, cRLSign) |
//! | `server.pem` | `spiffe://causeway.lab/ns/lab/sa/gateway` | IP 10.100.0.10, .20, .21; DNS `demo.causeway.lab` | serverAuth, clientAuth |
//! | `client.pem` | `spiffe://causeway.lab/ns/lab/sa/client` | | clientAuth |
//! | `upstream.pem` | `spiffe://causeway.lab/ns/lab/sa/upstream` | IP 10.2.0.2 | serverAuth |
//!
//! Each `X.pem` has its key in `X-key.pem` (PKCS#8, mode 0600). All keys
//! are ECDSA P-256, all certificates valid for a year from now. The gateway's
//! certificate serves both legs: as server to clients, and as client to
//! upstreams (originate modes).
//!
//! The files are made with the `openssl` command line, behind the one
//! function [`make`], until the Rust CA in `causeway_tls::identity::ca`
//! takes its place.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::cmd::{self, OPENSSL};
use super::error::{LabError, Result};
use super::topology::addr;

/// The lab's SPIFFE trust domain.
pub(crate) const TRUST_DOMAIN: &str = "causeway.lab";
/// How long the certificates are valid, in days.
const VALID_DAYS: &str = "365";

/// The files of a lab's PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) ca_key: PathBuf,
    pub(crate) server: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client: PathBuf,
    pub(crate) client_key: PathBuf,
    pub(crate) upstream: PathBuf,
    pub(crate) upstream_key: PathBuf,
}

impl Pki {
    /// Where the files of a PKI in `dir` are (made or not).
    pub(crate) fn at(dir: &Path) -> Self {
        let f = |name: &str| dir.join(name);
        Self {
            dir: dir.to_path_buf(),
            ca: f("ca.pem"),
            ca_key: f("ca-key.pem"),
            server: f("server.pem"),
            server_key: f("server-key.pem"),
            client: f("client.pem"),
            client_key: f("client-key.pem"),
            upstream: f("upstream.pem"),
            upstream_key: f("upstream-key.pem"),
        }
    }
}

/// The SPIFFE ID of service account `sa` in the lab's trust domain.
pub(crate) fn spiffe_id(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/lab/sa/{sa}")
}

/// Makes the lab's PKI in `dir` (created, mode 0700; it must not exist) and
/// returns where its files are.
///
/// # Errors
///
/// [`LabError::ToolMissing`] without `openssl`; [`LabError::CommandFailed`]
/// naming the `openssl` command that failed; [`LabError::Io`] if `dir` or
/// the extensions file cannot be written.
pub(crate) fn make(dir: &Path) -> Result<Pki> {
    OPENSSL.require()?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| LabError::io("create", dir, e))?;
    let pki = Pki::at(dir);
    let ext = dir.join("openssl.cnf");
    fs::write(&ext, extensions()).map_err(|e| LabError::io("write", &ext, e))?;

    // The CA: self-signed.
    key(&pki.ca_key)?;
    openssl(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-new".as_ref(),
        "-sha256".as_ref(),
        "-days".as_ref(),
        VALID_DAYS.as_ref(),
        "-key".as_ref(),
        pki.ca_key.as_os_str(),
        "-subj".as_ref(),
        "/O=causeway lab/CN=causeway lab CA".as_ref(),
        "-config".as_ref(),
        ext.as_os_str(),
        "-extensions".as_ref(),
        "lab_ca".as_ref(),
        "-out".as_ref(),
        pki.ca.as_os_str(),
    ])?;
    // The leaves, signed by it.
    for (cert, cert_key, name, section) in [
        (&pki.server, &pki.server_key, "gateway", "lab_server"),
        (&pki.client, &pki.client_key, "client", "lab_client"),
        (&pki.upstream, &pki.upstream_key, "upstream", "lab_upstream"),
    ] {
        key(cert_key)?;
        leaf(&pki, &ext, cert, cert_key, name, section)?;
    }
    fs::remove_file(&ext).map_err(|e| LabError::io("remove", &ext, e))?;
    Ok(pki)
}

/// A P-256 key in `path` (PKCS#8 PEM), mode 0600.
fn key(path: &Path) -> Result<()> {
    openssl(&[
        "genpkey".as_ref(),
        "-algorithm".as_ref(),
        "EC".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-out".as_ref(),
        path.as_os_str(),
    ])?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| LabError::io("restrict", path, e))
}

/// A certificate for `cert_key`, subject `CN=name`, extensions from
/// `section` of `ext`, signed by the CA.
fn leaf(
    pki: &Pki,
    ext: &Path,
    cert: &Path,
    cert_key: &Path,
    name: &str,
    section: &str,
) -> Result<()> {
    let csr = cert.with_extension("csr");
    let subject = format!("/O=causeway lab/CN={name}");
    openssl(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-sha256".as_ref(),
        "-key".as_ref(),
        cert_key.as_os_str(),
        "-subj".as_ref(),
        subject.as_ref(),
        "-config".as_ref(),
        ext.as_os_str(),
        "-out".as_ref(),
        csr.as_os_str(),
    ])?;
    let serial = serial();
    openssl(&[
        "x509".as_ref(),
        "-req".as_ref(),
        "-sha256".as_ref(),
        "-days".as_ref(),
        VALID_DAYS.as_ref(),
        "-in".as_ref(),
        csr.as_os_str(),
        "-CA".as_ref(),
        pki.ca.as_os_str(),
        "-CAkey".as_ref(),
        pki.ca_key.as_os_str(),
        "-set_serial".as_ref(),
        serial.as_ref(),
        "-extfile".as_ref(),
        ext.as_os_str(),
        "-extensions".as_ref(),
        section.as_ref(),
        "-out".as_ref(),
        cert.as_os_str(),
    ])?;
    fs::remove_file(&csr).map_err(|e| LabError::io("remove", &csr, e))
}

fn openssl(args: &[&std::ffi::OsStr]) -> Result<()> {
    cmd::run(OPENSSL, args).map(drop)
}

/// A random positive serial number, as `openssl -set_serial` takes it
/// (RFC 5280 §4.1.2.2: unique per CA, at most 20 octets).
fn serial() -> String {
    use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
    // RandomState is seeded from the OS's randomness per process; the time
    // and a counter make each call differ.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut hasher);
    COUNTER
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .hash(&mut hasher);
    // The top bit clear: a positive INTEGER in 8 octets.
    format!("0x{:016x}", (hasher.finish() >> 1) | 1)
}

/// The `openssl.cnf` the certificates are made with: a `[req]` section, and
/// one extensions section per kind of certificate.
fn extensions() -> String {
    let services = std::iter::once(addr::SERVICE_V4)
        .chain(addr::SPARE_SERVICES_V4)
        .map(|ip| format!("IP:{ip}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\
# Made by `causeway lab up`; removed once the certificates are.
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[lab_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[lab_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:{gateway}, {services}, DNS:{service_name}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[lab_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:{client}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[lab_upstream]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = URI:{upstream}, IP:{server}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
",
        gateway = spiffe_id("gateway"),
        client = spiffe_id("client"),
        upstream = spiffe_id("upstream"),
        service_name = addr::SERVICE_NAME,
        server = addr::SERVER_V4,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn openssl_out(args: &[&str]) -> String {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_lab_pki_verifies_and_names_its_identities() {
        let tmp =
            TempDir(std::env::temp_dir().join(format!("causeway-pki-{}", std::process::id())));
        let _ = fs::remove_dir_all(&tmp.0);
        fs::create_dir_all(&tmp.0).unwrap();
        let pki = make(&tmp.0.join("pki")).unwrap();
        assert_eq!(pki, Pki::at(&tmp.0.join("pki")));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pki.dir), 0o700);
        let mut names: Vec<String> = fs::read_dir(&pki.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ca-key.pem",
                "ca.pem",
                "client-key.pem",
                "client.pem",
                "server-key.pem",
                "server.pem",
                "upstream-key.pem",
                "upstream.pem"
            ],
            "only the PKI is left"
        );
        for key in [
            &pki.ca_key,
            &pki.server_key,
            &pki.client_key,
            &pki.upstream_key,
        ] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
            let text = openssl_out(&["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"]);
            assert!(text.contains("NIST CURVE: P-256"), "{text}");
        }

        let ca = pki.ca.to_str().unwrap();
        for (cert, purpose) in [
            (&pki.server, "sslserver"),
            (&pki.server, "sslclient"),
            (&pki.client, "sslclient"),
            (&pki.upstream, "sslserver"),
        ] {
            let cert = cert.to_str().unwrap();
            let out = openssl_out(&["verify", "-CAfile", ca, "-purpose", purpose, cert]);
            assert_eq!(out.trim(), format!("{cert}: OK"));
        }
        let text = |p: &Path| openssl_out(&["x509", "-in", p.to_str().unwrap(), "-noout", "-text"]);
        let server = text(&pki.server);
        for want in [
            "URI:spiffe://causeway.lab/ns/lab/sa/gateway",
            "IP Address:10.100.0.10",
            "IP Address:10.100.0.20",
            "IP Address:10.100.0.21",
            "DNS:demo.causeway.lab",
            "ecdsa-with-SHA256",
            "CA:FALSE",
        ] {
            assert!(server.contains(want), "server.pem lacks {want}:\n{server}");
        }
        let client = text(&pki.client);
        assert!(
            client.contains("URI:spiffe://causeway.lab/ns/lab/sa/client"),
            "{client}"
        );
        assert!(client.contains("TLS Web Client Authentication"), "{client}");
        assert!(
            !client.contains("TLS Web Server Authentication"),
            "{client}"
        );
        let upstream = text(&pki.upstream);
        assert!(
            upstream.contains("URI:spiffe://causeway.lab/ns/lab/sa/upstream"),
            "{upstream}"
        );
        assert!(upstream.contains("IP Address:10.2.0.2"), "{upstream}");
        let ca_text = text(&pki.ca);
        assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
        // A year, give or take the day boundary.
        let end = openssl_out(&["x509", "-in", ca, "-noout", "-checkend", "31449600"]);
        assert!(end.contains("will not expire"), "{end}");
        let out = std::process::Command::new("openssl")
            .args(["x509", "-in", ca, "-noout", "-checkend", "31708800"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "valid for no more than a year");

        // An existing directory is not overwritten.
        assert!(matches!(make(&pki.dir), Err(LabError::Io { .. })));
    }

    #[test]
    fn serials_differ() {
        assert_ne!(serial(), serial());
        assert!(serial().starts_with("0x"));
    }
}
