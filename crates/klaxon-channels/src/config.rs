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
/// Unset limits take defaults: `timeout_ms` 5000 (10000 for email),
/// `attempts_max` 5, `backoff_initial_ms` 200, `backoff_max_ms` 5000.
/// `Default` is an empty table (for building configurations in code with
/// `..ChannelConfig::default()`); it does not validate as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name callers deliver through: 1 to [`CHANNEL_NAME_BYTES_MAX`]
    /// bytes of ASCII letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// `"webhook"`, `"slack"`, `"teams"`, `"email"` or `"log"`.
    pub kind: String,
    /// Where to `POST` (webhook, slack and teams; required there):
    /// `https://` (TLS, the server's certificate checked against the
    /// system's roots and `ca_file`) or `http://`.
    pub url: Option<String>,
    /// Name of the environment variable holding the webhook's HMAC key
    /// (webhook only; required there). Read once, when the channels are built.
    pub secret_env: Option<String>,
    /// Per-attempt timeout, 1 to [`TIMEOUT_MS_LIMIT`] (every kind but log).
    /// For email it bounds one whole SMTP session (connect, TLS, login, send).
    pub timeout_ms: Option<u64>,
    /// Attempts including the first, 1 to [`ATTEMPTS_MAX_LIMIT`] (every kind but log).
    pub attempts_max: Option<u32>,
    /// Delay before the first retry, doubled for each later retry, 0 to
    /// [`BACKOFF_MS_LIMIT`] (every kind but log).
    pub backoff_initial_ms: Option<u64>,
    /// Cap on any retry delay, including one asked for by `Retry-After`;
    /// at least `backoff_initial_ms`, at most [`BACKOFF_MS_LIMIT`].
    pub backoff_max_ms: Option<u64>,
    /// Slack only, with `slack_channel`: the environment variable holding a
    /// bot token (`xoxb-…`). With it the channel calls a
    /// `chat.postMessage`-style API at `url` (Bearer token, JSON with
    /// `channel`), which answers with the message's `ts`: the thread id of
    /// follow-ups. Without it `url` is a plain incoming webhook.
    pub token_env: Option<String>,
    /// Slack only, with `token_env`: the conversation to post to (an id
    /// such as `C0123456789`).
    pub slack_channel: Option<String>,
    /// Email: the SMTP server's host name (also the name its TLS
    /// certificate must carry). Required.
    pub smtp_host: Option<String>,
    /// Email: the SMTP server's port; defaults to 587 for `starttls`, 465
    /// for `implicit` and 25 for `none`.
    pub smtp_port: Option<u16>,
    /// Email: `"starttls"` (the default: plain connection upgraded with
    /// STARTTLS, refused if the server does not offer it), `"implicit"`
    /// (TLS from the first byte, "SMTPS") or `"none"` (plain text, no
    /// authentication allowed).
    pub tls: Option<String>,
    /// Extra trusted root certificates (PEM file), added to the system's,
    /// for a server with a private CA: the SMTP server's (email), or the
    /// receiver of an `https://` URL (webhook, slack, teams).
    pub ca_file: Option<String>,
    /// Email: the login name; requires `password_env` and TLS.
    pub username: Option<String>,
    /// Email: the environment variable holding the SMTP password; requires
    /// `username`.
    pub password_env: Option<String>,
    /// Email: the sender, e.g. `"Klaxon <klaxon@example.com>"`; its domain
    /// also names the `Message-ID`s. Required.
    pub from: Option<String>,
    /// Email: the channel's recipients (addresses or `Name <address>`),
    /// for notifications whose recipient `people` does not map.
    pub to: Option<Vec<String>>,
    /// Email: addresses of people, by the name callers put in a
    /// notification's `recipient` (a page to `ana` goes to ana's address
    /// only). At least one of `to` and `people` is required.
    pub people: Option<BTreeMap<String, String>>,
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
    Slack { http: HttpSpec, api: Option<SlackApi> },
    Teams { http: HttpSpec },
    Email { smtp: Box<SmtpSpec> },
    Log,
}

impl SpecKind {
    /// The HTTP settings of a kind that posts over HTTP.
    pub(crate) fn http(&self) -> Option<&HttpSpec> {
        match self {
            SpecKind::Webhook { http, .. } | SpecKind::Slack { http, .. } | SpecKind::Teams { http } => Some(http),
            SpecKind::Email { .. } | SpecKind::Log => None,
        }
    }
}

/// A `chat.postMessage`-style Slack API: bot token and conversation.
#[derive(Debug, Clone)]
pub(crate) struct SlackApi {
    pub(crate) token: Secret,
    pub(crate) channel: String,
}

/// Validated delivery limits of a channel that retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) timeout: Duration,
    pub(crate) attempts_max: u32,
    pub(crate) backoff: Backoff,
}

/// Validated delivery limits of an HTTP channel.
#[derive(Debug, Clone)]
pub(crate) struct HttpSpec {
    pub(crate) uri: Uri,
    pub(crate) limits: Limits,
    /// Extra trusted roots of an `https` URL, PEM, checked to parse.
    pub(crate) ca_pem: Option<Vec<u8>>,
}

impl HttpSpec {
    /// Whether the URL is `https`.
    pub(crate) fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }
}

/// How an email channel secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpTls {
    StartTls,
    Implicit,
    None,
}

/// A validated email channel.
#[derive(Debug, Clone)]
pub(crate) struct SmtpSpec {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: SmtpTls,
    /// Extra trusted roots, PEM, checked to parse.
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) from: lettre::message::Mailbox,
    pub(crate) to: Vec<lettre::message::Mailbox>,
    pub(crate) people: BTreeMap<String, lettre::message::Mailbox>,
    pub(crate) limits: Limits,
}

/// A secret read from the environment (HMAC key, token, password); never printed.
#[derive(Clone)]
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text; secrets come from environment variables, which
    /// are read as UTF-8.
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.0).expect("secrets are read from UTF-8 environment variables")
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
                only(config, &at, &["url", "secret_env", "ca_file", LIMITS])?;
                let http = http_spec(config, &at)?;
                let secret = secret(config, &at, env)?;
                SpecKind::Webhook { http, secret }
            }
            "slack" => {
                only(config, &at, &["url", "token_env", "slack_channel", "ca_file", LIMITS])?;
                let http = http_spec(config, &at)?;
                let api = match (&config.token_env, &config.slack_channel) {
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(Error::config(
                            at("slack_channel"),
                            "required with token_env (the conversation id)",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(Error::config(at("token_env"), "required with slack_channel (the bot token)"));
                    }
                    (Some(var), Some(channel)) => {
                        let token = env_secret(var, &at("token_env"), env, 1)?;
                        if !token.bytes().iter().all(u8::is_ascii_graphic) {
                            return Err(Error::config(
                                at("token_env"),
                                format!("environment variable {var} must hold visible ASCII (a token)"),
                            ));
                        }
                        if channel.is_empty() || channel.len() > SLACK_CHANNEL_BYTES_MAX || !channel.is_ascii() {
                            return Err(Error::config(
                                at("slack_channel"),
                                format!("must be 1 to {SLACK_CHANNEL_BYTES_MAX} ASCII characters"),
                            ));
                        }
                        Some(SlackApi { token, channel: channel.clone() })
                    }
                };
                SpecKind::Slack { http, api }
            }
            "teams" => {
                only(config, &at, &["url", "ca_file", LIMITS])?;
                SpecKind::Teams { http: http_spec(config, &at)? }
            }
            "email" => {
                only(
                    config,
                    &at,
                    &[
                        "smtp_host",
                        "smtp_port",
                        "tls",
                        "ca_file",
                        "username",
                        "password_env",
                        "from",
                        "to",
                        "people",
                        LIMITS,
                    ],
                )?;
                SpecKind::Email { smtp: Box::new(smtp_spec(config, &at, env)?) }
            }
            "log" => {
                only(config, &at, &[])?;
                SpecKind::Log
            }
            other => {
                return Err(Error::config(
                    at("kind"),
                    format!("unknown kind {other:?}; expected \"webhook\", \"slack\", \"teams\", \"email\" or \"log\""),
                ));
            }
        };
        specs.push(ChannelSpec { name: config.name.clone(), kind });
    }
    Ok(specs)
}

/// Stands for the four delivery limits in [`only`]'s list.
const LIMITS: &str = "<limits>";
/// Longest Slack conversation id accepted, in bytes.
const SLACK_CHANNEL_BYTES_MAX: usize = 80;
/// Most recipients in `to`.
pub const EMAIL_RECIPIENTS_MAX: usize = 100;
/// Most entries in `people`.
pub const EMAIL_PEOPLE_MAX: usize = 10_000;
const HOST_BYTES_MAX: usize = 253;
const CA_FILE_BYTES_MAX: u64 = 1024 * 1024;
const DEFAULT_EMAIL_TIMEOUT_MS: u64 = 10_000;

/// Refuses every optional field that is set but not in `allowed` (the kind
/// does not use it), naming the first in declaration order.
fn only(config: &ChannelConfig, at: &dyn Fn(&str) -> String, allowed: &[&str]) -> Result<(), Error> {
    const LIMIT_KEYS: [&str; 4] = ["timeout_ms", "attempts_max", "backoff_initial_ms", "backoff_max_ms"];
    let allows = |key: &str| allowed.contains(&key) || (allowed.contains(&LIMITS) && LIMIT_KEYS.contains(&key));
    let set = [
        ("url", config.url.is_some()),
        ("secret_env", config.secret_env.is_some()),
        ("timeout_ms", config.timeout_ms.is_some()),
        ("attempts_max", config.attempts_max.is_some()),
        ("backoff_initial_ms", config.backoff_initial_ms.is_some()),
        ("backoff_max_ms", config.backoff_max_ms.is_some()),
        ("token_env", config.token_env.is_some()),
        ("slack_channel", config.slack_channel.is_some()),
        ("smtp_host", config.smtp_host.is_some()),
        ("smtp_port", config.smtp_port.is_some()),
        ("tls", config.tls.is_some()),
        ("ca_file", config.ca_file.is_some()),
        ("username", config.username.is_some()),
        ("password_env", config.password_env.is_some()),
        ("from", config.from.is_some()),
        ("to", config.to.is_some()),
        ("people", config.people.is_some()),
    ];
    match set.iter().find(|(key, set)| *set && !allows(key)) {
        Some((key, _)) => Err(Error::config(at(key), format!("not used by kind {:?}", config.kind))),
        None => Ok(()),
    }
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

fn limits(config: &ChannelConfig, at: &dyn Fn(&str) -> String, default_timeout_ms: u64) -> Result<Limits, Error> {
    let timeout_ms = config.timeout_ms.unwrap_or(default_timeout_ms);
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
    Ok(Limits { timeout: Duration::from_millis(timeout_ms), attempts_max, backoff: Backoff { initial_ms, max_ms } })
}

fn http_spec(config: &ChannelConfig, at: &dyn Fn(&str) -> String) -> Result<HttpSpec, Error> {
    let kind = &config.kind;
    let Some(url) = &config.url else {
        return Err(Error::config(at("url"), format!("required for kind {kind:?}")));
    };
    let uri = parse_url(url).map_err(|message| Error::config(at("url"), message))?;
    let ca_pem = match &config.ca_file {
        None => None,
        Some(_) if uri.scheme_str() != Some("https") => {
            return Err(Error::config(at("ca_file"), "used only with an https:// URL"));
        }
        Some(path) => Some(read_ca(path).map_err(|message| Error::config(at("ca_file"), message))?),
    };
    Ok(HttpSpec { uri, limits: limits(config, at, DEFAULT_TIMEOUT_MS)?, ca_pem })
}

fn parse_url(url: &str) -> Result<Uri, String> {
    if url.len() > URL_BYTES_MAX {
        return Err(format!("must be at most {URL_BYTES_MAX} bytes, got {}", url.len()));
    }
    // The URL may embed a token (Slack's do), so messages never echo it.
    let uri: Uri = url.parse().map_err(|e| format!("not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("scheme {other:?} is not supported; use an https:// or http:// URL")),
        None => return Err("must be an absolute https:// or http:// URL".to_string()),
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
    env_secret(var, &at("secret_env"), env, SECRET_BYTES_MIN)
}

/// The value of the environment variable `var` (named by the setting at
/// `path`), `bytes_min` to [`SECRET_BYTES_MAX`] bytes long.
fn env_secret(var: &str, path: &str, env: &dyn Fn(&str) -> Option<String>, bytes_min: usize) -> Result<Secret, Error> {
    if var.is_empty() {
        return Err(Error::config(path, "must name an environment variable"));
    }
    let Some(value) = env(var) else {
        return Err(Error::config(path, format!("environment variable {var} is not set")));
    };
    if !(bytes_min..=SECRET_BYTES_MAX).contains(&value.len()) {
        return Err(Error::config(
            path,
            format!(
                "environment variable {var} must hold {bytes_min} to {SECRET_BYTES_MAX} bytes, got {}",
                value.len()
            ),
        ));
    }
    Ok(Secret(value.into_bytes()))
}

fn smtp_spec(
    config: &ChannelConfig,
    at: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SmtpSpec, Error> {
    let Some(host) = &config.smtp_host else {
        return Err(Error::config(at("smtp_host"), "required for kind \"email\""));
    };
    if host.is_empty() || host.len() > HOST_BYTES_MAX || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::config(
            at("smtp_host"),
            format!("must be a host name or address of 1 to {HOST_BYTES_MAX} visible ASCII characters"),
        ));
    }
    let tls = match config.tls.as_deref().unwrap_or("starttls") {
        "starttls" => SmtpTls::StartTls,
        "implicit" => SmtpTls::Implicit,
        "none" => SmtpTls::None,
        other => {
            return Err(Error::config(
                at("tls"),
                format!("unknown mode {other:?}; expected \"starttls\", \"implicit\" or \"none\""),
            ));
        }
    };
    let port = match config.smtp_port {
        Some(0) => return Err(Error::config(at("smtp_port"), "must be 1 to 65535")),
        Some(port) => port,
        None => match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        },
    };
    let ca_pem = match &config.ca_file {
        None => None,
        Some(_) if tls == SmtpTls::None => {
            return Err(Error::config(at("ca_file"), "not used with tls = \"none\""));
        }
        Some(path) => Some(read_ca(path).map_err(|message| Error::config(at("ca_file"), message))?),
    };
    let credentials = match (&config.username, &config.password_env) {
        (None, None) => None,
        (Some(_), None) => return Err(Error::config(at("password_env"), "required with username")),
        (None, Some(_)) => return Err(Error::config(at("username"), "required with password_env")),
        (Some(_), Some(_)) if tls == SmtpTls::None => {
            return Err(Error::config(
                at("username"),
                "authentication needs TLS: the password would cross the network in clear with tls = \"none\"",
            ));
        }
        (Some(user), Some(var)) => {
            if user.is_empty() || user.len() > SECRET_BYTES_MAX {
                return Err(Error::config(at("username"), format!("must be 1 to {SECRET_BYTES_MAX} bytes")));
            }
            Some((user.clone(), env_secret(var, &at("password_env"), env, 1)?))
        }
    };
    let Some(from) = &config.from else {
        return Err(Error::config(at("from"), "required for kind \"email\" (the sender's address)"));
    };
    let from = mailbox(from).map_err(|message| Error::config(at("from"), message))?;
    let to = config.to.clone().unwrap_or_default();
    if to.len() > EMAIL_RECIPIENTS_MAX {
        return Err(Error::config(at("to"), format!("at most {EMAIL_RECIPIENTS_MAX} recipients, got {}", to.len())));
    }
    let to = to
        .iter()
        .enumerate()
        .map(|(i, address)| mailbox(address).map_err(|message| Error::config(at(&format!("to[{i}]")), message)))
        .collect::<Result<Vec<_>, _>>()?;
    let people = config.people.clone().unwrap_or_default();
    if people.len() > EMAIL_PEOPLE_MAX {
        return Err(Error::config(at("people"), format!("at most {EMAIL_PEOPLE_MAX} people, got {}", people.len())));
    }
    let people = people
        .iter()
        .map(|(name, address)| {
            let address = mailbox(address).map_err(|message| Error::config(at(&format!("people.{name}")), message))?;
            Ok((name.clone(), address))
        })
        .collect::<Result<BTreeMap<_, _>, Error>>()?;
    if to.is_empty() && people.is_empty() {
        return Err(Error::config(at("to"), "required for kind \"email\" unless people maps recipients"));
    }
    Ok(SmtpSpec {
        host: host.clone(),
        port,
        tls,
        ca_pem,
        credentials,
        from,
        to,
        people,
        limits: limits(config, at, DEFAULT_EMAIL_TIMEOUT_MS)?,
    })
}

/// An address such as `ops@example.com` or `Ops <ops@example.com>`.
fn mailbox(text: &str) -> Result<lettre::message::Mailbox, String> {
    // lettre's parse error says only "Invalid input": say what is expected.
    text.parse().map_err(|_| format!("{text:?} is not an email address (expected a@b.c or Name <a@b.c>)"))
}

/// Reads a PEM file of trusted roots and checks that it parses.
fn read_ca(path: &str) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("cannot read {path}: {e}"))?.len();
    if size > CA_FILE_BYTES_MAX {
        return Err(format!("{path} is {size} bytes, more than the {CA_FILE_BYTES_MAX} allowed"));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    lettre::transport::smtp::client::Certificate::from_pem(&pem)
        .map_err(|e| format!("{path} holds no usable PEM certificate ({e})"))?;
    Ok(pem)
}
