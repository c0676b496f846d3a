//! A replicated log as real processes: `klaxond serve log` nodes, each
//! with `[log_group]` in its own configuration file, and optionally a
//! black-holing TCP proxy on every link between two nodes (so a test can
//! cut one node off).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use klaxon_proto::v1::log_group_client::LogGroupClient;
use klaxon_proto::v1::{LogGroupStatus, LogGroupStatusRequest};

use crate::Klaxond;
use crate::proxy::{Proxies, Proxy};

/// How to start a group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// How many nodes.
    pub nodes: usize,
    /// Put a proxy on every link between two nodes ([`LogGroup::isolate`]).
    pub partitionable: bool,
    /// Extra `[log_group]` lines (timings, snapshots).
    pub tuning: String,
    /// Extra `[log_group]` lines for one node (by index), after `tuning`
    /// (so naming no key that `tuning` names).
    pub node_tuning: Vec<(usize, String)>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            nodes: 3,
            partitionable: false,
            tuning: "append_timeout_ms = 3000\n".into(),
            node_tuning: Vec::new(),
        }
    }
}

/// One node.
pub struct GroupNode {
    /// Its id (1, 2, 3, …).
    pub id: u64,
    /// Where it listens (clients and, without proxies, the other nodes).
    pub address: String,
    /// Its data folder (the sled log; Raft's files in `raft/`).
    pub data_dir: PathBuf,
    config: PathBuf,
    process: Option<Klaxond>,
}

/// A running group; every node is killed when dropped.
pub struct LogGroup {
    /// The nodes, node `i` with id `i + 1`.
    pub nodes: Vec<GroupNode>,
    /// `(from, to, proxy)`: the proxy `from` sends its Raft messages to
    /// `to` through.
    links: Vec<(usize, usize, Proxy)>,
    _proxies: Option<Proxies>,
    nats_url: String,
    env: Vec<(String, String)>,
    runtime: tokio::runtime::Runtime,
}

impl LogGroup {
    /// Starts the nodes in `dir/node-<id>`, each with `base` (a configuration
    /// file's text) plus its `[log_group]`, relaying to `nats_url`, with the
    /// extra environment `env` (tokens: see [`crate::auth::cluster_env`]).
    pub fn start(dir: &Path, base: &str, nats_url: &str, env: &[(String, String)], options: &GroupOptions) -> LogGroup {
        let addresses: Vec<String> = (0..options.nodes).map(|_| crate::ports::address()).collect();
        let proxies = options.partitionable.then(Proxies::new);
        let mut links = Vec::new();
        if let Some(proxies) = &proxies {
            for from in 0..options.nodes {
                for (to, address) in addresses.iter().enumerate() {
                    if from != to {
                        links.push((from, to, proxies.start(address)));
                    }
                }
            }
        }
        let mut nodes = Vec::new();
        for i in 0..options.nodes {
            let own: String = options.node_tuning.iter().filter(|(n, _)| *n == i).map(|(_, t)| t.as_str()).collect();
            let mut toml = format!("{base}\n[log_group]\nnode_id = {}\n{}{own}nodes = [\n", i + 1, options.tuning);
            for (j, address) in addresses.iter().enumerate() {
                let raft = links
                    .iter()
                    .find(|(from, to, _)| *from == i && *to == j)
                    .map(|(_, _, p)| format!(", raft_address = \"{}\"", p.address))
                    .unwrap_or_default();
                toml.push_str(&format!("  {{ id = {}, address = \"{address}\"{raft} }},\n", j + 1));
            }
            toml.push_str("]\n");
            let data_dir = dir.join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&data_dir).expect("a node folder");
            let config = dir.join(format!("node-{}.toml", i + 1));
            std::fs::write(&config, toml).expect("write a node's configuration");
            nodes.push(GroupNode { id: i as u64 + 1, address: addresses[i].clone(), data_dir, config, process: None });
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let mut group =
            LogGroup { nodes, links, _proxies: proxies, nats_url: nats_url.to_owned(), env: env.to_vec(), runtime };
        for i in 0..options.nodes {
            group.restart(i);
        }
        group
    }

    /// Every node's address, comma-separated: what clients are given.
    pub fn addresses(&self) -> String {
        self.nodes.iter().map(|n| n.address.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Starts node `i` (again) on its address and folder.
    pub fn restart(&mut self, i: usize) {
        let node = &self.nodes[i];
        assert!(node.process.is_none(), "node {} runs", node.id);
        let config = node.config.display().to_string();
        let data = node.data_dir.display().to_string();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args = [
            "--config",
            config.as_str(),
            "--data-dir",
            data.as_str(),
            "--nats",
            self.nats_url.as_str(),
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let process = Klaxond::serve_on("log", &node.address, &args, &env);
        self.nodes[i].process = Some(process);
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].process.take().unwrap_or_else(|| panic!("node {} is not running", i + 1)).kill();
    }

    /// The ids of the nodes that exited by themselves.
    pub fn exited(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            if node.process.as_mut().is_some_and(|p| !p.is_running()) {
                out.push(node.id);
            }
        }
        out
    }

    /// Whether node `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].process.is_some()
    }

    /// Where node `i` serves `GET /metrics`.
    pub fn metrics_address(&self, i: usize) -> String {
        self.nodes[i].process.as_ref().and_then(|p| p.http_address.clone()).expect("a running node serving metrics")
    }

    /// Deletes node `i`'s data (it must be stopped).
    pub fn wipe(&mut self, i: usize) {
        assert!(self.nodes[i].process.is_none(), "stop node {} first", i + 1);
        std::fs::remove_dir_all(&self.nodes[i].data_dir).expect("remove the node's data");
        std::fs::create_dir_all(&self.nodes[i].data_dir).expect("an empty node folder");
    }

    /// Node `i`'s view of the group, or why it has none.
    pub fn status(&self, i: usize) -> Result<LogGroupStatus, String> {
        let address = format!("http://{}", self.nodes[i].address);
        self.runtime.block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(address)
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut client = LogGroupClient::with_interceptor(channel, crate::auth::as_person(crate::auth::SERVICE));
            client.status(LogGroupStatusRequest {}).await.map(|r| r.into_inner()).map_err(|s| s.to_string())
        })
    }

    /// The index of the node that leads, once a running node says it leads
    /// and every other running node that answers agrees (at most `limit`).
    pub fn leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let views: Vec<(usize, LogGroupStatus)> = (0..self.nodes.len())
                .filter(|i| self.running(*i))
                .filter_map(|i| self.status(i).ok().map(|s| (i, s)))
                .collect();
            let leaders: Vec<usize> = views.iter().filter(|(_, s)| s.state == "leader").map(|(i, _)| *i).collect();
            if let [leader] = leaders[..] {
                let id = leader as u64 + 1;
                if views.iter().all(|(_, s)| s.leader_id == Some(id)) {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {limit:?}: {views:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `limit`) until every running node has applied up to
    /// `head`.
    pub fn converged(&self, head: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let heads: Vec<Result<u64, String>> =
                (0..self.nodes.len()).filter(|i| self.running(*i)).map(|i| self.status(i).map(|s| s.head)).collect();
            if heads.iter().all(|h| matches!(h, Ok(h) if *h >= head)) {
                return;
            }
            assert!(Instant::now() < deadline, "nodes did not reach {head} within {limit:?}: {heads:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts node `i` off from every other node (both directions), or, with
    /// `false`, restores its links.
    pub fn isolate(&self, i: usize, cut: bool) {
        assert!(!self.links.is_empty(), "start the group with `partitionable`");
        for (from, to, proxy) in &self.links {
            if *from == i || *to == i {
                proxy.set_blocked(cut);
            }
        }
    }

    /// Stops every node with SIGTERM and asserts each stopped cleanly.
    pub fn stop(mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                let status = process.stop();
                assert!(status.success(), "node {} did not stop cleanly: {status}", node.id);
            }
        }
    }
}
