//! The configuration file: one TOML document, every key optional. Every
//! value is checked at start; an error names the file, the key and the
//! problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use klaxon_domain::ConfigError;
use klaxon_domain::oncall::{Schedules, SchedulesConfig};
use klaxon_domain::severity::{Rules, ServiceCatalog, ServiceCatalogConfig, SeverityConfig};
use serde::Deserialize;

/// Everything `klaxond` can be configured with, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where gRPC listens.
    pub listen: SocketAddr,
    /// The event log's folder.
    pub data_dir: PathBuf,
    /// Limits and tuning of the event log.
    pub log: klaxon_log::Options,
    /// The intake service.
    pub intake: klaxon_intake::Options,
    /// The service catalog (`[[services]]`).
    pub services: ServiceCatalogConfig,
    /// Severity rules (`[severity]`); without it every report is SEV4.
    pub severity: Option<SeverityConfig>,
    /// On-call schedules (`[[schedules]]`).
    pub schedules: SchedulesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            data_dir: PathBuf::from("klaxon-data"),
            log: klaxon_log::Options::default(),
            intake: klaxon_intake::Options::default(),
            services: ServiceCatalogConfig::default(),
            severity: None,
            schedules: SchedulesConfig::default(),
        }
    }
}

/// The checked, ready-to-use parts of the configuration.
pub struct Validated {
    /// The service catalog.
    pub catalog: Arc<ServiceCatalog>,
    /// The severity rules.
    pub rules: Arc<Rules>,
    /// The on-call schedules.
    pub schedules: Arc<Schedules>,
}

impl Config {
    /// Reads `path`, or the defaults without one. Errors name the file, the
    /// key and the problem.
    pub fn load(path: Option<&Path>) -> anyhow::Result<(Config, Validated)> {
        let (config, name) = match path {
            None => (Config::default(), "the default configuration".to_string()),
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                let config = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
                (config, path.display().to_string())
            }
        };
        let validated = config.validate().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        Ok((config, validated))
    }

    fn validate(&self) -> Result<Validated, ConfigError> {
        let catalog = self.services.validate("services")?;
        let rules = match &self.severity {
            Some(severity) => severity.validate("severity")?,
            None => SeverityConfig { default: "sev4".into(), default_reason: "No rule matched".into(), rules: vec![] }
                .validate("severity")?,
        };
        rules.check_services(&catalog, "severity")?;
        let schedules = self.schedules.validate("schedules")?;
        Ok(Validated { catalog: Arc::new(catalog), rules: Arc::new(rules), schedules: Arc::new(schedules) })
    }
}
