//! What the sync says about itself: `GET /status` (JSON, read by `causeway
//! sync status`) and `GET /metrics` (Prometheus text), served over HTTP/1.1
//! on a Unix socket (mode 0600) and, optionally, on TCP for Prometheus.

use std::{
    fmt::Write as _,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, Mutex as StdMutex},
    time::SystemTime,
};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Mutex,
};
use tracing::debug;

use super::{inventory::Inventory, push::ApplianceStatus};

/// Everything the pages are made from.
#[derive(Clone)]
pub struct Shared {
    /// The sync's name and owner.
    pub name: String,
    /// The owner it writes as.
    pub owner: String,
    /// The inventory.
    pub inventory: Arc<Mutex<Inventory>>,
    /// Per appliance.
    pub appliances: Vec<Arc<StdMutex<ApplianceStatus>>>,
}

fn secs(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

/// The `/status` document.
pub async fn status(s: &Shared) -> Value {
    let mut inv = s.inventory.lock().await;
    inv.refresh();
    let desired = inv.desired();
    let sources: Vec<Value> = inv
        .statuses()
        .into_iter()
        .map(|st| {
            let events: u64 = st.events.values().sum();
            let problems: serde_json::Map<String, Value> = desired
                .problems
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{}:", st.name)))
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "name": st.name, "kind": st.kind, "synced": st.synced,
                "connected": st.connected, "revision": st.revision,
                "last_event": secs(st.last_event), "lists": st.lists, "compactions": st.compactions,
                "events": events,
                "error": st.error, "problems": problems,
            })
        })
        .collect();
    let synced = inv.synced();
    let version = inv.version();
    let (resources, problems) = (desired.resources.len(), desired.problems.len());
    drop(inv);
    let appliances: Vec<Value> = s
        .appliances
        .iter()
        .map(|a| {
            let a = a.lock().expect("not poisoned");
            json!({
                "address": a.addr, "connected": a.connected, "generation": a.generation,
                "enforced": a.enforced, "version": a.version, "behind": version.saturating_sub(a.version),
                "pushes": a.pushes, "resources_pushed": a.resources_pushed,
                "last_push": secs(a.last_push), "lag_seconds": a.lag.map(|d| d.as_secs_f64()),
                "error": a.error, "rejected": a.rejected,
            })
        })
        .collect();
    json!({
        "name": s.name, "owner": s.owner, "synced": synced,
        "inventory": {"version": version, "resources": resources, "problems": problems},
        "sources": sources, "appliances": appliances,
    })
}

/// The `/metrics` text.
pub async fn metrics(s: &Shared) -> String {
    let mut out = String::new();
    let mut inv = s.inventory.lock().await;
    inv.refresh();
    let desired = inv.desired();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(
        &mut out,
        "causeway_sync_source_synced",
        "1 once the source's first complete list is in.",
    );
    let statuses = inv.statuses();
    for st in &statuses {
        let _ = writeln!(
            out,
            "causeway_sync_source_synced{{source=\"{}\"}} {}",
            st.name,
            u8::from(st.synced)
        );
    }
    gauge(
        &mut out,
        "causeway_sync_source_connected",
        "1 while the source's datastore answers.",
    );
    for st in &statuses {
        let _ = writeln!(
            out,
            "causeway_sync_source_connected{{source=\"{}\"}} {}",
            st.name,
            u8::from(st.connected)
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_sync_source_lists_total Complete lists read (the first, and relists).\n# TYPE causeway_sync_source_lists_total counter"
    );
    for st in &statuses {
        let _ = writeln!(
            out,
            "causeway_sync_source_lists_total{{source=\"{}\"}} {}",
            st.name, st.lists
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_sync_events_total Watch events by source, kind and type.\n# TYPE causeway_sync_events_total counter"
    );
    for st in &statuses {
        for ((kind, event), n) in &st.events {
            let _ = writeln!(
                out,
                "causeway_sync_events_total{{source=\"{}\",kind=\"{kind}\",type=\"{event}\"}} {n}",
                st.name
            );
        }
    }
    gauge(
        &mut out,
        "causeway_sync_inventory_resources",
        "Resources the inventory holds.",
    );
    let _ = writeln!(
        out,
        "causeway_sync_inventory_resources {}",
        desired.resources.len()
    );
    gauge(
        &mut out,
        "causeway_sync_inventory_problems",
        "Source objects reported and skipped.",
    );
    let _ = writeln!(
        out,
        "causeway_sync_inventory_problems {}",
        desired.problems.len()
    );
    drop(inv);
    gauge(
        &mut out,
        "causeway_sync_appliance_connected",
        "1 while the appliance answers.",
    );
    for a in &s.appliances {
        let a = a.lock().expect("not poisoned");
        let _ = writeln!(
            out,
            "causeway_sync_appliance_connected{{appliance=\"{}\"}} {}",
            a.addr,
            u8::from(a.connected)
        );
    }
    gauge(
        &mut out,
        "causeway_sync_appliance_generation",
        "The appliance's generation after this sync's last change.",
    );
    for a in &s.appliances {
        let a = a.lock().expect("not poisoned");
        let _ = writeln!(
            out,
            "causeway_sync_appliance_generation{{appliance=\"{}\"}} {}",
            a.addr, a.generation
        );
    }
    gauge(
        &mut out,
        "causeway_sync_appliance_rejected",
        "Resources the appliance refused, left out of pushes.",
    );
    for a in &s.appliances {
        let a = a.lock().expect("not poisoned");
        let _ = writeln!(
            out,
            "causeway_sync_appliance_rejected{{appliance=\"{}\"}} {}",
            a.addr,
            a.rejected.len()
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_sync_pushes_total Pushes that changed the appliance.\n# TYPE causeway_sync_pushes_total counter"
    );
    for a in &s.appliances {
        let a = a.lock().expect("not poisoned");
        let _ = writeln!(
            out,
            "causeway_sync_pushes_total{{appliance=\"{}\"}} {}",
            a.addr, a.pushes
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_sync_push_seconds An Apply's round trip, commit and enforcement on every worker included.\n# TYPE causeway_sync_push_seconds histogram"
    );
    for a in &s.appliances {
        let a = a.lock().expect("not poisoned");
        a.push_latency.write_samples(
            &mut out,
            "causeway_sync_push_seconds",
            &format!("appliance=\"{}\"", a.addr),
        );
    }
    let _ = writeln!(
        out,
        "# HELP causeway_sync_lag_seconds From a change's arrival at the sync to every worker of the appliance enforcing it.\n# TYPE causeway_sync_lag_seconds histogram"
    );
    for a in &s.appliances {
        let a = a.lock().expect("not poisoned");
        a.lag_histogram.write_samples(
            &mut out,
            "causeway_sync_lag_seconds",
            &format!("appliance=\"{}\"", a.addr),
        );
    }
    out
}

/// Answers one HTTP/1.1 request.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut conn: S,
    shared: Shared,
) -> Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 << 10 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (code, ctype, body) = match path {
        "/status" => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&status(&shared).await)?,
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            metrics(&shared).await,
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "try /status or /metrics\n".to_owned(),
        ),
    };
    let answer = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(answer.as_bytes()).await?;
    conn.shutdown().await?;
    Ok(())
}

/// Serves the pages on the Unix socket `path` (replacing a stale one).
///
/// # Errors
/// The socket cannot be bound.
pub fn start_unix(path: &Path, shared: Shared) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: is another causeway sync running?",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(conn, shared).await {
                    debug!(error = %e, "status connection");
                }
            });
        }
    });
    Ok(())
}

/// Serves the pages on TCP (for Prometheus).
///
/// # Errors
/// The address cannot be bound.
pub async fn start_tcp(addr: std::net::SocketAddr, shared: Shared) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics_listen: binding {addr}"))?;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(conn, shared).await {
                    debug!(error = %e, "metrics connection");
                }
            });
        }
    });
    Ok(())
}
