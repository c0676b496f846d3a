//! The log group in `klaxond`: `klaxond serve log` with `[log_group]` runs
//! one node of a replicated log (see `docs/replication.md`), and
//! `klaxond log-group status|add|remove` asks a node about the group or
//! changes its membership.
//!
//! A node serves `klaxon.v1.EventLog` exactly as a single log server does,
//! except that its writes go through the group (a follower refuses them
//! with the leader's address), and `klaxon.v1.LogGroup` for the other
//! nodes and the operator. The relay to NATS runs only while this node
//! leads (and has applied an entry of its own term).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use klaxon_bus::jetstream::{self, Names};
use klaxon_bus::relay::Relay;
use klaxon_log::Log;
use klaxon_proto::v1::{LogGroupAddNodeRequest, LogGroupRemoveNodeRequest, LogGroupStatus, LogGroupStatusRequest};
use klaxon_raft::{Group, Network};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Validated};
use crate::process::{self, Process};
use crate::roles::Wiring;

/// Runs one node of the log group until SIGINT or SIGTERM. It listens on
/// `listen` when given (`--listen`), else on its own address in
/// `[log_group] nodes`.
pub async fn serve(
    config: Config,
    validated: Validated,
    listen: Option<SocketAddr>,
    process: &Process,
) -> anyhow::Result<()> {
    let auth = config.auth(&validated)?;
    let options = config.log_group.clone().context("serving a log group node needs [log_group]")?;
    let listen = match listen {
        Some(listen) => listen,
        None => {
            let own = options.own_address().with_context(|| {
                format!("log_group.nodes lists no address for node {}; pass --listen", options.node_id)
            })?;
            own.parse()
                .with_context(|| format!("log_group: node {}'s address {own:?} is not IP:port", options.node_id))?
        }
    };
    let (data_dir, log) = config.open_log()?;
    let (listener, address) = process::bind(listen, "").await?;
    let network = Network::new(options.raft_addresses(), config.tls.client()?, config.service_token()?.as_deref())?;
    let node_id = options.node_id;
    let group = Group::start(options, log.clone(), &data_dir.join("raft"), network)
        .await
        .with_context(|| format!("cannot start log group node {node_id} in {}", data_dir.join("raft").display()))?;
    let client = jetstream::connect(&config.cluster.nats_url, "klaxon-log")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.cluster.nats_url))?;
    let names = Names::with_prefix(&config.cluster.prefix);
    let relay = relay_while_leading(group.clone(), log.clone(), client, names, process.services.clone());
    let mut wiring = Wiring::new(&config)?;
    wiring.log_group_node(&log, &group, relay, process).await;
    tracing::info!(%address, node_id, data_dir = %data_dir.display(), head = log.head().0, "klaxond serve log (log group)");
    println!(
        "klaxond listening on {address} (gRPC: log server, log group node {node_id}); data in {}",
        data_dir.display()
    );
    let metrics = crate::metrics::serve_log(config.metrics_listen, &log, &auth, &process.shutdown).await?;
    let Wiring { routes, tasks, .. } = wiring;
    let served = process.run(config.tls.grpc_server()?, Some(auth), routes.routes(), listener, metrics, tasks).await;
    group.shutdown().await;
    log.close().await;
    tracing::info!(head = log.head().0, "log group node stopped; bye");
    served
}

/// Runs the relay while this node leads; stops it as soon as it does not.
/// Ends with an error when the node's Raft stops (the process must be
/// restarted), and without one at `stop`.
async fn relay_while_leading(
    group: Group,
    log: Log,
    client: async_nats::Client,
    names: Names,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut leading = group.leading();
    loop {
        while !*leading.borrow_and_update() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                changed = leading.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("the log group node stopped");
                    }
                }
            }
        }
        tracing::info!(node_id = group.node_id(), head = log.head().0, "leading the log group: the relay runs here");
        let relay_stop = stop.child_token();
        let relay = Relay::new(log.clone(), client.clone(), names.clone()).run(relay_stop.clone());
        tokio::pin!(relay);
        loop {
            tokio::select! {
                ended = &mut relay => {
                    ended?;
                    return Ok(());
                }
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() {
                        relay_stop.cancel();
                        (&mut relay).await?;
                        if changed.is_err() {
                            anyhow::bail!("the log group node stopped");
                        }
                        tracing::info!(node_id = group.node_id(), "no longer leading: the relay stopped here");
                        break;
                    }
                }
            }
        }
    }
}

/// `klaxond log-group …`: what to ask which node.
pub enum Command {
    /// Every member's view.
    Status,
    /// Add a node (learner, then voter once caught up).
    Add {
        /// Its id.
        id: u64,
        /// Its address.
        address: String,
    },
    /// Remove a node.
    Remove {
        /// Its id.
        id: u64,
    },
}

/// Runs `command` against the node at `server` (following the leader for
/// membership changes); prints a table, or JSON with `json`.
pub async fn run(config: &Config, server: Option<String>, command: Command, json: bool) -> anyhow::Result<()> {
    let server = match server {
        Some(server) => server,
        None => config
            .log_group
            .as_ref()
            .and_then(|g| g.own_address().map(str::to_owned))
            .or_else(|| config.cluster.log.split(',').next().map(|a| a.trim().to_owned()))
            .context("name a node with --server")?,
    };
    let network = Network::new(Default::default(), config.tls.client()?, config.service_token()?.as_deref())?;
    let status = match command {
        Command::Status => {
            let first = status_of(&network, &server).await?;
            let mut rows = Vec::new();
            for member in &first.members {
                let status = if member.address == server {
                    Ok(first.clone())
                } else {
                    status_of(&network, &member.address).await.map_err(|e| format!("{e:#}"))
                };
                rows.push((member.clone(), status));
            }
            if json {
                let nodes: Vec<serde_json::Value> = rows.iter().map(|(m, s)| row_json(m, s)).collect();
                println!("{}", serde_json::json!({ "nodes": nodes }));
            } else {
                println!(
                    "{:<4} {:<22} {:<8} {:<10} {:>6} {:>8} {:>10} {:>10}  LEADER",
                    "ID", "ADDRESS", "ROLE", "STATE", "TERM", "HEAD", "APPLIED", "SNAPSHOT"
                );
                for (m, s) in &rows {
                    let role = if m.voter { "voter" } else { "learner" };
                    match s {
                        Ok(s) => println!(
                            "{:<4} {:<22} {:<8} {:<10} {:>6} {:>8} {:>10} {:>10}  {}",
                            m.id,
                            m.address,
                            role,
                            s.state,
                            s.term,
                            s.head,
                            s.applied_index,
                            s.snapshot_index,
                            s.leader_id.map_or("-".to_owned(), |l| l.to_string())
                        ),
                        Err(e) => println!("{:<4} {:<22} {:<8} unreachable: {e}", m.id, m.address, role),
                    }
                }
            }
            return Ok(());
        }
        Command::Add { id, address } => {
            change(&network, &server, |mut c| {
                let address = address.clone();
                async move { c.add_node(LogGroupAddNodeRequest { id, address }).await }
            })
            .await?
        }
        Command::Remove { id } => {
            change(&network, &server, |mut c| async move { c.remove_node(LogGroupRemoveNodeRequest { id }).await })
                .await?
        }
    };
    let members: Vec<String> = status
        .members
        .iter()
        .map(|m| format!("{}={}{}", m.id, m.address, if m.voter { "" } else { " (learner)" }))
        .collect();
    if json {
        println!("{}", serde_json::json!({ "members": members, "leader_id": status.leader_id, "term": status.term }));
    } else {
        println!("members: {}", members.join(", "));
    }
    Ok(())
}

fn row_json(m: &klaxon_proto::v1::LogGroupMember, s: &Result<LogGroupStatus, String>) -> serde_json::Value {
    let mut row = serde_json::json!({ "id": m.id, "address": m.address, "voter": m.voter });
    match s {
        Ok(s) => {
            row["state"] = s.state.clone().into();
            row["term"] = s.term.into();
            row["leader_id"] = s.leader_id.into();
            row["head"] = s.head.into();
            row["applied_index"] = s.applied_index.into();
            row["snapshot_index"] = s.snapshot_index.into();
            row["purged_index"] = s.purged_index.into();
        }
        Err(e) => row["error"] = e.clone().into(),
    }
    row
}

async fn status_of(network: &Network, address: &str) -> anyhow::Result<LogGroupStatus> {
    let mut client = network.client(address)?;
    let call = client.status(LogGroupStatusRequest {});
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), call)
        .await
        .with_context(|| format!("{address} did not answer within 5 s"))?
        .with_context(|| address.to_owned())?;
    Ok(status.into_inner())
}

/// Sends a membership change, following a follower's leader hint (a few
/// times at most).
async fn change<F, Fut>(network: &Network, server: &str, call: F) -> anyhow::Result<LogGroupStatus>
where
    F: Fn(klaxon_raft::Client) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<LogGroupStatus>, tonic::Status>>,
{
    let mut server = server.to_owned();
    for _ in 0..5 {
        match call(network.client(&server)?).await {
            Ok(status) => return Ok(status.into_inner()),
            Err(status) => match klaxon_bus::wire::leader_hint(&status) {
                Some(Some(leader)) if leader != server => {
                    eprintln!("klaxond: {server} is not the leader; asking {leader}");
                    server = leader;
                }
                _ => anyhow::bail!("{server}: {}", status.message()),
            },
        }
    }
    anyhow::bail!("the leader kept moving; try again")
}

/// Where `klaxond log-group` finds a node's token file, when given.
pub fn token_file_override(config: &mut Config, path: Option<PathBuf>) {
    if let Some(path) = path {
        config.auth.service_token_file = Some(path);
    }
}
