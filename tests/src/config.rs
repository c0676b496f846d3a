//! The configuration the paging tests and benchmarks run: one tier-1
//! service, a rule making a multi-customer report on it a Sev-1, a
//! schedule with `ana` on call, an escalation policy and a signed webhook
//! to a test receiver, whose secret is read from an environment variable.

use std::hash::BuildHasher;
use std::time::Instant;

/// What varies between the tests.
pub struct PagingConfig<'a> {
    /// The webhook receiver's URL.
    pub receiver: &'a str,
    /// The environment variable holding the webhook secret.
    pub secret_env: &'a str,
    /// Seconds before level 1 (the schedule) escalates to level 2 (`carl`).
    pub escalate_after_seconds: u64,
    /// Whether executives are told of Sev-1s through the same webhook.
    pub notify_executives: bool,
}

impl PagingConfig<'_> {
    /// The TOML text.
    pub fn toml(&self) -> String {
        let PagingConfig { receiver, secret_env, escalate_after_seconds, notify_executives } = self;
        let notifier = if *notify_executives {
            // Follow-ups an hour apart: none lands while a test runs, so a
            // scenario's notify events do not depend on how long it took.
            "[notifier]\nseverities = [\"sev1\"]\nexecutive_channels = [\"pager\"]\nfollow_up_interval_ms = 3600000\n"
        } else {
            ""
        };
        format!(
            r#"
[[services]]
name = "payments"
team = "payments"
tier = 1
escalation_policy = "payments"

[severity]
default = "sev4"
[[severity.rules]]
id = "tier1-multi-customer"
severity = "sev1"
reason = "Several customers hit on a tier-1 service"
when = {{ service_tier = [1], multi_customer = true }}

[[schedules]]
name = "payments-primary"
time_zone = "Europe/Berlin"
[[schedules.layers]]
name = "daily"
participants = ["ana"]
shift = "1d"
handoff = "09:00"
start = "2026-01-01"

[paging]
duty_manager_schedule = "payments-primary"
default_policy = "payments"
channels = ["pager"]

[slo.sev1]
ack_minutes = 60
assign_minutes = 60

[[escalation_policies]]
name = "payments"
[[escalation_policies.levels]]
timeout_seconds = {escalate_after_seconds}
targets = [{{ schedule = "payments-primary" }}]
[[escalation_policies.levels]]
timeout_seconds = 600
targets = [{{ person = "carl" }}]

{notifier}
[[channels]]
name = "pager"
kind = "webhook"
url = "{receiver}"
secret_env = "{secret_env}"
attempts_max = 5
backoff_initial_ms = 20
backoff_max_ms = 200
"#
        )
    }
}

/// A fresh secret per run: no secret lives in the repository.
pub fn secret() -> String {
    format!("test-{:032x}", std::collections::hash_map::RandomState::new().hash_one(Instant::now()))
}

/// The environment variable that carries the webhook secret in [`Paged`].
pub const SECRET_ENV: &str = "KLAXON_E2E_PAGER_SECRET";

/// What the paging tests start from: a signed-webhook receiver on its own
/// runtime, a fresh secret, a temporary folder, and `klaxon.toml` in it
/// paging that receiver ([`PagingConfig`]) plus any `extra` TOML.
pub struct Paged {
    /// Runs the receiver (and whatever async the test needs).
    pub runtime: tokio::runtime::Runtime,
    /// Where pages and executive posts arrive.
    pub receiver: crate::receiver::Receiver,
    /// The webhook secret, in [`SECRET_ENV`] for the servers.
    pub secret: String,
    /// The test's folder.
    pub dir: tempfile::TempDir,
    /// `klaxon.toml` in `dir`.
    pub config: std::path::PathBuf,
}

impl Paged {
    /// Starts the receiver and writes the configuration.
    pub fn start(escalate_after_seconds: u64, notify_executives: bool, extra: &str) -> Paged {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let secret = secret();
        let receiver = runtime.block_on(crate::receiver::Receiver::start(&secret));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("klaxon.toml");
        let paging =
            PagingConfig { receiver: &receiver.url, secret_env: SECRET_ENV, escalate_after_seconds, notify_executives };
        std::fs::write(&config, format!("{}\n{extra}", paging.toml())).expect("write klaxon.toml");
        Paged { runtime, receiver, secret, dir, config }
    }

    /// `--config <klaxon.toml>`.
    pub fn config_args(&self) -> [&str; 2] {
        ["--config", self.config.to_str().expect("a UTF-8 path")]
    }

    /// The environment the servers need: the webhook secret.
    pub fn env(&self) -> [(&str, &str); 1] {
        [(SECRET_ENV, self.secret.as_str())]
    }
}
