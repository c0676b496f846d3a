//! `klaxond`, the Klaxon server.
//!
//! `klaxond up` runs the event log and the services in one process (the
//! embedded topology): gRPC on 127.0.0.1:7600, the HTTP intake
//! (Alertmanager, PagerDuty) on 127.0.0.1:7680, data in `./klaxon-data`,
//! unless the flags, the environment or a TOML file say otherwise.
//! `klaxond serve <role>` runs one process of the distributed topology (the
//! log server, one service, or the gateway), talking over gRPC and NATS
//! JetStream. The binary only parses flags and configuration and wires
//! components; the work is in the library crates.
//!
//! Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 1 when it cannot start
//! or fails, 2 for usage errors, 130 when a second signal cut the stop short.

mod config;
mod gateway;
mod metrics;
mod serve;
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
    /// Serve Prometheus metrics on this address (`GET /metrics`); `intake`
    /// serves them on its HTTP address anyway.
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let service_name = match &cli.command {
        Commands::Up(_) => "klaxond".to_owned(),
        Commands::Serve(args) => format!("klaxon-{}", args.role.name()),
    };
    // The trace exporter's connection lives on the runtime: set it up inside,
    // and drop the guard (which exports the last spans) before the runtime.
    let telemetry = {
        let _entered = runtime.enter();
        klaxon_telemetry::init(&service_name)?
    };
    let result = match cli.command {
        Commands::Up(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, validated)| {
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            if let Some(dir) = args.data_dir {
                config.data_dir = dir;
            }
            if let Some(http_listen) = args.http_listen {
                config.http_listen = http_listen;
            }
            runtime.block_on(up::run(config, validated))
        }),
        Commands::Serve(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, validated)| {
            if let Some(http_listen) = args.http_listen {
                config.http_listen = http_listen;
            }
            let overrides = serve::Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                nats: args.nats,
                log_server: args.log_server,
                metrics_listen: args.metrics_listen,
                routes: args.routes,
            };
            runtime.block_on(serve::run(args.role, config, validated, overrides))
        }),
    };
    drop(telemetry);
    result
}
