use std::net::SocketAddr;
use std::sync::Arc;

use klaxon_intake::grpc::{ACTOR_HEADER, BridgeService, IncidentsService};
use klaxon_intake::{Intake, Options};
use klaxon_log::Log;
use klaxon_proto::v1::{self, incidents_client::IncidentsClient};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::Channel;

/// Intake served over real gRPC on a free loopback port, with its own log
/// in a temp dir. Everything stops when it is dropped.
pub struct Server {
    pub address: SocketAddr,
    pub log: Log,
    shutdown: CancellationToken,
    _dir: Arc<TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// Stops serving (as a SIGTERM does): open streams end.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    pub async fn start(options: Options) -> Server {
        Server::start_with(options, None).await
    }

    /// With `auth`: behind the authentication layer, as `klaxond` serves.
    pub async fn start_with(options: Options, auth: Option<klaxon_auth::Auth>) -> Server {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let log = Log::open(dir.path(), klaxon_log::Options::default()).unwrap();
        let intake = Intake::new(log.clone(), options, klaxon_reactor::system_clock());
        let handle = intake.handle();
        let shutdown = CancellationToken::new();
        tokio::spawn(intake.run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let routes = tonic::service::Routes::new(
            IncidentsService::new(handle.clone()).with_shutdown(shutdown.clone()).into_server(),
        )
        .add_service(BridgeService::new(handle.clone(), shutdown.clone()).into_server());
        let stop = shutdown.clone().cancelled_owned();
        match auth {
            Some(auth) => tokio::spawn(
                tonic::transport::Server::builder()
                    .layer(klaxon_auth::AuthLayer::new(auth))
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, stop),
            ),
            None => tokio::spawn(
                tonic::transport::Server::builder().add_routes(routes).serve_with_incoming_shutdown(incoming, stop),
            ),
        };
        Server { address, log, shutdown, _dir: dir }
    }

    pub async fn client(&self) -> IncidentsClient<Channel> {
        IncidentsClient::connect(format!("http://{}", self.address)).await.unwrap()
    }

    pub async fn bridge(&self) -> v1::bridge_client::BridgeClient<Channel> {
        v1::bridge_client::BridgeClient::connect(format!("http://{}", self.address)).await.unwrap()
    }
}

/// A request made by `actor`.
pub fn by<T>(actor: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(ACTOR_HEADER, actor.parse().unwrap());
    request
}

pub fn ctx(request_id: &str, expected_version: Option<u64>) -> Option<v1::CommandContext> {
    Some(v1::CommandContext { request_id: request_id.to_string(), expected_version })
}

/// Reports an issue and returns its id.
pub async fn report(client: &mut IncidentsClient<Channel>, title: &str, dedup_key: &str) -> String {
    let response = client
        .report(by(
            "monitor",
            v1::ReportRequest {
                title: title.into(),
                service: "payments".into(),
                dedup_key: dedup_key.into(),
                customers: vec!["acme".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    response.incident_id
}

/// Reports and declares a Sev-1; returns its id.
pub async fn sev1(client: &mut IncidentsClient<Channel>, title: &str) -> String {
    let id = report(client, title, "").await;
    client
        .declare(by(
            "maria",
            v1::DeclareRequest { incident_id: id.clone(), severity: v1::Severity::Sev1 as i32, context: None },
        ))
        .await
        .unwrap();
    id
}
