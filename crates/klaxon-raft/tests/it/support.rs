//! A group of nodes in this process, each with its own sled log and Raft
//! folder and its own gRPC server on a loopback port, talking real gRPC.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use klaxon_bus::server::{LogServer, WriteError, Writes};
use klaxon_log::{
    Appended, EventData, EventKind, ExpectedVersion, Log, Metadata, NewEvent, Options as LogOptions, Position, Record,
    StreamId,
};
use klaxon_raft::{Group, GroupService, Network, NodeOptions, Options};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// One running node.
pub struct Node {
    pub group: Group,
    pub log: Log,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

/// A group of nodes; node `i` has id `i + 1`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub options: Vec<Options>,
    pub nodes: Vec<Option<Node>>,
    listeners: Vec<Option<TcpListener>>,
}

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::new_v4(),
        kind: EventKind::new("test.happened.v1").unwrap(),
        data: EventData::from_value(&serde_json::json!({ "n": n })).unwrap(),
        metadata: Metadata { actor: Some("tester".into()), ..Metadata::default() },
    }
}

impl Cluster {
    /// Starts `n` nodes with fast timings and `tune` applied to each one's
    /// options.
    pub async fn start(n: usize, tune: impl Fn(&mut Options)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            nodes.push(NodeOptions {
                id: i as u64 + 1,
                address: listener.local_addr().unwrap().to_string(),
                raft_address: None,
            });
            listeners.push(Some(listener));
        }
        let options = (0..n)
            .map(|i| {
                let mut o = Options {
                    node_id: i as u64 + 1,
                    nodes: nodes.clone(),
                    heartbeat_interval_ms: 50,
                    election_timeout_min_ms: 300,
                    election_timeout_max_ms: 600,
                    ..Options::default()
                };
                tune(&mut o);
                o
            })
            .collect();
        let mut cluster = Cluster { dir, options, nodes: (0..n).map(|_| None).collect(), listeners };
        for i in 0..n {
            cluster.start_node(i).await;
        }
        cluster
    }

    pub fn log_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}", i + 1))
    }

    /// Starts node `i` on its address (again, after a stop).
    pub async fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {} runs", i + 1);
        let listener = match self.listeners[i].take() {
            Some(l) => l,
            None => rebind(&self.options[i].nodes[i].address).await,
        };
        let dir = self.log_dir(i);
        let log = Log::open(&dir, LogOptions::default()).unwrap();
        let network = Network::new(HashMap::new(), None, None).unwrap();
        let group = Group::start(self.options[i].clone(), log.clone(), &dir.join("raft"), network).await.unwrap();
        let shutdown = CancellationToken::new();
        let writes: Arc<dyn Writes> = Arc::new(group.clone());
        let server = tonic::transport::Server::builder()
            .add_service(GroupService::new(group.clone()).into_server())
            .add_service(LogServer::with_writes(log.clone(), writes, shutdown.clone()).into_server())
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.clone().cancelled_owned());
        let server = tokio::spawn(async move {
            let _ = server.await;
        });
        self.nodes[i] = Some(Node { group, log, shutdown, server });
    }

    /// Stops node `i`: its server, its Raft, its log.
    pub async fn stop_node(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        node.shutdown.cancel();
        node.server.abort();
        let _ = node.server.await;
        node.group.shutdown().await;
        node.log.close().await;
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("running")
    }

    /// The index of the ready leader, waiting at most 20 s.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<usize> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.as_ref().is_some_and(|n| *n.group.leading().borrow()))
                .map(|(i, _)| i)
                .collect();
            if let [one] = leaders[..] {
                return one;
            }
            assert!(Instant::now() < deadline, "no single ready leader within 20 s: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Appends through node `i`.
    pub async fn append(
        &self,
        i: usize,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, WriteError> {
        Writes::append(&self.node(i).group, &sid(stream), expected, events).await
    }

    /// Waits (at most 20 s) until every running node's log reaches `head`,
    /// then returns their records.
    pub async fn converged(&self, head: Position) -> Vec<Vec<Record>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let heads: Vec<Position> = self.nodes.iter().flatten().map(|n| n.log.head()).collect();
            if heads.iter().all(|h| *h >= head) {
                break;
            }
            assert!(Instant::now() < deadline, "nodes did not reach {head}: {heads:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.nodes.iter().flatten().map(|n| n.log.read_all(Position(0), 100_000).unwrap()).collect()
    }

    pub async fn stop(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop_node(i).await;
            }
        }
    }
}

/// The records as their stored bytes, to compare nodes exactly.
pub fn bytes(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(Record::to_bytes).collect()
}

/// Binds a restarted node's listener to the address it had. The port was
/// free when its node stopped, but any socket on the machine may be given
/// it meanwhile as its own ephemeral port (a client connection of another
/// test): then the bind fails until that connection closes. Retries for at
/// most 20 s, then fails naming the address.
async fn rebind(address: &str) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot listen on {address} again: {e}"),
        }
    }
}
