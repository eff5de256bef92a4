//! The control API server: causeway.v1 (control/proto/causeway/v1), the
//! standard health service and server reflection, with tonic on a Unix
//! socket (mode 0600) and, if configured, on TCP with mTLS admitting only
//! the admin identities (the identity check is inside the handshake: a
//! client with another identity gets alert access_denied and no API).
//!
//! Handlers that change or read the state run on the blocking pool: a
//! change holds the node's change lock through validate, fsync and publish.

pub(crate) mod convert;
mod flows;
mod stats;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio_stream::{Stream, StreamExt, wrappers::UnixListenerStream};
use tonic::{Code, Request, Response, Status, transport::Server};
use tracing::{info, warn};

use crate::{
    api::Probes,
    config::TcpApiConfig,
    node::{ChangeError, Committed, Node},
    proto::{
        self, config_service_server::ConfigServiceServer, flow_service_server::FlowServiceServer,
        policy_service_server::PolicyServiceServer, stats_service_server::StatsServiceServer,
        status_service_server::StatusServiceServer,
    },
    store::{InputFile, OWNER_CTL, Replace, Writer, ref_id},
};

pub use convert::split_id;
pub use flows::FlowHub;

/// How long a wait for enforcement lasts when the caller does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// The longest wait a request may ask for: a client that wants longer
/// asks again (a bounded wait holds a blocking thread, never a panic on
/// an instant past the clock's range).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The running server; dropping it stops it and removes the socket.
#[derive(Debug)]
pub struct GrpcServer {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Vec<tokio::sync::oneshot::Sender<()>>,
    socket: PathBuf,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        for s in self.shutdown.drain(..) {
            let _ = s.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The services, sharing one node, and the health and readiness that
/// both listeners report and a drain turns off.
#[derive(Clone)]
struct Api {
    node: Arc<Node>,
    flows: Arc<FlowHub>,
    health: tonic_health::server::HealthReporter,
    probes: Arc<Probes>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// The services the health service reports on: the whole server (`""`,
/// what a balancer asks) and each of causeway.v1's.
fn health_names() -> [&'static str; 6] {
    use tonic::server::NamedService;
    [
        "",
        <ConfigServiceServer<Api> as NamedService>::NAME,
        <StatusServiceServer<Api> as NamedService>::NAME,
        <PolicyServiceServer<Api> as NamedService>::NAME,
        <StatsServiceServer<Api> as NamedService>::NAME,
        <FlowServiceServer<Api> as NamedService>::NAME,
    ]
}

impl GrpcServer {
    /// Serves the control API on `socket` (and on `tcp`, if given). Its
    /// health service says SERVING until a Drain, which also turns
    /// `probes`' readiness off.
    ///
    /// # Errors
    /// A socket cannot be bound, or the TLS material does not load.
    pub fn start(
        node: Arc<Node>,
        flows: Arc<FlowHub>,
        probes: Arc<Probes>,
        socket: &Path,
        tcp: Option<&TcpApiConfig>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cw-grpc")
            .enable_all()
            .build()
            .context("starting the control API's runtime")?;
        let health = tonic_health::server::HealthReporter::new();
        runtime.block_on(async {
            for name in health_names() {
                health
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
            }
        });
        let api = Api {
            node,
            flows,
            health,
            probes,
        };
        let mut shutdown = Vec::new();
        let listener = {
            let _guard = runtime.enter();
            bind_unix(socket)?
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        shutdown.push(tx);
        let router = runtime.block_on(routes(api.clone()));
        runtime.spawn(async move {
            let incoming = UnixListenerStream::new(listener);
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await
            {
                warn!(error = %e, "control API (unix socket)");
            }
        });
        if let Some(tcp) = tcp {
            let acceptor = Arc::new(ApiTls::load(tcp)?);
            {
                // The certificate rotates as the terminator's does: the
                // files are read again every second and new handshakes take
                // what changed; a bad file is refused and the old material
                // stays.
                let acceptor = acceptor.clone();
                runtime.spawn(async move {
                    let mut tick = tokio::time::interval(causeway_tls::terminator::RELOAD_EVERY);
                    loop {
                        tick.tick().await;
                        acceptor.reload();
                    }
                });
            }
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(tcp.listen))
                .with_context(|| format!("api.tcp.listen: binding {}", tcp.listen))?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            shutdown.push(tx);
            let refused = api.node.clone();
            let router = runtime.block_on(routes(api));
            let listen = tcp.listen;
            runtime.spawn(async move {
                let incoming = tls_incoming(listener, acceptor, refused);
                if let Err(e) = router
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    })
                    .await
                {
                    warn!(error = %e, %listen, "control API (TCP, mTLS)");
                }
            });
            info!(%listen, "control API on TCP with mTLS");
        }
        Ok(Self {
            runtime: Some(runtime),
            shutdown,
            socket: socket.to_owned(),
        })
    }
}

fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running appliance", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The TCP API's TLS: causeway-tls's `ServerTls` (reloadable) and the
/// acceptor made from its current config with ALPN h2.
struct ApiTls {
    tls: causeway_tls::identity::ServerTls,
    acceptor: arc_swap::ArcSwap<tokio_rustls::TlsAcceptor>,
}

impl ApiTls {
    fn load(tcp: &TcpApiConfig) -> Result<Self> {
        use causeway_tls::identity::{ServerMaterialConfig, ServerTls, TlsVersions};
        let tls = ServerTls::load(&ServerMaterialConfig {
            cert: tcp.cert.clone(),
            key: tcp.key.clone(),
            client_trust: Some(tcp.client_ca.clone()),
            allowed_identities: tcp.admin_identities.clone(),
            versions: TlsVersions::Tls13,
            alpn: Vec::new(),
        })
        .map_err(|e| anyhow::anyhow!("api.tcp: {e}"))?;
        let acceptor = arc_swap::ArcSwap::from_pointee(h2_acceptor(&tls));
        Ok(Self { tls, acceptor })
    }

    /// Takes changed files in (the identity module logs a refusal once).
    fn reload(&self) {
        use causeway_tls::identity::Reload;
        match self.tls.reload_if_changed() {
            Reload::Reloaded => {
                self.acceptor.store(Arc::new(h2_acceptor(&self.tls)));
                info!("control API (TCP): new certificate material in force");
            }
            Reload::Unchanged | Reload::Refused(_) => {}
        }
    }

    fn acceptor(&self) -> Arc<tokio_rustls::TlsAcceptor> {
        self.acceptor.load_full()
    }
}

fn h2_acceptor(tls: &causeway_tls::identity::ServerTls) -> tokio_rustls::TlsAcceptor {
    let mut config = (*tls.current()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

type TlsConn = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Refused or timed-out handshakes logged per [`LOG_WINDOW`]; the rest
/// are counted and summed up in one line when the window ends, so a
/// scanner or a client with the wrong identity cannot flood the log.
const LOG_BURST: u32 = 5;
/// See [`LOG_BURST`].
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// How many handshake failures were logged in the current window, and how
/// many were not.
struct LogLimit {
    window: tokio::time::Instant,
    logged: u32,
    quiet: u64,
}

impl LogLimit {
    fn new() -> Self {
        Self {
            window: tokio::time::Instant::now(),
            logged: 0,
            quiet: 0,
        }
    }

    /// Whether to log this failure; says how many were left out before.
    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window) >= LOG_WINDOW {
            if self.quiet > 0 {
                warn!(
                    not_logged = self.quiet,
                    window = ?LOG_WINDOW,
                    "control API: more TLS handshakes refused than were logged"
                );
            }
            *self = Self {
                window: now,
                logged: 0,
                quiet: 0,
            };
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            true
        } else {
            self.quiet += 1;
            false
        }
    }
}

/// Accepted connections that completed the mTLS handshake; the others are
/// counted, logged (at most [`LOG_BURST`] per [`LOG_WINDOW`]) and dropped.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: Arc<ApiTls>,
    node: Arc<Node>,
) -> impl Stream<Item = Result<TlsConn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let limit = Arc::new(std::sync::Mutex::new(LogLimit::new()));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "control API accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let (limit, node) = (limit.clone(), node.clone());
            tokio::spawn(async move {
                let failed =
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                            return;
                        }
                        Ok(Err(e)) => format!("refused: {e}"),
                        Err(_) => "timed out".to_owned(),
                    };
                node.metrics
                    .api_handshakes_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if limit.lock().expect("not poisoned").allow() {
                    warn!(%peer, "control API: TLS handshake {failed}");
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// See `routes`.
const MAX_STREAMS: u32 = 64;

/// The largest Apply or List message: a sync's first push of a cluster's
/// whole inventory (11 000 resources are 8 MB of JSON) or the list of a
/// state of 100 000 rules, well past gRPC's default of 4 MiB.
const CONFIG_MESSAGE_LIMIT: usize = 128 << 20;

async fn routes(api: Api) -> tonic::transport::server::Router {
    // One reporter for both listeners: a drain is seen on each.
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(api.health.clone()),
    );
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .expect("the descriptor sets are valid");
    let v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .expect("the descriptor sets are valid");
    Server::builder()
        // Streams one client may hold open on a connection (HTTP/2
        // SETTINGS_MAX_CONCURRENT_STREAMS): a sync holds a watch and an
        // apply or two, ctl one; past this a client waits for a stream
        // to end instead of piling up handlers.
        .max_concurrent_streams(MAX_STREAMS)
        .add_service(health_service)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(
            ConfigServiceServer::new(api.clone())
                .max_decoding_message_size(CONFIG_MESSAGE_LIMIT)
                .max_encoding_message_size(CONFIG_MESSAGE_LIMIT),
        )
        .add_service(StatusServiceServer::new(api.clone()))
        .add_service(StatsServiceServer::new(api.clone()))
        .add_service(FlowServiceServer::new(api.clone()))
        .add_service(PolicyServiceServer::new(api))
}

/// The most manifest bytes in one page of a paged List: gRPC's default
/// receive limit, so that any client can page through any state.
const PAGE_BYTES: usize = 4 << 20;

/// One page of a List: resources in id order after `page_token`, at most
/// `page_size` of them (0: all) and, when paged, at most [`PAGE_BYTES`] of
/// manifests (at least one resource).
///
/// # Errors
/// INVALID_ARGUMENT for a token this server did not make.
fn list_page(
    desired: &crate::store::Desired,
    r: &proto::ListRequest,
) -> Result<proto::ListResponse, Status> {
    use std::ops::Bound;
    let after = if r.page_token.is_empty() {
        Bound::Unbounded
    } else {
        let id = r.page_token.strip_prefix(PAGE_TOKEN).ok_or_else(|| {
            Status::invalid_argument(
                "page_token: not a token this appliance made; pass next_page_token as it came, or leave it empty for the first page",
            )
        })?;
        Bound::Excluded(id.to_owned())
    };
    let limit = if r.page_size == 0 {
        usize::MAX
    } else {
        r.page_size as usize
    };
    let mut resources: Vec<proto::Resource> = Vec::new();
    let mut bytes = 0usize;
    let mut next_page_token = String::new();
    let matching = desired
        .entries()
        .range::<_, String>((after, Bound::Unbounded))
        .map(|(id, e)| (id, convert::resource(e)))
        .filter(|(_, res)| {
            (r.kind.is_empty() || convert::kind_matches(res, &r.kind))
                && (r.namespace.is_empty() || res.namespace == r.namespace)
                && (r.owner.is_empty() || res.owner == r.owner)
        });
    let mut last: Option<&String> = None;
    for (id, res) in matching {
        let size = res.manifest_json.len();
        let full = resources.len() >= limit
            || (r.page_size != 0 && !resources.is_empty() && bytes + size > PAGE_BYTES);
        if full {
            next_page_token = format!("{PAGE_TOKEN}{}", last.expect("a resource was taken"));
            break;
        }
        bytes += size;
        resources.push(res);
        last = Some(id);
    }
    Ok(proto::ListResponse {
        generation: desired.generation,
        resources,
        next_page_token,
    })
}

/// What a page token starts with (then the id of the page's last
/// resource).
const PAGE_TOKEN: &str = "after:";

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("handler failed: {e}")))?
}

/// A request's wait: none or zero means [`DEFAULT_WAIT`]; a negative one
/// or one past [`MAX_WAIT`] is refused, naming `field`, before anything
/// changes.
fn wait_timeout(d: Option<prost_types::Duration>, field: &str) -> Result<Duration, Status> {
    let Some(d) = d else {
        return Ok(DEFAULT_WAIT);
    };
    let wait = Duration::try_from(d).map_err(|_| {
        Status::invalid_argument(format!(
            "{field}: {}s {}ns is not a wait (negative or malformed)",
            d.seconds, d.nanos
        ))
    })?;
    if wait > MAX_WAIT {
        return Err(Status::invalid_argument(format!(
            "{field}: {wait:?} is longer than the {MAX_WAIT:?} a request may wait; wait again instead"
        )));
    }
    Ok(if wait.is_zero() { DEFAULT_WAIT } else { wait })
}

/// The longest WatchStats interval: a client that wants fewer snapshots
/// asks GetStats when it wants one.
const MAX_STATS_INTERVAL: Duration = Duration::from_secs(3600);

/// A WatchStats interval: none or zero is 1 s, under 100 ms is 100 ms; a
/// negative one or one past [`MAX_STATS_INTERVAL`] is refused (never a
/// timer past the clock's range).
fn stats_interval(d: Option<prost_types::Duration>) -> Result<Duration, Status> {
    let Some(d) = d else {
        return Ok(Duration::from_secs(1));
    };
    let interval = Duration::try_from(d).map_err(|_| {
        Status::invalid_argument(format!(
            "interval: {}s {}ns is not an interval (negative or malformed)",
            d.seconds, d.nanos
        ))
    })?;
    if interval > MAX_STATS_INTERVAL {
        return Err(Status::invalid_argument(format!(
            "interval: {interval:?} is longer than {MAX_STATS_INTERVAL:?}; ask GetStats instead"
        )));
    }
    Ok(if interval.is_zero() {
        Duration::from_secs(1)
    } else {
        interval.max(Duration::from_millis(100))
    })
}

/// Waits for `c` to be enforced when asked; the time it took.
fn wait_if(
    node: &Node,
    c: &Committed,
    wait: bool,
    timeout: Duration,
) -> Result<Option<prost_types::Duration>, Status> {
    if !wait {
        return Ok(None);
    }
    match node.wait_enforced(c.generation, c.changed.then_some(c.started), timeout) {
        Ok(took) => Ok(prost_types::Duration::try_from(took).ok()),
        Err(enforced) => Err(Status::deadline_exceeded(format!(
            "generation {} is committed and saved, but after {timeout:?} some worker still enforces generation {enforced}",
            c.generation
        ))),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl proto::config_service_server::ConfigService for Api {
    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let r = request.into_inner();
        let node = self.node.clone();
        blocking(move || {
            let files: Vec<InputFile> = r
                .files
                .into_iter()
                .map(|f| InputFile {
                    name: if f.name.is_empty() {
                        "<request>".into()
                    } else {
                        f.name
                    },
                    text: f.text,
                })
                .collect();
            let owner = owner(&r.owner)?;
            let writer = Writer {
                owner,
                replace: if r.replace {
                    Replace::Owned
                } else {
                    Replace::Nothing
                },
                force: r.force,
                expected: r.expected_generation,
                allow_no_policy: r.allow_no_policy,
            };
            let delete: Vec<String> = r
                .delete
                .iter()
                .map(|x| ref_id(&x.kind, &x.namespace, &x.name))
                .collect();
            let timeout = wait_timeout(r.wait_timeout, "wait_timeout")?;
            let c = node
                .apply(&files, &delete, writer, r.dry_run)
                .map_err(change_status)?;
            let enforced_after = wait_if(&node, &c, r.wait_enforced && !r.dry_run, timeout)?;
            Ok(Response::new(proto::ApplyResponse {
                generation: c.generation,
                changed: c.changed,
                changes: convert::changes(&c.changes),
                enforced_after,
            }))
        })
        .await
    }

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::Resource>, Status> {
        let r = request
            .into_inner()
            .resource
            .ok_or_else(|| Status::invalid_argument("resource: name the resource to get"))?;
        let id = ref_id(&r.kind, &r.namespace, &r.name);
        let desired = self.node.desired();
        desired
            .entries()
            .get(&id)
            .map(|e| Response::new(convert::resource(e)))
            .ok_or_else(|| Status::not_found(format!("{id} does not exist")))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let r = request.into_inner();
        let desired = self.node.desired();
        let page = list_page(&desired, &r)?;
        Ok(Response::new(page))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        let r = request.into_inner();
        if r.resources.is_empty() {
            return Err(Status::invalid_argument(
                "resources: name at least one resource to delete",
            ));
        }
        let node = self.node.clone();
        blocking(move || {
            let ids: Vec<String> = r
                .resources
                .iter()
                .map(|x| ref_id(&x.kind, &x.namespace, &x.name))
                .collect();
            let writer = Writer {
                force: r.force,
                expected: r.expected_generation,
                allow_no_policy: r.allow_no_policy,
                ..Writer::new(owner(&r.owner)?)
            };
            let timeout = wait_timeout(r.wait_timeout, "wait_timeout")?;
            let c = node.delete(&ids, writer).map_err(change_status)?;
            let enforced_after = wait_if(&node, &c, r.wait_enforced, timeout)?;
            Ok(Response::new(proto::DeleteResponse {
                generation: c.generation,
                changes: convert::changes(&c.changes),
                enforced_after,
            }))
        })
        .await
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        // Subscribe first, so nothing falls between the list and the watch.
        let mut rx = self.node.subscribe();
        let desired = self.node.desired();
        let mut initial = Vec::new();
        match r.from_generation {
            0 => {
                for e in desired.entries().values() {
                    let res = convert::resource(e);
                    if r.kind.is_empty() || convert::kind_matches(&res, &r.kind) {
                        initial.push(Ok(proto::WatchEvent {
                            r#type: proto::watch_event::Type::Added as i32,
                            generation: desired.generation,
                            resource: Some(res),
                        }));
                    }
                }
                initial.push(Ok(proto::WatchEvent {
                    r#type: proto::watch_event::Type::Synced as i32,
                    generation: desired.generation,
                    resource: None,
                }));
            }
            g if g == desired.generation => {}
            g => {
                return Err(Status::out_of_range(format!(
                    "cannot watch from generation {g}: the appliance is at {}; watch from 0 (list, then changes) or from the current generation",
                    desired.generation
                )));
            }
        }
        let from = desired.generation;
        let kind = r.kind;
        let changes = async_stream(move |tx| async move {
            loop {
                match rx.recv().await {
                    Ok(batch) => {
                        for ev in batch.iter().filter(|ev| ev.generation > from) {
                            let res = convert::event_resource(ev);
                            if !kind.is_empty() && !convert::kind_matches(&res, &kind) {
                                continue;
                            }
                            let t = match ev.action {
                                crate::store::Action::Created => proto::watch_event::Type::Added,
                                crate::store::Action::Deleted => proto::watch_event::Type::Deleted,
                                _ => proto::watch_event::Type::Modified,
                            };
                            let item = proto::WatchEvent {
                                r#type: t as i32,
                                generation: ev.generation,
                                resource: Some(res),
                            };
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "the watcher fell {n} changes behind; watch again from 0"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::iter(initial).chain(changes),
        )))
    }
}

/// A stream fed by a task.
fn async_stream<T: Send + 'static, F>(
    f: impl FnOnce(tokio::sync::mpsc::Sender<T>) -> F,
) -> tokio_stream::wrappers::ReceiverStream<T>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The owner a request names (empty: [`OWNER_CTL`]).
///
/// # Errors
/// INVALID_ARGUMENT when it is too long or not printable ASCII.
fn owner(named: &str) -> Result<&str, Status> {
    if named.is_empty() {
        return Ok(OWNER_CTL);
    }
    if named.len() > 64 || !named.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Status::invalid_argument(format!(
            "owner: `{}` is not an owner name: at most 64 printable ASCII characters, no spaces (e.g. sync/cluster-a)",
            named.escape_default()
        )));
    }
    Ok(named)
}

/// Whether `e` comes from a full disk (or quota): the writer may retry
/// once space is freed, so it is RESOURCE_EXHAUSTED, not INTERNAL.
fn disk_full(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
}

fn change_status(e: ChangeError) -> Status {
    use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
    match e {
        ChangeError::Io(e) if disk_full(&e) => Status::resource_exhausted(format!(
            "saving the configuration failed, the state directory's disk is full; nothing changed (the last acknowledged generation stays in force): free space there, then retry: {e:#}"
        )),
        ChangeError::Io(e) => Status::internal(format!(
            "saving the configuration failed; nothing changed: {e:#}"
        )),
        ChangeError::Refused(crate::store::Refusal::Conflict { expected, current }) => {
            Status::aborted(format!(
                "expected generation {expected}, but the configuration is at generation {current}: another writer changed it; read it again and retry"
            ))
        }
        ChangeError::Refused(r @ crate::store::Refusal::Held { .. }) => {
            // One violation per held resource, as for an invalid batch, so
            // a client (a sync) can tell which resources to leave out.
            let crate::store::Refusal::Held { held, .. } = &r else {
                unreachable!("matched above")
            };
            let violations: Vec<FieldViolation> = held
                .iter()
                .map(|h| {
                    FieldViolation::new(
                        format!("{}:metadata.owner", h.id),
                        format!("held by {}", h.owner),
                    )
                })
                .collect();
            Status::with_error_details(
                Code::FailedPrecondition,
                r.to_string(),
                ErrorDetails::with_bad_request(violations),
            )
        }
        ChangeError::Refused(r @ crate::store::Refusal::NoPolicyLeft { .. }) => {
            Status::failed_precondition(r.to_string())
        }
        ChangeError::Refused(crate::store::Refusal::NotFound(ids)) => {
            Status::not_found(format!("not found, nothing deleted: {}", ids.join(", ")))
        }
        ChangeError::Refused(crate::store::Refusal::Invalid(errors)) => {
            let violations: Vec<FieldViolation> = errors
                .iter()
                .map(|e| {
                    let field = format!(
                        "{}:{}",
                        e.resource.as_deref().unwrap_or("-"),
                        e.field.as_deref().unwrap_or("")
                    );
                    FieldViolation::new(field, convert::located(e))
                })
                .collect();
            let mut message = format!("{} error(s); nothing was applied", errors.len());
            for e in &errors {
                message.push_str(&format!("\n  {e}"));
            }
            Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(violations),
            )
        }
    }
}

#[tonic::async_trait]
impl proto::status_service_server::StatusService for Api {
    async fn get_status(
        &self,
        _: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        let node = self.node.clone();
        blocking(move || Ok(Response::new(convert::status(&node)))).await
    }

    async fn wait_enforced(
        &self,
        request: Request<proto::WaitEnforcedRequest>,
    ) -> Result<Response<proto::Status>, Status> {
        let r = request.into_inner();
        let node = self.node.clone();
        blocking(move || {
            let timeout = wait_timeout(r.timeout, "timeout")?;
            node.wait_enforced(r.generation, None, timeout)
                .map_err(|enforced| {
                    Status::deadline_exceeded(format!(
                        "after {timeout:?} some worker still enforces generation {enforced}, not {}",
                        r.generation
                    ))
                })?;
            Ok(Response::new(convert::status(&node)))
        })
        .await
    }

    async fn drain(
        &self,
        request: Request<proto::DrainRequest>,
    ) -> Result<Response<proto::DrainResponse>, Status> {
        let grace = drain_grace(request.into_inner().grace)?;
        let started = std::time::Instant::now();
        // Not serving first, everywhere a balancer or a probe looks; then
        // the grace for them to notice; then no new connections.
        self.probes.set_ready(false);
        for name in health_names() {
            self.health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        info!(?grace, "drain: health and /ready say NOT_SERVING");
        tokio::time::sleep(grace).await;
        let node = self.node.clone();
        let drained_now = blocking(move || Ok(node.drain())).await?;
        let took = prost_types::Duration::try_from(started.elapsed())
            .map_err(|e| Status::internal(format!("took: {e}")))?;
        Ok(Response::new(proto::DrainResponse {
            drained_now,
            took: Some(took),
        }))
    }
}

/// A Drain's grace: none is zero; negative or past [`MAX_WAIT`] is
/// refused before anything changes.
fn drain_grace(d: Option<prost_types::Duration>) -> Result<Duration, Status> {
    let Some(d) = d else {
        return Ok(Duration::ZERO);
    };
    match Duration::try_from(d) {
        Ok(grace) if grace <= MAX_WAIT => Ok(grace),
        _ => Err(Status::invalid_argument(format!(
            "grace: {}s {}ns is not a grace period (negative, malformed or over {}s)",
            d.seconds,
            d.nanos,
            MAX_WAIT.as_secs()
        ))),
    }
}

#[tonic::async_trait]
impl proto::policy_service_server::PolicyService for Api {
    async fn explain(
        &self,
        request: Request<proto::ExplainRequest>,
    ) -> Result<Response<proto::ExplainResponse>, Status> {
        let r = request.into_inner();
        let policy = self.node.policy();
        convert::explain(&policy.1, policy.0, &r).map(Response::new)
    }
}

#[tonic::async_trait]
impl proto::stats_service_server::StatsService for Api {
    async fn get_stats(
        &self,
        _: Request<proto::GetStatsRequest>,
    ) -> Result<Response<proto::Stats>, Status> {
        let node = self.node.clone();
        blocking(move || Ok(Response::new(stats::snapshot(&node)))).await
    }

    type WatchStatsStream = Pin<Box<dyn Stream<Item = Result<proto::Stats, Status>> + Send>>;

    async fn watch_stats(
        &self,
        request: Request<proto::WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        let interval = stats_interval(request.into_inner().interval)?;
        let node = self.node.clone();
        let s = async_stream(move |tx| async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let n = node.clone();
                let Ok(snap) = tokio::task::spawn_blocking(move || stats::snapshot(&n)).await
                else {
                    return;
                };
                if tx.send(Ok(snap)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(s)))
    }
}

#[tonic::async_trait]
impl proto::flow_service_server::FlowService for Api {
    type StreamFlowsStream = Pin<Box<dyn Stream<Item = Result<proto::FlowRecord, Status>> + Send>>;

    async fn stream_flows(
        &self,
        request: Request<proto::FlowFilter>,
    ) -> Result<Response<Self::StreamFlowsStream>, Status> {
        let filter = flows::Filter::new(request.into_inner())?;
        Ok(Response::new(Box::pin(self.flows.subscribe(filter))))
    }
}

/// `name=interface,...` of the running dataplane, for the start log line.
pub fn describe_ports(node: &Node) -> String {
    node.dataplane_stats()
        .ports
        .iter()
        .map(|(p, _)| format!("{}={}", p.name, p.interface))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(seconds: i64, nanos: i32) -> Result<Duration, Status> {
        wait_timeout(
            Some(prost_types::Duration { seconds, nanos }),
            "wait_timeout",
        )
    }

    #[test]
    fn a_stats_interval_is_bounded() {
        let i = |seconds, nanos| stats_interval(Some(prost_types::Duration { seconds, nanos }));
        assert_eq!(stats_interval(None).unwrap(), Duration::from_secs(1));
        assert_eq!(i(0, 0).unwrap(), Duration::from_secs(1));
        assert_eq!(i(0, 1).unwrap(), Duration::from_millis(100));
        assert_eq!(i(3600, 0).unwrap(), MAX_STATS_INTERVAL);
        for (s, n) in [(3601, 0), (i64::MAX, 999_999_999), (-1, 0)] {
            let e = i(s, n).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().starts_with("interval: "), "{}", e.message());
        }
    }

    fn seeded(n: usize) -> crate::store::Desired {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: s{i:03}}}\nspec: {{nets: [10.0.{}.{}/32]}}\n---\n",
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let loaded = causeway_policy::load::load_str(&text, Path::new("sets.yaml")).expect("loads");
        crate::store::Desired::seed(loaded)
    }

    #[test]
    fn a_list_pages_in_id_order_and_a_foreign_token_is_refused() {
        let d = seeded(10);
        let mut request = proto::ListRequest {
            page_size: 3,
            ..Default::default()
        };
        let mut names = Vec::new();
        let mut pages = 0;
        loop {
            let page = list_page(&d, &request).expect("a page");
            pages += 1;
            assert!(page.resources.len() <= 3);
            names.extend(page.resources.iter().map(|r| r.name.clone()));
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        assert_eq!(pages, 4);
        let want: Vec<String> = (0..10).map(|i| format!("s{i:03}")).collect();
        assert_eq!(names, want);
        let all = list_page(&d, &proto::ListRequest::default()).unwrap();
        assert_eq!(all.resources.len(), 10);
        assert!(all.next_page_token.is_empty());
        let e = list_page(
            &d,
            &proto::ListRequest {
                page_token: "GlobalNetworkSet/s001".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[test]
    fn a_wait_is_bounded_and_a_bad_one_is_named_not_a_panic() {
        assert_eq!(wait_timeout(None, "timeout").unwrap(), DEFAULT_WAIT);
        assert_eq!(wait(0, 0).unwrap(), DEFAULT_WAIT);
        assert_eq!(wait(2, 500_000_000).unwrap(), Duration::from_millis(2500));
        assert_eq!(wait(600, 0).unwrap(), MAX_WAIT);
        for (s, n, says) in [
            (601, 0, "longer than the 600s"),
            (i64::MAX, 999_999_999, "longer than the 600s"),
            (-1, 0, "is not a wait"),
            (i64::MIN, 0, "is not a wait"),
        ] {
            let e = wait(s, n).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().starts_with("wait_timeout: "), "{}", e.message());
            assert!(e.message().contains(says), "{}", e.message());
        }
    }

    #[test]
    fn a_drain_grace_is_bounded_and_none_is_zero() {
        let grace = |seconds, nanos| drain_grace(Some(prost_types::Duration { seconds, nanos }));
        assert_eq!(drain_grace(None).unwrap(), Duration::ZERO);
        assert_eq!(grace(2, 0).unwrap(), Duration::from_secs(2));
        for (s, n) in [(-1, 0), (601, 0), (i64::MAX, 0)] {
            let e = grace(s, n).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().starts_with("grace: "), "{}", e.message());
        }
    }
}
