//! The whole distributed topology as real processes: a `nats-server`, the
//! log server, one process per service (or several replicas of each,
//! [`Cluster::start_replicated`]) and the gateway, every one a real
//! `klaxond serve`. Each can be killed and started again on its address.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::Klaxond;
use crate::group::{GroupOptions, LogGroup};
use crate::nats::NatsServer;

/// The service roles, in start order.
pub const SERVICES: [&str; 5] = ["intake", "severity", "paging", "notifier", "review"];

/// A running distributed topology; everything is killed when dropped.
pub struct Cluster {
    /// The NATS server.
    pub nats: NatsServer,
    log: Option<Klaxond>,
    /// The replicated log, when the cluster runs one instead of a single
    /// log server ([`Cluster::start_with_group`]).
    group: Option<LogGroup>,
    log_address: String,
    /// Each service process: its label (the role, then `<role>-2`, … for
    /// more replicas; also its replica id), role, address and process.
    services: Vec<(String, &'static str, String, Option<Klaxond>)>,
    gateway: Option<Klaxond>,
    /// The gateway's URL: the one address clients use.
    pub url: String,
    /// The log server's data folder.
    pub data_dir: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts NATS (store in `dir/nats`), the log server (data in
    /// `dir/log`), the five services and the gateway, all with `config`
    /// and the extra environment `env`.
    pub fn start(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Cluster {
        Self::start_inner(dir, config, env, None, 1)
    }

    /// Like [`Cluster::start`], with `replicas` processes of every service
    /// role, labelled `<role>` and `<role>-2`, … (their `--replica-id`);
    /// the gateway is given every replica's address.
    pub fn start_replicated(dir: &Path, config: &Path, env: &[(&str, &str)], replicas: usize) -> Cluster {
        Self::start_inner(dir, config, env, None, replicas)
    }

    /// Like [`Cluster::start`], with a log group of `options.nodes` log
    /// servers (data in `dir/group/node-<id>`) instead of one; the services
    /// are given every node's address.
    pub fn start_with_group(dir: &Path, config: &Path, env: &[(&str, &str)], options: &GroupOptions) -> Cluster {
        Self::start_inner(dir, config, env, Some(options), 1)
    }

    fn start_inner(
        dir: &Path,
        config: &Path,
        env: &[(&str, &str)],
        group: Option<&GroupOptions>,
        replicas: usize,
    ) -> Cluster {
        let nats = NatsServer::start(&dir.join("nats"));
        // Every process reads one token file; the services present their
        // own token to the log server.
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.extend(crate::auth::cluster_env(dir));
        let mut cluster = Cluster {
            nats,
            log: None,
            group: None,
            log_address: String::new(),
            services: Vec::new(),
            gateway: None,
            url: String::new(),
            data_dir: dir.join("log"),
            config: config.to_path_buf(),
            env,
        };
        match group {
            None => {
                let log = cluster.spawn_log(&crate::ports::address());
                cluster.log_address = log.address.clone();
                cluster.log = Some(log);
            }
            Some(options) => {
                let base = std::fs::read_to_string(config).expect("read the configuration");
                let group_dir = dir.join("group");
                let group = LogGroup::start(&group_dir, &base, &cluster.nats.url, &cluster.env, options);
                cluster.log_address = group.addresses();
                cluster.data_dir = group.nodes[0].data_dir.clone();
                cluster.group = Some(group);
            }
        }
        for role in SERVICES {
            for n in 1..=replicas.max(1) {
                let label = if n == 1 { role.to_owned() } else { format!("{role}-{n}") };
                let process = cluster.spawn_service(role, &label, &crate::ports::address());
                cluster.services.push((label, role, process.address.clone(), Some(process)));
            }
        }
        let mut args = vec!["--config".to_owned(), cluster.config.display().to_string()];
        for role in SERVICES {
            let addresses: Vec<&str> =
                cluster.services.iter().filter(|(_, r, _, _)| *r == role).map(|(_, _, a, _)| a.as_str()).collect();
            args.push("--route".into());
            args.push(format!("{role}={}", addresses.join(",")));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gateway = Klaxond::serve("gateway", &args, &cluster.env_refs());
        cluster.url = gateway.url.clone();
        cluster.gateway = Some(gateway);
        cluster
    }

    fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn spawn_log(&self, address: &str) -> Klaxond {
        let data = self.data_dir.display().to_string();
        let config = self.config.display().to_string();
        let args = [
            "--config",
            config.as_str(),
            "--data-dir",
            data.as_str(),
            "--nats",
            self.nats.url.as_str(),
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        Klaxond::serve_on("log", address, &args, &self.env_refs())
    }

    fn spawn_service(&self, role: &str, label: &str, address: &str) -> Klaxond {
        let config = self.config.display().to_string();
        let args = [
            "--config",
            config.as_str(),
            "--log-server",
            self.log_address.as_str(),
            "--nats",
            self.nats.url.as_str(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--replica-id",
            label,
        ];
        Klaxond::serve_on(role, address, &args, &self.env_refs())
    }

    /// Where `role` (`log` or a service, by label) listens.
    pub fn address(&self, role: &str) -> String {
        if role == "log" {
            return self.log_address.clone();
        }
        self.services.iter().find(|(l, _, _, _)| l == role).expect("a known role").2.clone()
    }

    /// The labels of the service processes (`paging`, `paging-2`, …).
    pub fn labels(&self) -> Vec<String> {
        self.services.iter().map(|(l, _, _, _)| l.clone()).collect()
    }

    /// The log group, when the cluster runs one.
    pub fn group(&mut self) -> &mut LogGroup {
        self.group.as_mut().expect("a cluster started with a log group")
    }

    /// Where `role` (`log` or a service) serves `GET /metrics` (intake: its
    /// HTTP intake address; `log` in a group: node 1).
    pub fn metrics_address(&self, role: &str) -> String {
        if let (Some(group), "log") = (&self.group, role) {
            return group.metrics_address(0);
        }
        let process = match role {
            "log" => self.log.as_ref(),
            _ => self.services.iter().find(|(l, _, _, _)| l == role).and_then(|(_, _, _, p)| p.as_ref()),
        };
        process.and_then(|p| p.http_address.clone()).unwrap_or_else(|| panic!("{role} runs and serves metrics"))
    }

    /// Where `serve intake` runs the e-mail intake (with `[intake]
    /// smtp_listen` in the configuration).
    pub fn smtp_address(&self) -> String {
        let intake = self.services.iter().find(|(l, _, _, _)| l == "intake").and_then(|(_, _, _, p)| p.as_ref());
        intake.and_then(|p| p.smtp_address.clone()).expect("serve intake runs the e-mail intake")
    }

    /// Kills `role` (`log`, a service or `gateway`) with SIGKILL.
    pub fn kill(&mut self, role: &str) {
        self.take(role).kill();
    }

    /// Stops `role` with SIGTERM and returns how it exited.
    pub fn stop_one(&mut self, role: &str) -> ExitStatus {
        self.take(role).stop()
    }

    fn take(&mut self, role: &str) -> Klaxond {
        let slot = match role {
            "log" => &mut self.log,
            "gateway" => &mut self.gateway,
            _ => &mut self.services.iter_mut().find(|(l, _, _, _)| l == role).expect("a known role").3,
        };
        slot.take().unwrap_or_else(|| panic!("{role} is not running"))
    }

    /// Starts `role` again on the address it had.
    pub fn restart(&mut self, role: &str) {
        match role {
            "log" => {
                let address = self.log_address.clone();
                assert!(self.log.is_none(), "the log server is running");
                self.log = Some(self.spawn_log(&address));
            }
            "gateway" => panic!("the gateway is not restarted by tests"),
            _ => {
                let index = self.services.iter().position(|(l, _, _, _)| l == role).expect("a known role");
                assert!(self.services[index].3.is_none(), "{role} is running");
                let (kind, address) = (self.services[index].1, self.services[index].2.clone());
                let process = self.spawn_service(kind, role, &address);
                self.services[index].3 = Some(process);
            }
        }
    }

    /// Whether every process is still running (none exited by itself).
    pub fn all_running(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        if self.log.as_mut().is_some_and(|p| !p.is_running())
            || self.group.as_mut().is_some_and(|g| !g.exited().is_empty())
        {
            dead.push("log".to_owned());
        }
        for (label, _, _, process) in &mut self.services {
            if process.as_mut().is_some_and(|p| !p.is_running()) {
                dead.push(label.clone());
            }
        }
        if self.gateway.as_mut().is_some_and(|p| !p.is_running()) {
            dead.push("gateway".to_owned());
        }
        dead
    }

    /// Stops everything with SIGTERM, gateway first and the log server
    /// last, and asserts that every process stopped cleanly.
    pub fn stop(mut self) {
        let mut statuses = Vec::new();
        if let Some(gateway) = self.gateway.take() {
            statuses.push(("gateway".to_owned(), gateway.stop()));
        }
        for (label, _, _, process) in self.services.iter_mut().rev() {
            if let Some(p) = process.take() {
                statuses.push((label.clone(), p.stop()));
            }
        }
        if let Some(log) = self.log.take() {
            statuses.push(("log".to_owned(), log.stop()));
        }
        for (role, status) in statuses {
            assert!(status.success(), "{role} did not stop cleanly: {status}");
        }
        if let Some(group) = self.group.take() {
            group.stop();
        }
    }
}
