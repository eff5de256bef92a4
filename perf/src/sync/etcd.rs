//! The datastore side: a real etcd on loopback (stopped and its data
//! removed when dropped), and the writer that stores Calico objects in it
//! as calicoctl does — a create is a transaction "if CreateRevision(key) ==
//! 0 then put", an update "if ModRevision(key) == the revision read then
//! put" — over one gRPC connection.
#![forbid(unsafe_code)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::inventory::{Object, PREFIX};

/// How long etcd may take to answer after its start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A free loopback port (bound and released: etcd takes it right after).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An etcd process with its data directory, both gone when dropped.
pub(crate) struct Server {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

impl Server {
    /// Starts `etcd` (3.4 or later) with its data in `dir`/etcd, listening
    /// on two free loopback ports, and waits until it answers.
    ///
    /// # Errors
    /// etcd is not installed, or did not answer within 20 s (its log is
    /// quoted).
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let data = dir.join("etcd");
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.join("etcd.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("etcd")
            .args(["--name", "causeway-perf", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("causeway-perf={peer_url}"),
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian: apt install etcd-server)")?;
        // The guard first: an etcd that does not come up is still stopped.
        let server = Self {
            child,
            dir: data,
            endpoint,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut c) = Client::connect([&server.endpoint], None).await
                && c.get("/", Some(GetOptions::new().with_count_only()))
                    .await
                    .is_ok()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not answer at {} within {START_TIMEOUT:?}: {}",
                    server.endpoint,
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its client URL.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A new client connection.
    ///
    /// # Errors
    /// etcd does not answer.
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect([&self.endpoint], None)
            .await
            .with_context(|| format!("connecting to etcd at {}", self.endpoint))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stores objects as calicoctl does, remembering each key's ModRevision
/// for the next update.
pub(crate) struct Writer {
    client: Client,
    revisions: HashMap<String, i64>,
    /// The etcd it writes to (for its CPU time).
    server_pid: u32,
}

impl Writer {
    pub(crate) fn new(client: Client, server: &Server) -> Self {
        Self {
            client,
            revisions: HashMap::new(),
            server_pid: server.pid(),
        }
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server_pid
    }

    /// A handle on the same connection, for writes made elsewhere.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates every object, `parallel` transactions in flight on the one
    /// connection; returns how long it took.
    ///
    /// # Errors
    /// etcd refused or failed a transaction, or a key already existed.
    pub(crate) async fn create_all(
        &mut self,
        objects: &[Object],
        parallel: usize,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let chunk = objects.len().div_ceil(parallel.max(1)).max(1);
        for part in objects.chunks(chunk) {
            let mut client = self.client.clone();
            let part: Vec<(String, Vec<u8>)> = part
                .iter()
                .map(|o| (o.key.clone(), o.value.clone()))
                .collect();
            tasks.spawn(async move {
                let mut done = Vec::with_capacity(part.len());
                for (key, value) in part {
                    let revision = create(&mut client, &key, value).await?;
                    done.push((key, revision));
                }
                anyhow::Ok(done)
            });
        }
        while let Some(done) = tasks.join_next().await {
            self.revisions.extend(done??);
        }
        Ok(start.elapsed())
    }

    /// The ModRevision the next update of `key` compares with.
    pub(crate) fn revision(&self, key: &str) -> Option<i64> {
        self.revisions.get(key).copied()
    }

    /// Notes `key`'s new ModRevision (after an update made elsewhere).
    pub(crate) fn set_revision(&mut self, key: &str, revision: i64) {
        self.revisions.insert(key.to_owned(), revision);
    }

    /// Updates an existing object.
    ///
    /// # Errors
    /// The key was not created by this writer, or changed under it.
    pub(crate) async fn update(&mut self, object: &Object) -> anyhow::Result<()> {
        let rev = self
            .revision(&object.key)
            .with_context(|| format!("{} was never written", object.key))?;
        let revision = update(&mut self.client, &object.key, object.value.clone(), rev).await?;
        self.revisions.insert(object.key.clone(), revision);
        Ok(())
    }

    /// Deletes every key under Calico's prefix.
    ///
    /// # Errors
    /// etcd failed.
    pub(crate) async fn delete_all(&mut self) -> anyhow::Result<()> {
        self.client
            .delete(
                PREFIX,
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
            .context("deleting Calico's prefix")?;
        self.revisions.clear();
        Ok(())
    }

    /// Reads the whole prefix as the sync does (pages of 500 keys at one
    /// revision); returns the key count and how long it took.
    ///
    /// # Errors
    /// etcd failed.
    pub(crate) async fn list_all(&mut self) -> anyhow::Result<(usize, Duration)> {
        let start = Instant::now();
        let mut end = PREFIX.as_bytes().to_vec();
        *end.last_mut().expect("the prefix is not empty") += 1;
        let mut from = PREFIX.as_bytes().to_vec();
        let (mut revision, mut count) = (0, 0);
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(500);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let page = self.client.get(from.clone(), Some(options)).await?;
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            // Parsed as the sync parses them, so both read the same bytes.
            for kv in page.kvs() {
                let _: serde_json::Value = serde_json::from_slice(kv.value())?;
            }
            count += page.kvs().len();
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok((count, start.elapsed()))
    }
}

/// "If CreateRevision(key) == 0 then put": returns the new ModRevision.
async fn create(client: &mut Client, key: &str, value: Vec<u8>) -> anyhow::Result<i64> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, None)]);
    let r = client
        .txn(txn)
        .await
        .with_context(|| format!("creating {key}"))?;
    anyhow::ensure!(r.succeeded(), "creating {key}: it exists already");
    r.header()
        .map(|h| h.revision())
        .with_context(|| format!("creating {key}: no revision in the answer"))
}

/// "If ModRevision(key) == rev then put": returns the new ModRevision.
///
/// # Errors
/// etcd failed, or the key changed since `rev`.
pub(crate) async fn update(
    client: &mut Client,
    key: &str,
    value: Vec<u8>,
    rev: i64,
) -> anyhow::Result<i64> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
        .and_then([TxnOp::put(key, value, None)]);
    let r = client
        .txn(txn)
        .await
        .with_context(|| format!("updating {key}"))?;
    anyhow::ensure!(
        r.succeeded(),
        "updating {key}: it changed since revision {rev}"
    );
    r.header()
        .map(|h| h.revision())
        .with_context(|| format!("updating {key}: no revision in the answer"))
}
