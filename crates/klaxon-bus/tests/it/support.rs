//! Shared set-up: logs in temp folders, a log server on loopback, events.

use std::net::SocketAddr;
use std::time::Duration;

use klaxon_bus::server::LogServer;
use klaxon_log::{EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Position, Record, StreamId};
use tokio_util::sync::CancellationToken;

pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A log server serving `log` on loopback, stopped when dropped.
pub struct Served {
    pub address: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    pub async fn start(log: &Log) -> Served {
        Self::start_on(log, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(log: &Log, address: SocketAddr) -> Served {
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind the log server");
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = LogServer::new(log.clone(), stop.clone()).into_server();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    until.cancelled_owned(),
                )
                .await
                .expect("serve");
        });
        Served { address, stop, task: Some(task) }
    }

    /// Stops serving and waits until the port is closed.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, Default::default()).expect("open the log")
}

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::from_u128(0xb05 << 64 | u128::from(n)),
        kind: EventKind::new("test.happened.v1").unwrap(),
        data: EventData::from_json(format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(200))).unwrap(),
        metadata: Metadata {
            actor: Some("tester".into()),
            traceparent: Some(TRACEPARENT.into()),
            ..Metadata::default()
        },
    }
}

/// Appends events `from..=to`, one per append, each to stream `s-<n % 7>`.
pub async fn fill(log: &Log, from: u64, to: u64) {
    for n in from..=to {
        let stream = StreamId::new(format!("s-{}", n % 7)).unwrap();
        log.append(&stream, ExpectedVersion::Any, vec![event(n)]).await.expect("append");
    }
}

/// Takes `count` records from `subscription`, failing after `limit`.
pub async fn take(subscription: &mut klaxon_bus::Subscription, count: usize, limit: Duration) -> Vec<Record> {
    let mut out = Vec::with_capacity(count);
    tokio::time::timeout(limit, async {
        while out.len() < count {
            match subscription.next().await {
                Some(Ok(record)) => out.push(record),
                Some(Err(e)) => panic!("subscription error after {} records: {e}", out.len()),
                None => panic!("subscription ended after {} records", out.len()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} records within {limit:?}", out.len()));
    out
}

/// Asserts records are exactly positions `from..from+len`, in order.
pub fn assert_gapless(records: &[Record], from: u64) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.position, Position(from + i as u64), "record {i} of the subscription");
    }
}
