//! `klaxon.v1.LogGroup`, the server side: Raft's messages from the other
//! nodes, handed to openraft, and the operator's membership commands.

use klaxon_bus::wire;
use klaxon_proto::v1::log_group_server::{LogGroup, LogGroupServer};
use klaxon_proto::v1::{
    LogGroupAddNodeRequest, LogGroupMember, LogGroupRemoveNodeRequest, LogGroupStatus, LogGroupStatusRequest,
    RaftMessage, RaftSnapshotChunk,
};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest, VoteResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::group::Group;
use crate::network::MESSAGE_BYTES_MAX;
use crate::types::{NodeId, TypeConfig};

/// The `LogGroup` gRPC service of one node.
#[derive(Clone)]
pub struct GroupService {
    group: Group,
}

impl GroupService {
    /// Serves `group`.
    pub fn new(group: Group) -> GroupService {
        GroupService { group }
    }

    /// The tonic service, taking messages as large as the nodes send.
    pub fn into_server(self) -> LogGroupServer<GroupService> {
        LogGroupServer::new(self)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json).map_err(|e| {
        klaxon_proto::status::refuse(klaxon_domain::class::Class::InvalidArgument, format!("not a Raft message: {e}"))
    })
}

fn answer(value: &impl Serialize) -> Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage { json: serde_json::to_vec(value).expect("raft messages serialize") }))
}

impl From<crate::group::Status> for LogGroupStatus {
    fn from(s: crate::group::Status) -> LogGroupStatus {
        LogGroupStatus {
            node_id: s.node_id,
            state: s.state.to_owned(),
            term: s.term,
            leader_id: s.leader_id,
            leader_address: s.leader_address.unwrap_or_default(),
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            head: s.head,
            snapshots_installed: s.snapshots_installed,
            members: s
                .members
                .into_iter()
                .map(|m| LogGroupMember {
                    id: m.id,
                    address: m.address,
                    voter: m.voter,
                    matched_index: m.matched_index,
                })
                .collect(),
        }
    }
}

#[tonic::async_trait]
impl LogGroup for GroupService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().json)?;
        self.group.heard_from_leader(rpc.leader_commit);
        answer(&self.group.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&request.into_inner().json)?;
        if !self.group.may_vote_for(rpc.last_log_id.as_ref()) {
            // A node that lost its state declines a candidate that may lack
            // what it had acknowledged (see `Group`): answered as a refusal
            // at its vote.
            let vote = self.group.raft().metrics().borrow().vote;
            tracing::info!(candidate = %rpc.vote, "declining a vote while catching up after losing Raft state");
            let declined: Result<VoteResponse<NodeId>, RaftError<NodeId>> = Ok(VoteResponse::new(vote, None, false));
            return answer(&declined);
        }
        answer(&self.group.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftSnapshotChunk>) -> Result<Response<RaftMessage>, Status> {
        let chunk = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(&chunk.json)?;
        rpc.data = chunk.data;
        answer(&self.group.raft().install_snapshot(rpc).await)
    }

    async fn status(&self, _: Request<LogGroupStatusRequest>) -> Result<Response<LogGroupStatus>, Status> {
        Ok(Response::new(self.group.status().into()))
    }

    async fn add_node(&self, request: Request<LogGroupAddNodeRequest>) -> Result<Response<LogGroupStatus>, Status> {
        let r = request.into_inner();
        self.group.add_node(r.id, r.address).await.map_err(|e| wire::write_error_to_status(&e))?;
        Ok(Response::new(self.group.status().into()))
    }

    async fn remove_node(
        &self,
        request: Request<LogGroupRemoveNodeRequest>,
    ) -> Result<Response<LogGroupStatus>, Status> {
        let id = request.into_inner().id;
        self.group.remove_node(id).await.map_err(|e| wire::write_error_to_status(&e))?;
        Ok(Response::new(self.group.status().into()))
    }
}
