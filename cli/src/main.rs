//! The `tidemark` operator CLI: parses arguments, builds clients once, and calls the library.
//!
//! Exit codes: 0 everything succeeded; 1 at least one table failed; 2 usage or configuration
//! error; 3 a required service could not be reached.

mod config_cmd;
mod s3clean_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps Redshift (or PostgreSQL) in step with MySQL, incrementally and exactly once.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about, long_about = None)]
struct Cli {
    /// Configuration file. Default: `$TIDEMARK_CONFIG`, else `./tidemark.yaml`.
    #[arg(
        long,
        global = true,
        env = "TIDEMARK_CONFIG",
        default_value = "tidemark.yaml"
    )]
    config: PathBuf,

    /// Print one JSON document per command on stdout, and nothing else.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate and inspect the configuration file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// S3 retention: list a table's files by run, delete what is loaded (never pending data).
    #[command(subcommand, name = "s3clean")]
    S3clean(s3clean_cmd::S3cleanCommand),
}

/// A command's failure, carrying the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub(crate) fn config(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Config(command) => config_cmd::run(command, &cli.config, cli.json),
        Command::S3clean(command) => s3clean_cmd::run(command, &cli.config, cli.json),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
