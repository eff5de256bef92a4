//! The access log's channel: records become JSON lines off the caller's
//! thread, and a flood past the capacity is dropped and counted while the
//! caller goes on.

use std::sync::{Mutex, mpsc::Sender};

use super::*;

fn record(i: u16) -> AccessRecord {
    AccessRecord {
        closed: Instant::now(),
        service: Some("demo".into()),
        client: SocketAddr::from(([10, 1, 0, 2], i)),
        identity: Some("spiffe://lab/ns/a/sa/client".into()),
        alpn: Some("h2".into()),
        upstream: Some("10.2.0.2:8081".parse().unwrap()),
        bytes_from_client: 100,
        bytes_to_client: 2000,
        duration: Duration::from_millis(1500),
        close: CloseReason::Done,
    }
}

/// A sink that tells when its first write starts and holds it until
/// released; what it got, shared.
struct Gate {
    started: Option<Sender<()>>,
    release: Arc<Mutex<()>>,
    got: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(s) = self.started.take() {
            let _ = s.send(());
        }
        let _held = self.release.lock().unwrap();
        self.got.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_record_becomes_one_json_line_with_every_field() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate {
        started: None,
        release: Arc::new(Mutex::new(())),
        got: got.clone(),
    };
    let log = AccessLog::with_writer(Box::new(gate), 16);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    log.sender().offer(record(40000));
    log.close();
    let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["service"], "demo");
    assert_eq!(v["client"], "10.1.0.2:40000");
    assert_eq!(v["identity"], "spiffe://lab/ns/a/sa/client");
    assert_eq!(v["alpn"], "h2");
    assert_eq!(v["upstream"], "10.2.0.2:8081");
    assert_eq!(v["bytes_from_client"], 100);
    assert_eq!(v["bytes_to_client"], 2000);
    assert_eq!(v["duration_ms"], 1500.0);
    assert_eq!(v["close"], "done");
    let ts = v["ts"].as_f64().unwrap();
    assert!(ts >= before - 1.0 && ts < before + 60.0, "{ts} vs {before}");
}

#[test]
fn a_flood_past_the_capacity_is_dropped_and_counted_without_blocking() {
    let (started_tx, started_rx) = mpsc::channel();
    let release = Arc::new(Mutex::new(()));
    let got = Arc::new(Mutex::new(Vec::new()));
    let held = release.lock().unwrap();
    let gate = Gate {
        started: Some(started_tx),
        release: release.clone(),
        got: got.clone(),
    };
    let log = AccessLog::with_writer(Box::new(gate), 8);
    let tx = log.sender();
    // The writer takes the first record and is stuck writing it.
    tx.offer(record(1));
    started_rx.recv().unwrap();
    // 999 more on this thread: were `offer` to wait for room, this loop
    // would never end, since the writer is held until after it.
    for i in 2..=1000 {
        tx.offer(record(i));
    }
    assert_eq!(log.dropped(), 1000 - 1 - 8, "8 wait in the channel");
    drop(held);
    drop(tx);
    let dropped = log.dropped();
    log.close();
    let lines = String::from_utf8(got.lock().unwrap().clone())
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 9, "the one being written and the 8 queued");
    assert_eq!(dropped, 991);
}
