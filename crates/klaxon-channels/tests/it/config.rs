//! Configuration validation: every error names its key path.

use klaxon_channels::{ChannelKind, Channels, Config};

const EXAMPLE: &str = r#"
[[channels]]
name = "ops-webhook"
kind = "webhook"
url = "http://127.0.0.1:9000/pages"
secret_env = "KLAXON_OPS_WEBHOOK_SECRET"
timeout_ms = 5000
attempts_max = 5
backoff_initial_ms = 200
backoff_max_ms = 5000

[[channels]]
name = "slack-incidents"
kind = "slack"
url = "http://127.0.0.1:9001/services/T000/B000/XXXX"

[[channels]]
name = "slack-api"
kind = "slack"
url = "http://127.0.0.1:9001/api/chat.postMessage"
token_env = "KLAXON_SLACK_TOKEN"
slack_channel = "C0123456789"

[[channels]]
name = "exec-teams"
kind = "teams"
url = "http://127.0.0.1:9002/workflows/abc"

[[channels]]
name = "exec-mail"
kind = "email"
smtp_host = "smtp.example.com"
tls = "starttls"
username = "klaxon"
password_env = "KLAXON_SMTP_PASSWORD"
from = "Klaxon <klaxon@example.com>"
to = ["execs@example.com", "CTO <cto@example.com>"]
people = { ana = "ana@example.com" }

[[channels]]
name = "dev-log"
kind = "log"
"#;

fn env(var: &str) -> Option<String> {
    match var {
        "KLAXON_OPS_WEBHOOK_SECRET" => Some("0123456789abcdef0123456789abcdef".to_string()),
        "KLAXON_SHORT_SECRET" => Some("short".to_string()),
        "KLAXON_SMTP_PASSWORD" => Some("smtp-password".to_string()),
        "KLAXON_SLACK_TOKEN" => Some("xoxb-0123-abcdef".to_string()),
        "KLAXON_SPACED_TOKEN" => Some("xoxb 0123".to_string()),
        _ => None,
    }
}

/// Parses `toml`, builds channels, and returns the error text ("ok" if none).
fn build(toml: &str) -> String {
    let config: Config = match toml::from_str(toml) {
        Ok(config) => config,
        Err(e) => return format!("toml: {}", e.message()),
    };
    match Channels::new(&config.channels, env) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

/// One e-mail channel with `extra` lines.
fn email(extra: &str) -> String {
    format!(
        "[[channels]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\nfrom = \"Klaxon <klaxon@example.com>\"\nto = [\"execs@example.com\"]\n{extra}\n"
    )
}

/// One webhook channel with `extra` lines (overriding nothing else).
fn webhook(extra: &str) -> String {
    format!("[[channels]]\nname = \"ops\"\nkind = \"webhook\"\nsecret_env = \"KLAXON_OPS_WEBHOOK_SECRET\"\n{extra}\n")
}

#[test]
fn the_documented_example_is_valid() {
    let config: Config = toml::from_str(EXAMPLE).unwrap();
    let channels = Channels::new(&config.channels, env).unwrap();
    let kinds: Vec<_> = channels.iter().map(|c| (c.name().to_string(), c.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("dev-log".to_string(), ChannelKind::Log),
            ("exec-mail".to_string(), ChannelKind::Email),
            ("exec-teams".to_string(), ChannelKind::Teams),
            ("ops-webhook".to_string(), ChannelKind::Webhook),
            ("slack-api".to_string(), ChannelKind::Slack),
            ("slack-incidents".to_string(), ChannelKind::Slack),
        ]
    );
    assert_eq!(channels.len(), 6);
    // No secret shows in debug output.
    let debug = format!("{channels:?}");
    for secret in ["0123456789abcdef", "smtp-password", "xoxb-0123"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn an_empty_config_has_no_channels() {
    let config: Config = toml::from_str("").unwrap();
    assert!(Channels::new(&config.channels, env).unwrap().is_empty());
}

#[test]
fn invalid_configs_are_rejected_with_the_key_path() {
    let url = "url = \"http://127.0.0.1:9000/pages\"";
    let log = "[[channels]]\nname = \"dev-log\"\nkind = \"log\"\n";
    let cases: Vec<(String, &str)> = vec![
        (webhook(url), "ok"),
        (webhook("url = \"not a url\""), "channels[0].url: not a valid URL (invalid uri character)"),
        (webhook("url = \"/pages\""), "channels[0].url: must be an absolute https:// or http:// URL"),
        (webhook("url = \"https://hooks.example.com/x\""), "ok"),
        (
            webhook(&format!("{url}\nca_file = \"/etc/hostname\"")),
            "channels[0].ca_file: used only with an https:// URL",
        ),
        (
            webhook("url = \"https://hooks.example.com/x\"\nca_file = \"/nonexistent/ca.pem\""),
            "channels[0].ca_file: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
        (
            webhook("url = \"ftp://127.0.0.1/x\""),
            "channels[0].url: scheme \"ftp\" is not supported; use an https:// or http:// URL",
        ),
        (
            format!("[[channels]]\nname = \"ops\"\nkind = \"webhook\"\n{url}\n"),
            "channels[0].secret_env: required for kind \"webhook\" (the environment variable holding the HMAC key)",
        ),
        (
            format!("[[channels]]\nname = \"ops\"\nkind = \"webhook\"\n{url}\nsecret_env = \"KLAXON_MISSING\"\n"),
            "channels[0].secret_env: environment variable KLAXON_MISSING is not set",
        ),
        (
            format!("[[channels]]\nname = \"ops\"\nkind = \"webhook\"\n{url}\nsecret_env = \"KLAXON_SHORT_SECRET\"\n"),
            "channels[0].secret_env: environment variable KLAXON_SHORT_SECRET must hold 16 to 1024 bytes, got 5",
        ),
        (webhook(""), "channels[0].url: required for kind \"webhook\""),
        (webhook(&format!("{url}\nattempts_max = 0")), "channels[0].attempts_max: must be 1 to 20, got 0"),
        (webhook(&format!("{url}\nattempts_max = 21")), "channels[0].attempts_max: must be 1 to 20, got 21"),
        (webhook(&format!("{url}\ntimeout_ms = 0")), "channels[0].timeout_ms: must be 1 to 60000, got 0"),
        (
            webhook(&format!("{url}\nbackoff_initial_ms = 300001")),
            "channels[0].backoff_initial_ms: must be 0 to 300000, got 300001",
        ),
        (
            webhook(&format!("{url}\nbackoff_initial_ms = 500\nbackoff_max_ms = 100")),
            "channels[0].backoff_max_ms: must be backoff_initial_ms (500) to 300000, got 100",
        ),
        (webhook(&format!("{url}\nbackoff_initial_ms = 9000")), "ok"),
        (
            format!("{log}[[channels]]\nname = \"sms\"\nkind = \"sms\"\n"),
            "channels[1].kind: unknown kind \"sms\"; expected \"webhook\", \"slack\", \"teams\", \"email\" or \"log\"",
        ),
        (format!("{log}{log}"), "channels[1].name: duplicate channel name \"dev-log\" (first used by channels[0])"),
        ("[[channels]]\nname = \"\"\nkind = \"log\"\n".to_string(), "channels[0].name: must be 1 to 64 bytes, got 0"),
        (
            "[[channels]]\nname = \"dev log\"\nkind = \"log\"\n".to_string(),
            "channels[0].name: \"dev log\" may contain only ASCII letters, digits, '-', '_' and '.'",
        ),
        (format!("{log}{url}\n"), "channels[0].url: not used by kind \"log\""),
        ("[[channels]]\nname = \"s\"\nkind = \"slack\"\n".to_string(), "channels[0].url: required for kind \"slack\""),
        (
            format!(
                "[[channels]]\nname = \"s\"\nkind = \"slack\"\n{url}\nsecret_env = \"KLAXON_OPS_WEBHOOK_SECRET\"\n"
            ),
            "channels[0].secret_env: not used by kind \"slack\"",
        ),
        (log.repeat(65), "channels: at most 64 channels, got 65"),
        (
            format!("{log}retries = 3\n"),
            "toml: unknown field `retries`, expected one of `name`, `kind`, `url`, `secret_env`, `timeout_ms`, `attempts_max`, `backoff_initial_ms`, `backoff_max_ms`, `token_env`, `slack_channel`, `smtp_host`, `smtp_port`, `tls`, `ca_file`, `username`, `password_env`, `from`, `to`, `people`",
        ),
        // Teams.
        (format!("[[channels]]\nname = \"t\"\nkind = \"teams\"\n{url}\n"), "ok"),
        ("[[channels]]\nname = \"t\"\nkind = \"teams\"\n".to_string(), "channels[0].url: required for kind \"teams\""),
        (
            format!("[[channels]]\nname = \"t\"\nkind = \"teams\"\n{url}\nsecret_env = \"KLAXON_OPS_WEBHOOK_SECRET\"\n"),
            "channels[0].secret_env: not used by kind \"teams\"",
        ),
        // Slack's Web API.
        (
            format!("[[channels]]\nname = \"s\"\nkind = \"slack\"\n{url}\ntoken_env = \"KLAXON_SLACK_TOKEN\"\n"),
            "channels[0].slack_channel: required with token_env (the conversation id)",
        ),
        (
            format!("[[channels]]\nname = \"s\"\nkind = \"slack\"\n{url}\nslack_channel = \"C1\"\n"),
            "channels[0].token_env: required with slack_channel (the bot token)",
        ),
        (
            format!("[[channels]]\nname = \"s\"\nkind = \"slack\"\n{url}\nslack_channel = \"C1\"\ntoken_env = \"KLAXON_NOPE\"\n"),
            "channels[0].token_env: environment variable KLAXON_NOPE is not set",
        ),
        (
            format!("[[channels]]\nname = \"s\"\nkind = \"slack\"\n{url}\nslack_channel = \"C1\"\ntoken_env = \"KLAXON_SPACED_TOKEN\"\n"),
            "channels[0].token_env: environment variable KLAXON_SPACED_TOKEN must hold visible ASCII (a token)",
        ),
        // E-mail.
        (email(""), "ok"),
        (email("smtp_port = 2525\ntls = \"implicit\""), "ok"),
        (
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nfrom = \"k@example.com\"\nto = [\"a@example.com\"]\n".to_string(),
            "channels[0].smtp_host: required for kind \"email\"",
        ),
        (
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nto = [\"a@example.com\"]\n".to_string(),
            "channels[0].from: required for kind \"email\" (the sender's address)",
        ),
        (
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"k@example.com\"\n".to_string(),
            "channels[0].to: required for kind \"email\" unless people maps recipients",
        ),
        (email("tls = \"ssl\""), "channels[0].tls: unknown mode \"ssl\"; expected \"starttls\", \"implicit\" or \"none\""),
        (email("smtp_port = 0"), "channels[0].smtp_port: must be 1 to 65535"),
        (email("username = \"k\""), "channels[0].password_env: required with username"),
        (email("password_env = \"KLAXON_SMTP_PASSWORD\""), "channels[0].username: required with password_env"),
        (
            email("tls = \"none\"\nusername = \"k\"\npassword_env = \"KLAXON_SMTP_PASSWORD\""),
            "channels[0].username: authentication needs TLS: the password would cross the network in clear with tls = \"none\"",
        ),
        (
            email("username = \"k\"\npassword_env = \"KLAXON_NOPE\""),
            "channels[0].password_env: environment variable KLAXON_NOPE is not set",
        ),
        (
            email("ca_file = \"/nonexistent/ca.pem\""),
            "channels[0].ca_file: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
        (email("url = \"http://127.0.0.1/x\""), "channels[0].url: not used by kind \"email\""),
        (
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"not an address\"\nto = [\"a@example.com\"]\n".to_string(),
            "channels[0].from: \"not an address\" is not an email address (expected a@b.c or Name <a@b.c>)",
        ),
        (
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"k@example.com\"\nto = [\"a@example.com\", \"b@\"]\n".to_string(),
            "channels[0].to[1]: \"b@\" is not an email address (expected a@b.c or Name <a@b.c>)",
        ),
        (
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"k@example.com\"\npeople = { ana = \"ana\" }\n".to_string(),
            "channels[0].people.ana: \"ana\" is not an email address (expected a@b.c or Name <a@b.c>)",
        ),
        (format!("{log}smtp_host = \"h\"\n"), "channels[0].smtp_host: not used by kind \"log\""),
    ];
    let mut failures = Vec::new();
    for (toml, expected) in &cases {
        let actual = build(toml);
        if actual != *expected {
            failures.push(format!("config:\n{toml}\nexpected: {expected}\nactual:   {actual}\n"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
