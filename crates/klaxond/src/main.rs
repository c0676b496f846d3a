//! `klaxond`, the Klaxon server.
//!
//! `klaxond up` runs the event log and the services in one process (the
//! embedded topology): gRPC on 127.0.0.1:7600, data in `./klaxon-data`,
//! unless the flags, the environment or a TOML file say otherwise. The binary
//! only parses flags and configuration and wires components; the work is in
//! the library crates.
//!
//! Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 1 when it cannot start
//! or fails, 2 for usage errors, 130 when a second signal cut the stop short.

mod config;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Commands::Up(args) => config::Config::load(args.config.as_deref()).and_then(|(mut config, validated)| {
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            if let Some(dir) = args.data_dir {
                config.data_dir = dir;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(up::run(config, validated))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("klaxond: {e:#}");
            ExitCode::from(1)
        }
    }
}
