//! Raft's messages between nodes: gRPC (`klaxon.v1.LogGroup`), the client
//! side. Messages are openraft's serde types as JSON; a snapshot chunk's
//! bytes travel beside its JSON header.

// openraft's `RPCError` is what its `RaftNetwork` methods return; it is
// large, and boxing it here would only unbox it again.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use klaxon_proto::v1::log_group_client::LogGroupClient;
use klaxon_proto::v1::{RaftMessage, RaftSnapshotChunk};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::types::{Node, NodeId, TypeConfig};

/// Largest message a node sends or takes: a batch of entries or a snapshot
/// chunk with its header.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How this node reaches the others.
#[derive(Clone)]
pub struct Network {
    /// Node id -> the address to send Raft messages to, when it differs
    /// from the address in the membership (a proxy, another interface).
    overrides: Arc<HashMap<NodeId, String>>,
    tls: Option<ClientTlsConfig>,
    credentials: Credentials,
    /// The node sending (set by [`crate::Group::start`]; 0 in a network
    /// that only asks nodes for their status).
    own: NodeId,
}

impl Network {
    /// A network presenting `token` (of role `service`) and, with `tls`,
    /// calling over TLS.
    pub fn new(
        overrides: HashMap<NodeId, String>,
        tls: Option<ClientTlsConfig>,
        token: Option<&str>,
    ) -> Result<Network, crate::Error> {
        let credentials = match token {
            Some(token) => Credentials(Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| crate::Error::Config("the service token is not valid header text".into()))?,
            )),
            None => Credentials(None),
        };
        Ok(Network { overrides: Arc::new(overrides), tls, credentials, own: 0 })
    }

    /// The same network, sending as node `id`.
    pub(crate) fn of_node(mut self, id: NodeId) -> Network {
        self.own = id;
        self
    }

    /// A client of the `LogGroup` service at `address`.
    pub fn client(&self, address: &str) -> Result<Client, crate::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = if address.contains("://") { address.to_owned() } else { format!("{scheme}://{address}") };
        let invalid = |e: &dyn std::fmt::Display| crate::Error::Config(format!("node address {address:?}: {e}"));
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(|e| invalid(&e))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| invalid(&e))?;
        }
        Ok(LogGroupClient::with_interceptor(endpoint.connect_lazy(), self.credentials.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX))
    }
}

/// A `LogGroup` client presenting this process's token.
pub type Client = LogGroupClient<InterceptedService<Channel, Credentials>>;

/// The bearer token presented on every call.
#[derive(Clone, Default)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        let address = self.overrides.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        let client = self.client(&address).map_err(|e| e.to_string());
        Connection { own: self.own, target, node: node.clone(), address, client }
    }
}

/// The messages to one node.
pub struct Connection {
    own: NodeId,
    target: NodeId,
    node: Node,
    address: String,
    client: Result<Client, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

impl Connection {
    fn client<E: std::error::Error>(&self) -> Result<Client, RPCError<NodeId, Node, E>> {
        self.client.clone().map_err(|e| RPCError::Unreachable(Unreachable::new(&Failure(e))))
    }

    /// The answer of a call (`action`, given `ttl`), or the error openraft
    /// should act on. A node that does not answer in time is a timeout,
    /// not unreachable: openraft backs off from an unreachable node for
    /// 500 ms (no entries, no heartbeats), so a follower that was slow once
    /// under load (an `fdatasync`, a busy CPU) fell behind and missed
    /// heartbeats; after a timeout it is sent the next message as usual.
    fn answer<T, E>(
        &self,
        action: RPCTypes,
        ttl: std::time::Duration,
        result: Result<Result<tonic::Response<RaftMessage>, tonic::Status>, tokio::time::error::Elapsed>,
    ) -> Result<T, RPCError<NodeId, Node, E>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let response = match result {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout { action, id: self.own, target: self.target, timeout: ttl }));
            }
            Ok(Err(status)) => {
                let failure = Failure(format!("node {} at {}: {status}", self.target, self.address));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                        RPCError::Unreachable(Unreachable::new(&failure))
                    }
                    _ => RPCError::Network(NetworkError::new(&failure)),
                });
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        let result: Result<T, E> = serde_json::from_slice(&response.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&Failure(format!("a malformed answer: {e}")))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

fn encode(value: &impl Serialize) -> RaftMessage {
    RaftMessage { json: serde_json::to_vec(value).expect("raft messages serialize") }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let mut client = self.client()?;
        let result = tokio::time::timeout(option.hard_ttl(), client.append_entries(encode(&rpc))).await;
        self.answer(RPCTypes::AppendEntries, option.hard_ttl(), result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        let mut client = self.client()?;
        let InstallSnapshotRequest { vote, meta, offset, data, done } = rpc;
        let header = InstallSnapshotRequest::<TypeConfig> { vote, meta, offset, data: Vec::new(), done };
        let chunk = RaftSnapshotChunk { json: serde_json::to_vec(&header).expect("raft messages serialize"), data };
        let result = tokio::time::timeout(option.hard_ttl(), client.install_snapshot(chunk)).await;
        self.answer(RPCTypes::InstallSnapshot, option.hard_ttl(), result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let mut client = self.client()?;
        let result = tokio::time::timeout(option.hard_ttl(), client.vote(encode(&rpc))).await;
        self.answer(RPCTypes::Vote, option.hard_ttl(), result)
    }
}
