//! Channel configuration as read from the config file, and its validation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::Error;
use crate::backoff::Backoff;

/// Most channels one configuration may define.
pub const CHANNELS_MAX: usize = 64;
/// Longest channel name, in bytes.
pub const CHANNEL_NAME_BYTES_MAX: usize = 64;
/// Largest `timeout_ms` accepted.
pub const TIMEOUT_MS_LIMIT: u64 = 60_000;
/// Largest `attempts_max` accepted.
pub const ATTEMPTS_MAX_LIMIT: u32 = 20;
/// Largest `backoff_initial_ms` / `backoff_max_ms` accepted.
pub const BACKOFF_MS_LIMIT: u64 = 300_000;
/// Shortest HMAC secret accepted, in bytes.
pub const SECRET_BYTES_MIN: usize = 16;
/// Longest HMAC secret accepted, in bytes.
pub const SECRET_BYTES_MAX: usize = 1024;
const URL_BYTES_MAX: usize = 2048;

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_ATTEMPTS_MAX: u32 = 5;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 200;
const DEFAULT_BACKOFF_MAX_MS: u64 = 5_000;

/// The `[[channels]]` tables of a configuration file.
///
/// Deserialize it (or embed `channels: Vec<ChannelConfig>` in a larger
/// config) and hand it to [`crate::Channels::new`], which validates it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The channels, each with a unique name.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
}

/// One `[[channels]]` table, as written; see the crate docs for each kind.
///
/// Fields that a kind does not use must be absent (validation says which).
/// Unset limits take defaults: `timeout_ms` 5000, `attempts_max` 5,
/// `backoff_initial_ms` 200, `backoff_max_ms` 5000.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name callers deliver through: 1 to [`CHANNEL_NAME_BYTES_MAX`]
    /// bytes of ASCII letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// `"webhook"`, `"slack"` or `"log"`.
    pub kind: String,
    /// Where to `POST` (webhook and slack; required there). `http://` only.
    pub url: Option<String>,
    /// Name of the environment variable holding the webhook's HMAC key
    /// (webhook only; required there). Read once, when the channels are built.
    pub secret_env: Option<String>,
    /// Per-attempt timeout, 1 to [`TIMEOUT_MS_LIMIT`] (webhook and slack).
    pub timeout_ms: Option<u64>,
    /// Attempts including the first, 1 to [`ATTEMPTS_MAX_LIMIT`] (webhook and slack).
    pub attempts_max: Option<u32>,
    /// Delay before the first retry, doubled for each later retry, 0 to
    /// [`BACKOFF_MS_LIMIT`] (webhook and slack).
    pub backoff_initial_ms: Option<u64>,
    /// Cap on any retry delay, including one asked for by `Retry-After`;
    /// at least `backoff_initial_ms`, at most [`BACKOFF_MS_LIMIT`].
    pub backoff_max_ms: Option<u64>,
}

/// A channel after validation, with its secret loaded.
#[derive(Debug, Clone)]
pub(crate) struct ChannelSpec {
    pub(crate) name: String,
    pub(crate) kind: SpecKind,
}

#[derive(Debug, Clone)]
pub(crate) enum SpecKind {
    Webhook { http: HttpSpec, secret: Secret },
    Slack { http: HttpSpec },
    Log,
}

/// Validated delivery limits of an HTTP channel.
#[derive(Debug, Clone)]
pub(crate) struct HttpSpec {
    pub(crate) uri: Uri,
    pub(crate) timeout: Duration,
    pub(crate) attempts_max: u32,
    pub(crate) backoff: Backoff,
}

/// An HMAC key; never printed.
#[derive(Clone)]
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Validates every channel, in order, and returns the first problem found.
pub(crate) fn validate(
    configs: &[ChannelConfig],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ChannelSpec>, Error> {
    if configs.len() > CHANNELS_MAX {
        return Err(Error::config("channels", format!("at most {CHANNELS_MAX} channels, got {}", configs.len())));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut specs = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let at = |key: &str| format!("channels[{index}].{key}");
        check_name(&config.name).map_err(|message| Error::config(at("name"), message))?;
        if let Some(first) = seen.insert(&config.name, index) {
            return Err(Error::config(
                at("name"),
                format!("duplicate channel name {:?} (first used by channels[{first}])", config.name),
            ));
        }
        let kind = match config.kind.as_str() {
            "webhook" => {
                let http = http_spec(config, &at)?;
                let secret = secret(config, &at, env)?;
                SpecKind::Webhook { http, secret }
            }
            "slack" => {
                if config.secret_env.is_some() {
                    return Err(Error::config(at("secret_env"), "not used by kind \"slack\""));
                }
                SpecKind::Slack { http: http_spec(config, &at)? }
            }
            "log" => {
                let unused = [
                    ("url", config.url.is_some()),
                    ("secret_env", config.secret_env.is_some()),
                    ("timeout_ms", config.timeout_ms.is_some()),
                    ("attempts_max", config.attempts_max.is_some()),
                    ("backoff_initial_ms", config.backoff_initial_ms.is_some()),
                    ("backoff_max_ms", config.backoff_max_ms.is_some()),
                ];
                if let Some((key, _)) = unused.iter().find(|(_, set)| *set) {
                    return Err(Error::config(at(key), "not used by kind \"log\""));
                }
                SpecKind::Log
            }
            other => {
                return Err(Error::config(
                    at("kind"),
                    format!("unknown kind {other:?}; expected \"webhook\", \"slack\" or \"log\""),
                ));
            }
        };
        specs.push(ChannelSpec { name: config.name.clone(), kind });
    }
    Ok(specs)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > CHANNEL_NAME_BYTES_MAX {
        return Err(format!("must be 1 to {CHANNEL_NAME_BYTES_MAX} bytes, got {}", name.len()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(format!("{name:?} may contain only ASCII letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn http_spec(config: &ChannelConfig, at: &dyn Fn(&str) -> String) -> Result<HttpSpec, Error> {
    let kind = &config.kind;
    let Some(url) = &config.url else {
        return Err(Error::config(at("url"), format!("required for kind {kind:?}")));
    };
    let uri = parse_url(url).map_err(|message| Error::config(at("url"), message))?;

    let timeout_ms = config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=TIMEOUT_MS_LIMIT).contains(&timeout_ms) {
        return Err(Error::config(at("timeout_ms"), format!("must be 1 to {TIMEOUT_MS_LIMIT}, got {timeout_ms}")));
    }
    let attempts_max = config.attempts_max.unwrap_or(DEFAULT_ATTEMPTS_MAX);
    if !(1..=ATTEMPTS_MAX_LIMIT).contains(&attempts_max) {
        return Err(Error::config(
            at("attempts_max"),
            format!("must be 1 to {ATTEMPTS_MAX_LIMIT}, got {attempts_max}"),
        ));
    }
    let initial_ms = config.backoff_initial_ms.unwrap_or(DEFAULT_BACKOFF_INITIAL_MS);
    if initial_ms > BACKOFF_MS_LIMIT {
        return Err(Error::config(
            at("backoff_initial_ms"),
            format!("must be 0 to {BACKOFF_MS_LIMIT}, got {initial_ms}"),
        ));
    }
    // An unset maximum follows a larger initial delay rather than contradicting it.
    let max_ms = config.backoff_max_ms.unwrap_or(DEFAULT_BACKOFF_MAX_MS.max(initial_ms));
    if !(initial_ms..=BACKOFF_MS_LIMIT).contains(&max_ms) {
        return Err(Error::config(
            at("backoff_max_ms"),
            format!("must be backoff_initial_ms ({initial_ms}) to {BACKOFF_MS_LIMIT}, got {max_ms}"),
        ));
    }
    Ok(HttpSpec {
        uri,
        timeout: Duration::from_millis(timeout_ms),
        attempts_max,
        backoff: Backoff { initial_ms, max_ms },
    })
}

fn parse_url(url: &str) -> Result<Uri, String> {
    if url.len() > URL_BYTES_MAX {
        return Err(format!("must be at most {URL_BYTES_MAX} bytes, got {}", url.len()));
    }
    // The URL may embed a token (Slack's do), so messages never echo it.
    let uri: Uri = url.parse().map_err(|e| format!("not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not supported yet (no TLS connector); use an http:// URL".to_string()),
        Some(other) => return Err(format!("scheme {other:?} is not supported; use an http:// URL")),
        None => return Err("must be an absolute http:// URL".to_string()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host".to_string());
    }
    Ok(uri)
}

fn secret(
    config: &ChannelConfig,
    at: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, Error> {
    let Some(var) = &config.secret_env else {
        return Err(Error::config(
            at("secret_env"),
            "required for kind \"webhook\" (the environment variable holding the HMAC key)",
        ));
    };
    if var.is_empty() {
        return Err(Error::config(at("secret_env"), "must name an environment variable"));
    }
    let Some(value) = env(var) else {
        return Err(Error::config(at("secret_env"), format!("environment variable {var} is not set")));
    };
    if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&value.len()) {
        return Err(Error::config(
            at("secret_env"),
            format!(
                "environment variable {var} must hold {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} bytes, got {}",
                value.len()
            ),
        ));
    }
    Ok(Secret(value.into_bytes()))
}
