//! The TCP control API's cap on concurrent streams (issue 19, item 11):
//! one HTTP/2 connection may hold at most 64 calls open at once
//! (SETTINGS_MAX_CONCURRENT_STREAMS); the excess wait in the client until
//! a stream ends, instead of piling up handlers on the appliance.
//!
//! The client is tonic with mTLS (the lab's admin identity), as causeway
//! sync speaks; the API listens on 127.0.0.1:7443 in the appliance's
//! namespace, reached through a relay started there that joins a Unix
//! socket (visible from any namespace) to it, so the test's own process
//! holds the one HTTP/2 connection.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use causeway_control::proto::{
    GetStatusRequest, WatchRequest, config_service_client::ConfigServiceClient,
    status_service_client::StatusServiceClient,
};
use causeway_tests::{Lab, Reaped, require, wait_for};
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// The cap the appliance advertises (control/src/grpc: `MAX_STREAMS`).
const MAX_STREAMS: usize = 64;
/// Calls opened at once: past the cap, below hyper's own default (200),
/// so that without the cap every one of them would be served.
const CALLS: usize = 100;

/// Accepts on the Unix socket argv[1] and joins each connection to
/// 127.0.0.1:7443 of the namespace it runs in.
const RELAY: &str = r#"
import os, socket, sys, threading
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(4)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
while True:
    c, _ = server.accept()
    t = socket.create_connection(("127.0.0.1", 7443))
    threading.Thread(target=pipe, args=(c, t), daemon=True).start()
    threading.Thread(target=pipe, args=(t, c), daemon=True).start()
"#;

/// One HTTP/2 connection to the lab's TCP API, as the admin identity.
async fn connect(pki: &str, socket: PathBuf) -> Channel {
    let read = |f: &str| std::fs::read(format!("{pki}/{f}")).expect("the lab's PKI");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(
            read("client.pem"),
            read("client-key.pem"),
        ))
        .domain_name("demo.causeway.lab");
    Endpoint::from_static("https://demo.causeway.lab:7443")
        .tls_config(tls)
        .expect("TLS config")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to the TCP API through the relay")
}

/// Ids answered (response headers came) until nothing more comes for a
/// while: the calls the appliance serves at once.
async fn answered_until_quiet(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, bool)>,
    answered: &mut BTreeSet<usize>,
    refused: &mut usize,
) {
    while let Ok(Some((id, ok))) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
        if ok {
            answered.insert(id);
        } else {
            *refused += 1;
        }
    }
}

#[test]
fn one_connection_to_the_tcp_api_is_served_at_most_64_calls_at_once() {
    require("python3", "python3");
    let lab = Lab::start("st");
    let pki = format!("/run/causeway/lab/{}/pki", lab.name);
    let socket = PathBuf::from(format!("/run/causeway/lab/{}/api-relay.sock", lab.name));
    let _ = std::fs::remove_file(&socket);
    let _relay = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("gw"), "python3", "-c", RELAY])
            .arg(&socket)
            .spawn()
            .expect("start the relay"),
    );
    wait_for(Duration::from_secs(10), || socket.exists().then_some(()))
        .expect("the relay's socket");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = connect(&pki, socket.clone()).await;
        // One call first, so that the appliance's SETTINGS are in before
        // the burst (before them a client may assume no limit).
        StatusServiceClient::new(channel.clone())
            .get_status(GetStatusRequest {})
            .await
            .expect("GetStatus over the TCP API");

        // CALLS watches at once on that connection, each held open.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut calls = Vec::new();
        for id in 0..CALLS {
            let (channel, tx) = (channel.clone(), tx.clone());
            calls.push(tokio::spawn(async move {
                let answer = ConfigServiceClient::new(channel)
                    .watch(WatchRequest::default())
                    .await;
                let _ = tx.send((id, answer.is_ok()));
                if let Ok(answer) = answer {
                    let mut events = answer.into_inner();
                    while let Ok(Some(_)) = events.message().await {}
                }
            }));
        }
        let mut answered = BTreeSet::new();
        let mut refused = 0;
        answered_until_quiet(&mut rx, &mut answered, &mut refused).await;
        assert_eq!(
            (answered.len(), refused),
            (MAX_STREAMS, 0),
            "calls served at once on one connection (and refused) out of {CALLS}"
        );

        // Ending 10 of the served calls lets 10 waiting ones in, no more.
        for id in answered.iter().take(10) {
            calls[*id].abort();
        }
        let before: BTreeSet<usize> = answered.clone();
        answered_until_quiet(&mut rx, &mut answered, &mut refused).await;
        let newly: Vec<_> = answered.difference(&before).collect();
        assert_eq!(
            (newly.len(), refused),
            (10, 0),
            "after 10 calls ended, these waiting calls were served: {newly:?}"
        );
        for call in &calls {
            call.abort();
        }
    });
}
