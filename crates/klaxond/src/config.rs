//! The configuration file: one TOML document, every key optional.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Everything `klaxond` can be configured with.
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            data_dir: PathBuf::from("klaxon-data"),
            log: klaxon_log::Options::default(),
            intake: klaxon_intake::Options::default(),
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults without one. Errors name the file, the
    /// key and the problem.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
    }
}
