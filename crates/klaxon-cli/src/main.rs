//! `klaxon`: Klaxon's incident command line. All logic lives in the
//! `klaxon_cli` library; see its docs (or `klaxon --help`) for the commands
//! and exit codes.

fn main() -> std::process::ExitCode {
    klaxon_cli::main_with_args(std::env::args_os())
}
