//! The access log's records as the engine makes them: one per
//! connection, with its client (a trusted balancer's), upstream, bytes,
//! duration and close reason.

use std::{io::Write, sync::Arc, time::Duration};

use super::tests::{Sim, addr, plain_spec};
use super::*;
use crate::proxy::Header;

const LISTEN: ([u8; 4], u16) = ([10, 100, 0, 10], 443);
const LB: [u8; 4] = [10, 9, 0, 5];

fn spec(trusted: &[&str]) -> ServiceSpec {
    let mut spec = plain_spec(vec![addr(1)]);
    spec.proxy = ProxyProtocol {
        local: LISTEN.into(),
        send: false,
        trusted: trusted.iter().map(|c| c.parse().unwrap()).collect(),
    };
    spec
}

/// `sim`'s engine, offering its records to an access log writing into
/// the returned buffer.
fn logged(sim: &mut Sim) -> (crate::access_log::AccessLog, Arc<std::sync::Mutex<Vec<u8>>>) {
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = crate::access_log::AccessLog::with_writer(Box::new(Shared(got.clone())), 64);
    let metrics = Arc::new(WorkerMetrics::new([]));
    let engine = std::mem::replace(
        &mut sim.engine,
        Engine::new(Vec::new(), 0, sim.now, metrics),
    );
    sim.engine = engine.with_access_log(Some(log.sender()));
    (log, got)
}

#[test]
fn each_connection_leaves_one_record_with_its_close_reason() {
    let mut sim = Sim::new(spec(&["10.9.0.0/16"]));
    let (log, got) = logged(&mut sim);
    // Through a trusted balancer, served to the end.
    let k = sim.accept_from(LB);
    let mut lb = Vec::new();
    Header::proxy("198.51.100.7:4242".parse().unwrap(), LISTEN.into()).emit(&mut lb);
    lb.extend_from_slice(b"ping");
    sim.client_send(k, &lb);
    sim.advance(Duration::from_millis(250));
    sim.client_fin(k);
    assert_eq!(sim.conn(k).closed, Some(false));
    // Silent after its accept: the first-byte timeout.
    let silent = sim.accept();
    sim.advance(Duration::from_secs(11));
    assert!(sim.conn(silent).closed.is_some());
    // A forged header: refused.
    let forged = sim.accept();
    sim.client_send(forged, &lb);
    drop(sim);
    log.close();
    let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let served = &lines[0];
    assert_eq!(served["service"], "demo");
    assert_eq!(
        served["client"], "198.51.100.7:4242",
        "the balancer's client"
    );
    assert_eq!(served["upstream"], addr(1).to_string());
    assert_eq!(served["bytes_from_client"], 4);
    assert_eq!(served["bytes_to_client"], 4, "echoed");
    assert_eq!(served["duration_ms"], 250.0);
    assert_eq!(served["close"], "done");
    assert_eq!(served["identity"], serde_json::Value::Null);
    assert_eq!(lines[1]["close"], "first_byte_timeout");
    assert_eq!(lines[1]["upstream"], addr(1).to_string());
    assert_eq!(lines[2]["close"], "refused");
    // A plain service connects at accept; the forged header never
    // reached the upstream.
    assert_eq!(lines[2]["bytes_from_client"], 0);
}
