//! `ctl` against a fake appliance on a Unix socket: the connection, the
//! rendering of error answers, and when a flow stream stops.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use tokio::net::UnixListener;
use tokio_stream::{Stream, StreamExt, wrappers::UnixListenerStream};
use tonic::{Code, Request, Response, Status, transport::Server};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use super::{
    ApplyArgs, CtlCommand, DeleteArgs, FlowsArgs, FlowsFormat, GetArgs, ManifestFormat, connect,
    dispatch,
};
use causeway_control::proto::{
    ApplyRequest, ApplyResponse, DeleteRequest, DeleteResponse, FlowFilter, FlowRecord, GetRequest,
    ListRequest, ListResponse, Resource, WatchEvent, WatchRequest,
    config_service_server::{ConfigService, ConfigServiceServer},
    flow_service_server::{FlowService, FlowServiceServer},
};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Refuses every apply, finds nothing, and conflicts on every delete; its
/// flow stream sends up to 3 records (fewer if `limit` says so), then stays
/// open.
struct Fake;

#[tonic::async_trait]
impl ConfigService for Fake {
    async fn apply(&self, _: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        Err(Status::with_error_details(
            Code::InvalidArgument,
            "1 mistake in the batch; nothing changed",
            ErrorDetails::with_bad_request(vec![FieldViolation::new(
                "Tier/security:spec.order",
                "tier.yaml:5:10: must be a number",
            )]),
        ))
    }

    async fn get(&self, r: Request<GetRequest>) -> Result<Response<Resource>, Status> {
        let r = r.into_inner().resource.unwrap_or_default();
        Err(Status::not_found(format!(
            "{}/{} does not exist",
            r.kind, r.name
        )))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        Ok(Response::new(ListResponse::default()))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::aborted(
            "expected generation 3, the current generation is 5",
        ))
    }

    type WatchStream = Boxed<WatchEvent>;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

#[tonic::async_trait]
impl FlowService for Fake {
    type StreamFlowsStream = Boxed<FlowRecord>;

    async fn stream_flows(
        &self,
        r: Request<FlowFilter>,
    ) -> Result<Response<Self::StreamFlowsStream>, Status> {
        let limit = r.into_inner().limit;
        let records = tokio_stream::iter(0..)
            .take_while(move |n| *n < 3 && (limit == 0 || *n < limit))
            .map(|n| {
                Ok(FlowRecord {
                    bytes: n,
                    ..FlowRecord::default()
                })
            })
            .chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(records)))
    }
}

/// Serves [`Fake`] on a fresh socket; the server ends with the runtime.
fn serve(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("causeway-ctl-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let incoming = UnixListenerStream::new(UnixListener::bind(&path).unwrap());
    tokio::spawn(
        Server::builder()
            .add_service(ConfigServiceServer::new(Fake))
            .add_service(FlowServiceServer::new(Fake))
            .serve_with_incoming(incoming),
    );
    path
}

async fn run(socket: &Path, command: CtlCommand) -> anyhow::Result<()> {
    dispatch(connect::channel(socket, None).await?, &command).await
}

fn flows(follow: bool, limit: Option<u64>, for_: Option<Duration>) -> CtlCommand {
    CtlCommand::Flows(FlowsArgs {
        follow,
        address: None,
        port: None,
        protocol: None,
        verdict: None,
        source: None,
        limit,
        for_,
        output: FlowsFormat::Json,
    })
}

#[tokio::test]
async fn a_refused_apply_prints_each_mistake() {
    let socket = serve("apply");
    let file = socket.with_extension("yaml");
    std::fs::write(&file, "kind: Tier\n").unwrap();
    let command = CtlCommand::Apply(ApplyArgs {
        files: vec![file.clone()],
        expected_generation: None,
        replace: false,
        owner: None,
        force: false,
        allow_no_policy: false,
        dry_run: false,
        wait: false,
        timeout: None,
    });
    let e = run(&socket, command).await.unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "1 mistake in the batch; nothing changed\n  Tier/security:spec.order: tier.yaml:5:10: must be a number"
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn not_found_and_conflicts_are_named() {
    let socket = serve("errors");
    let get = CtlCommand::Get(GetArgs {
        kind: "tier".into(),
        name: "security".into(),
        namespace: None,
        output: ManifestFormat::Yaml,
    });
    let e = run(&socket, get).await.unwrap_err();
    assert_eq!(format!("{e:#}"), "not found: Tier/security does not exist");
    let delete = CtlCommand::Delete(DeleteArgs {
        kind: "Tier".into(),
        name: "security".into(),
        namespace: None,
        expected_generation: Some(3),
        owner: None,
        force: false,
        allow_no_policy: false,
        wait: false,
        timeout: None,
    });
    let e = run(&socket, delete).await.unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "expected generation 3, the current generation is 5"
    );
}

#[tokio::test]
async fn flows_stop_at_the_limit_or_after_the_time_given() {
    let socket = serve("flows");
    // 3 records of 10, then the stream stays open: --for ends it.
    run(
        &socket,
        flows(false, Some(10), Some(Duration::from_millis(50))),
    )
    .await
    .unwrap();
    // --limit ends it before the stream is quiet, with --follow too.
    run(&socket, flows(true, Some(2), None)).await.unwrap();
    run(
        &socket,
        flows(false, Some(1), Some(Duration::from_secs(60))),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_missing_socket_says_where_it_looked() {
    let path = std::env::temp_dir().join("causeway-ctl-no-such.sock");
    let e = connect::channel(&path, Some("demo")).await.unwrap_err();
    assert!(
        e.to_string()
            .ends_with("is the appliance running? (causeway lab status demo)"),
        "{e}"
    );
}

/// `ctl health` succeeds only while the health service says SERVING and
/// names NOT_SERVING and an unknown service.
#[tokio::test]
async fn health_passes_only_while_serving() {
    use super::HealthArgs;
    let path =
        std::env::temp_dir().join(format!("causeway-ctl-health-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (reporter, health) = tonic_health::server::health_reporter();
    let incoming = UnixListenerStream::new(UnixListener::bind(&path).unwrap());
    tokio::spawn(
        Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let health = |service: &str| {
        CtlCommand::Health(HealthArgs {
            service: service.to_owned(),
            timeout: Duration::from_secs(5),
        })
    };
    run(&path, health("")).await.unwrap();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let e = run(&path, health("")).await.unwrap_err();
    assert!(
        format!("{e:#}").starts_with("the appliance reports NOT_SERVING"),
        "{e:#}"
    );
    let e = run(&path, health("causeway.v1.Nothing")).await.unwrap_err();
    assert!(format!("{e:#}").starts_with("not found: "), "{e:#}");
    let _ = std::fs::remove_file(path);
}
