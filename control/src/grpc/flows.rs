//! The flow stream: a thread drains the dataplane's and the terminator's
//! taps every 20 ms while anyone listens and fans the records out to the
//! subscribers, each with its own filter.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use tokio::sync::broadcast;
use tokio_stream::Stream;
use tonic::Status;

use crate::proto::FlowRecord;

const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Collects flow records and hands them to subscribers.
#[derive(Debug)]
pub struct FlowHub {
    tx: broadcast::Sender<Arc<Vec<FlowRecord>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl FlowHub {
    /// Starts the drain thread.
    pub fn start() -> Arc<Self> {
        let (tx, _) = broadcast::channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let hub = Arc::new(Self {
            tx: tx.clone(),
            stop: stop.clone(),
            thread: Mutex::new(None),
        });
        let handle = thread::Builder::new()
            .name("cw-flows".into())
            .spawn(move || drain(&tx, &stop))
            .expect("spawning the flow thread");
        *hub.thread.lock().expect("not poisoned") = Some(handle);
        hub
    }

    /// Records matching `filter`, until the subscriber goes away.
    pub fn subscribe(
        &self,
        filter: Filter,
    ) -> impl Stream<Item = Result<FlowRecord, Status>> + Send + 'static {
        let mut rx = self.tx.subscribe();
        let (out, stream) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut lost = 0u64;
            loop {
                match rx.recv().await {
                    Ok(batch) => {
                        for r in batch.iter().filter(|r| filter.matches(r)) {
                            let mut r = r.clone();
                            r.dropped += lost;
                            match out.try_send(Ok(r)) {
                                Ok(()) => {
                                    lost = 0;
                                    sent += 1;
                                }
                                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => lost += 1,
                                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                            }
                            if filter.limit != 0 && sent >= filter.limit {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => lost += n,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                if out.is_closed() {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(stream)
    }
}

impl Drop for FlowHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }
}

fn drain(tx: &broadcast::Sender<Arc<Vec<FlowRecord>>>, stop: &AtomicBool) {
    use causeway_dataplane::flows::TAP as DP;
    use causeway_tls::flows::TAP as TLS;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(DRAIN_EVERY);
        let listening = tx.receiver_count() > 0;
        if DP.is_on() != listening {
            DP.set_on(listening);
            TLS.set_on(listening);
        }
        if !listening {
            continue;
        }
        let (dp, dp_lost) = DP.drain();
        let (tls, tls_lost) = TLS.drain();
        let mut batch: Vec<FlowRecord> = dp.into_iter().map(from_dataplane).collect();
        batch.extend(tls.into_iter().map(from_terminator));
        if let Some(first) = batch.first_mut() {
            first.dropped = dp_lost + tls_lost;
        }
        if !batch.is_empty() {
            let _ = tx.send(Arc::new(batch));
        }
    }
    DP.set_on(false);
    TLS.set_on(false);
}

fn timestamp(t: std::time::SystemTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(t))
}

fn from_dataplane(r: causeway_dataplane::flows::FlowRecord) -> FlowRecord {
    FlowRecord {
        at: timestamp(r.at),
        source: "dataplane".into(),
        src: r.src.to_string(),
        sport: r.sport.into(),
        dst: r.dst.to_string(),
        dport: r.dport.into(),
        protocol: r.proto.into(),
        verdict: if r.allow { "allow" } else { "deny" }.into(),
        rule: r.rule,
        bytes: r.bytes.into(),
        tls_identity: String::new(),
        service: String::new(),
        dropped: 0,
        generation: r.generation,
    }
}

fn from_terminator(r: causeway_tls::flows::FlowRecord) -> FlowRecord {
    let (dst, dport) = r.upstream.map_or((String::new(), 0), |u| {
        (u.ip().to_string(), u.port().into())
    });
    FlowRecord {
        at: timestamp(r.at),
        source: "terminator".into(),
        src: r.client.ip().to_canonical().to_string(),
        sport: r.client.port().into(),
        dst,
        dport,
        protocol: 6,
        verdict: if r.upstream.is_some() {
            "allow"
        } else {
            "deny"
        }
        .into(),
        rule: String::new(),
        bytes: r.bytes[0] + r.bytes[1],
        tls_identity: r.identity.unwrap_or_default(),
        service: r.service,
        dropped: 0,
        generation: 0,
    }
}

/// A subscriber's filter.
#[derive(Debug, Clone)]
pub struct Filter {
    address: Option<IpAddr>,
    port: u32,
    protocol: Option<u32>,
    verdict: String,
    source: String,
    limit: u64,
}

impl Filter {
    /// Checks a request's filter.
    ///
    /// # Errors
    /// A field that does not parse, named.
    #[allow(clippy::result_large_err)]
    pub fn new(f: crate::proto::FlowFilter) -> Result<Self, Status> {
        let address = match f.address.as_str() {
            "" => None,
            a => Some(a.parse::<IpAddr>().map_err(|_| {
                Status::invalid_argument(format!("address: `{a}` is not an IP address"))
            })?),
        };
        let protocol = match f.protocol.to_ascii_lowercase().as_str() {
            "" => None,
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => Some(1),
            "icmpv6" => Some(58),
            n => Some(n.parse::<u8>().map(u32::from).map_err(|_| {
                Status::invalid_argument(format!(
                    "protocol: `{n}` is not tcp, udp, icmp, icmpv6 or a number up to 255"
                ))
            })?),
        };
        if !matches!(f.verdict.as_str(), "" | "allow" | "deny") {
            return Err(Status::invalid_argument(format!(
                "verdict: `{}` is not allow or deny",
                f.verdict
            )));
        }
        if !matches!(f.source.as_str(), "" | "dataplane" | "terminator") {
            return Err(Status::invalid_argument(format!(
                "source: `{}` is not dataplane or terminator",
                f.source
            )));
        }
        if f.port > 65535 {
            return Err(Status::invalid_argument(format!(
                "port: {} is not a port",
                f.port
            )));
        }
        Ok(Self {
            address,
            port: f.port,
            protocol,
            verdict: f.verdict,
            source: f.source,
            limit: f.limit,
        })
    }

    fn matches(&self, r: &FlowRecord) -> bool {
        let addr_ok = self.address.is_none_or(|a| {
            let a = a.to_canonical().to_string();
            r.src == a || r.dst == a
        });
        addr_ok
            && (self.port == 0 || r.dport == self.port)
            && self.protocol.is_none_or(|p| r.protocol == p)
            && (self.verdict.is_empty() || r.verdict == self.verdict)
            && (self.source.is_empty() || r.source == self.source)
    }
}
