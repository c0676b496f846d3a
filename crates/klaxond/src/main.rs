//! `klaxond`, the Klaxon server.
//!
//! `klaxond up` runs the event log and the services in one process (the
//! embedded topology): gRPC on 127.0.0.1:7600, the HTTP intake
//! (Alertmanager, PagerDuty) on 127.0.0.1:7680, data in `./klaxon-data`,
//! unless the flags, the environment or a TOML file say otherwise.
//! `klaxond serve <role>` runs one process of the distributed topology (the
//! log server, one service, or the gateway), talking over gRPC and NATS
//! JetStream; `klaxond serve log` with `[log_group]` is one node of a
//! replicated log, which `klaxond log-group` inspects and changes. The binary only parses flags and configuration and wires
//! components; the work is in the library crates.
//!
//! Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 1 when it cannot start
//! or fails, 2 for usage errors, 130 when a second signal cut the stop short.

mod backup;
mod config;
mod gateway;
mod log_group;
mod metrics;
mod process;
mod reload;
mod roles;
mod serve;
mod tokens_audit;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "klaxond", version, about = "The Klaxon incident command server")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the log and every service in this process (the embedded topology).
    Up(UpArgs),
    /// Run one process of the distributed topology.
    Serve(ServeArgs),
    /// Create, revoke or list API tokens (the token file holds hashes only).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Ask a replicated log's nodes how they are, or change its membership.
    LogGroup(LogGroupArgs),
    /// Check a configuration file without applying it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Copy a running log server's log into a folder without stopping it;
    /// run again on the same folder to add what was written since.
    Backup(BackupArgs),
}

/// `klaxond backup`.
#[derive(clap::Args)]
struct BackupArgs {
    /// The backup folder: created when missing; a folder of an earlier
    /// backup of the same log gets what was written since.
    dest: PathBuf,
    /// The log server, or every node of a log group, comma-separated
    /// (default `[cluster] log`, 127.0.0.1:7601).
    #[arg(long, env = "KLAXON_LOG_SERVER")]
    server: Option<String>,
    /// A TOML configuration file (for `[cluster]`, `[tls]` and `[auth]`).
    #[arg(long, env = "KLAXON_CONFIG")]
    config: Option<PathBuf>,
    /// A file holding a token of role `service` (default `[auth]
    /// service_token_file`).
    #[arg(long, env = "KLAXON_SERVICE_TOKEN_FILE")]
    service_token_file: Option<PathBuf>,
}

/// `klaxond config …`.
#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate FILE as a start (or a SIGHUP reload) would, apply nothing:
    /// exit 0 with a short summary and its hash, or 1 naming the file, the
    /// key and the problem.
    Check {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

/// `klaxond log-group …`.
#[derive(clap::Args)]
struct LogGroupArgs {
    #[command(subcommand)]
    command: LogGroupCommand,
    /// A node of the group (default: this node's `[log_group]` address,
    /// else the first `[cluster] log` address).
    #[arg(long, global = true, env = "KLAXON_LOG_SERVER")]
    server: Option<String>,
    /// A TOML configuration file (for `[tls]` and `[auth]`).
    #[arg(long, global = true, env = "KLAXON_CONFIG")]
    config: Option<PathBuf>,
    /// A file holding a token of role `service` (default `[auth]
    /// service_token_file`).
    #[arg(long, global = true, env = "KLAXON_SERVICE_TOKEN_FILE")]
    service_token_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum LogGroupCommand {
    /// Every member: role, state, term, head, applied and snapshot index, leader.
    Status,
    /// Add node ID at ADDRESS: it catches up as a learner, then becomes a voter.
    Add {
        /// The new node's id (its `[log_group] node_id`).
        id: u64,
        /// Where it listens (`host:port`).
        address: String,
    },
    /// Remove node ID from the group.
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// `klaxond token …`.
#[derive(Subcommand)]
enum TokenCommand {
    /// Add a principal and print its new token, once: it is stored nowhere.
    Create {
        /// The principal's name, recorded as the actor of what it does.
        #[arg(long)]
        name: String,
        /// manager, engineer, executive, reviewer, service (Klaxon's own processes: the log server's API) or
        /// integration (monitoring, help desks, Prometheus: report and read /metrics only).
        #[arg(long, value_parser = parse_role)]
        role: klaxon_auth::Role,
        /// Limit it to this team's services (repeatable; default: every team).
        #[arg(long = "team")]
        teams: Vec<String>,
        #[command(flatten)]
        file: TokenFileArgs,
    },
    /// Remove a principal's token; running servers refuse it on the next call.
    Revoke {
        /// The principal's name.
        name: String,
        #[command(flatten)]
        file: TokenFileArgs,
    },
    /// List the principals (names, roles, teams; never tokens).
    List {
        #[command(flatten)]
        file: TokenFileArgs,
    },
}

/// Which token file `klaxond token` works on: `--tokens-file`, else the
/// configuration's `[auth] tokens_file`, else `tokens.toml` in the data
/// folder.
#[derive(clap::Args)]
struct TokenFileArgs {
    /// The token file.
    #[arg(long, env = "KLAXON_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// A TOML configuration file.
    #[arg(long, env = "KLAXON_CONFIG")]
    config: Option<PathBuf>,
    /// The data folder (default ./klaxon-data).
    #[arg(long, env = "KLAXON_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl TokenFileArgs {
    /// The token file, and the configuration (with `--data-dir`) whose
    /// event log records the change.
    fn resolve(self) -> anyhow::Result<(PathBuf, config::Config)> {
        let (mut config, _) = config::Config::load(self.config.as_deref())?;
        config::Overrides { data_dir: self.data_dir, ..Default::default() }.apply(&mut config, None)?;
        Ok((self.tokens_file.unwrap_or_else(|| config.tokens_file()), config))
    }
}

/// Records the token file's change in the event log of `config`'s data
/// folder and says how on stderr.
fn record_tokens(path: &std::path::Path, config: &config::Config) -> anyhow::Result<()> {
    let file = klaxon_auth::tokens::TokenFile::read(path)?;
    let data_dir = std::path::absolute(&config.data_dir).unwrap_or(config.data_dir.clone());
    eprintln!("klaxond: {}", tokens_audit::record_now(&data_dir, config.log.clone(), &file));
    Ok(())
}

fn parse_role(s: &str) -> Result<klaxon_auth::Role, String> {
    s.parse()
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    use klaxon_auth::tokens;
    match command {
        TokenCommand::Create { name, role, teams, file } => {
            let (path, config) = file.resolve()?;
            let token = tokens::create(&path, &name, role, &teams)?;
            eprintln!("klaxond: created {role} token for {name} in {}; it is shown only now:", path.display());
            println!("{token}");
            record_tokens(&path, &config)?;
        }
        TokenCommand::Revoke { name, file } => {
            let (path, config) = file.resolve()?;
            tokens::revoke(&path, &name)?;
            eprintln!("klaxond: revoked {name}'s token in {}", path.display());
            record_tokens(&path, &config)?;
        }
        TokenCommand::List { file } => {
            let (path, _) = file.resolve()?;
            for entry in tokens::TokenFile::read(&path)?.entries {
                let teams = if entry.teams.is_empty() { "every team".to_owned() } else { entry.teams.join(",") };
                println!("{}\t{}\t{teams}\t{}", entry.name, entry.role, entry.created_at);
            }
        }
    }
    Ok(())
}

/// Flags of `klaxond serve`; each overrides the configuration file.
#[derive(clap::Args)]
struct ServeArgs {
    /// Which process: log, intake, severity, paging, notifier, review, gateway.
    #[arg(value_enum)]
    role: serve::Role,
    /// A TOML configuration file (see deploy/klaxon.toml, `[cluster]`).
    #[arg(long, env = "KLAXON_CONFIG")]
    config: Option<PathBuf>,
    /// Address for gRPC (default: the role's `[cluster]` address; the
    /// gateway's is `listen`, 127.0.0.1:7600).
    #[arg(long, env = "KLAXON_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Folder of the event log (`log` only; default ./klaxon-data).
    #[arg(long, env = "KLAXON_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the HTTP intake, Alertmanager and PagerDuty (`intake`
    /// only; default `http_listen`, 127.0.0.1:7680).
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    http_listen: Option<std::net::SocketAddr>,
    /// Address for the e-mail intake, plain SMTP (`intake` only; default
    /// `[intake] smtp_listen`, off when unset; keep it behind the MTA).
    #[arg(long, env = "KLAXON_SMTP_LISTEN")]
    smtp_listen: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics on this address (`GET /metrics`; default
    /// `metrics_listen`); `intake` serves them on its HTTP address anyway.
    #[arg(long, env = "KLAXON_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// The NATS server (default nats://127.0.0.1:4222).
    #[arg(long, env = "KLAXON_NATS_URL")]
    nats: Option<String>,
    /// The log server's address (default 127.0.0.1:7601).
    #[arg(long, env = "KLAXON_LOG_SERVER")]
    log_server: Option<String>,
    /// Where a service runs, as `service=host:port` (repeatable; for the
    /// gateway).
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(String, String)>,
    /// The token file (default `[auth] tokens_file`, else tokens.toml in
    /// the data folder); every process but the gateway reads it.
    #[arg(long, env = "KLAXON_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// A file holding this process's token of role `service`, presented to
    /// the log server (default `[auth] service_token_file`).
    #[arg(long, env = "KLAXON_SERVICE_TOKEN_FILE")]
    service_token_file: Option<PathBuf>,
    /// This node's id in `[log_group]` (`log` only; overrides
    /// `log_group.node_id`, so that every node can share one file).
    #[arg(long, env = "KLAXON_LOG_GROUP_NODE_ID")]
    node_id: Option<u64>,
    /// This replica's id in the claims of `paging` and `notifier`
    /// (overrides `[replica] id`; default `<hostname>-<pid>`). Give every
    /// replica of a role its own.
    #[arg(long, env = "KLAXON_REPLICA_ID")]
    replica_id: Option<String>,
}

fn parse_route(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not service=host:port"))
}

/// Flags of `klaxond up`; each overrides the configuration file.
#[derive(clap::Args)]
struct UpArgs {
    /// A TOML configuration file (see deploy/klaxon.toml).
    #[arg(long, env = "KLAXON_CONFIG")]
    config: Option<PathBuf>,
    /// Address for gRPC (default 127.0.0.1:7600; port 0 picks a free one).
    #[arg(long, env = "KLAXON_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Folder of the event log (default ./klaxon-data).
    #[arg(long, env = "KLAXON_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the HTTP intake: Alertmanager webhook and PagerDuty
    /// Events API v2 (default 127.0.0.1:7680; port 0 picks a free one).
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    http_listen: Option<std::net::SocketAddr>,
    /// Address for the e-mail intake, plain SMTP (default `[intake]
    /// smtp_listen`, off when unset; port 0 picks a free one).
    #[arg(long, env = "KLAXON_SMTP_LISTEN")]
    smtp_listen: Option<std::net::SocketAddr>,
    /// The token file (default `[auth] tokens_file`, else tokens.toml in
    /// the data folder).
    #[arg(long, env = "KLAXON_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("klaxond: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        // Managing tokens runs no server: no runtime, no traces.
        Commands::Token(command) => return token(command),
        Commands::Config(ConfigCommand::Check { file }) => {
            println!("{}", reload::check(&file)?);
            return Ok(());
        }
        server => server,
    };
    let service_name = match &command {
        Commands::Up(_) => "klaxond".to_owned(),
        Commands::Serve(args) => format!("klaxon-{}", args.role.name()),
        Commands::LogGroup(_) | Commands::Backup(_) => "klaxond".to_owned(),
        Commands::Token(_) | Commands::Config(_) => unreachable!("handled above"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The trace exporter's connection lives on the runtime: set it up inside,
    // and drop the guard (which exports the last spans) before the runtime.
    let telemetry = {
        let _entered = runtime.enter();
        klaxon_telemetry::init(&service_name)?
    };
    let result = match command {
        Commands::Up(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, validated)| {
            let overrides = config::Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                http_listen: args.http_listen,
                smtp_listen: args.smtp_listen,
                tokens_file: args.tokens_file,
                ..Default::default()
            };
            overrides.apply(&mut config, None)?;
            runtime.block_on(up::run(config, validated, args.config.as_deref()))
        }),
        Commands::Serve(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, validated)| {
            let overrides = config::Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                http_listen: args.http_listen,
                smtp_listen: args.smtp_listen,
                metrics_listen: args.metrics_listen,
                tokens_file: args.tokens_file,
                service_token_file: args.service_token_file,
                nats: args.nats,
                log_server: args.log_server,
                routes: args.routes,
                node_id: args.node_id,
                replica_id: args.replica_id,
            };
            overrides.apply(&mut config, Some(args.role.name()))?;
            runtime.block_on(serve::run(args.role, config, validated, args.config.as_deref()))
        }),
        Commands::LogGroup(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, _)| {
            log_group::token_file_override(&mut config, args.service_token_file);
            let command = match args.command {
                LogGroupCommand::Status => log_group::Command::Status,
                LogGroupCommand::Add { id, address } => log_group::Command::Add { id, address },
                LogGroupCommand::Remove { id } => log_group::Command::Remove { id },
            };
            runtime.block_on(log_group::run(&config, args.server, command, args.json))
        }),
        Commands::Backup(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, _)| {
            log_group::token_file_override(&mut config, args.service_token_file);
            let server = args.server.unwrap_or_else(|| config.cluster.log.clone());
            runtime.block_on(backup::run(&config, &server, &args.dest))
        }),
        Commands::Token(_) | Commands::Config(_) => unreachable!("handled above"),
    };
    drop(telemetry);
    result
}
