//! The `tidemark` operator CLI: parses arguments, builds clients once, and calls the library.
//!
//! Exit codes: 0 everything succeeded; 1 at least one table failed; 2 usage or configuration
//! error; 3 a required service could not be reached.

mod config_cmd;
mod connections_cmd;
mod output;
mod progress;
mod quality_cmd;
mod replay_cmd;
mod s3clean_cmd;
mod schedules_cmd;
mod sync_cmd;
mod verify_cmd;
mod watermark_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tidemark::config::{Config, Environment};
use tidemark::services::Services;
use tidemark::steps::this_process;
use tidemark::ErrorKind;

/// Keeps Redshift (or PostgreSQL) in step with MySQL, incrementally and exactly once.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about, long_about = None)]
struct Cli {
    /// Configuration: a file, or an `s3://bucket/key` object (as the Lambda functions read it).
    /// Default: `$TIDEMARK_CONFIG`, else `./tidemark.yaml`.
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

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// More log detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Only errors in the log.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync tables now: extract, commit and load, through the sync state machine.
    ///
    /// Example: `tidemark sync -t shop.orders` or `tidemark sync -p default --backup-only`
    Sync(sync_cmd::SyncArgs),
    /// Validate and inspect the configuration file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Read and edit a table's watermark.
    #[command(subcommand)]
    Watermark(watermark_cmd::WatermarkCommand),
    /// Check and correct a table's row counts.
    #[command(subcommand, name = "watermark-count")]
    WatermarkCount(watermark_cmd::CountCommand),
    /// Reach each source, target, bucket, secret and bastion; report versions and latency.
    #[command(subcommand)]
    Connections(connections_cmd::ConnectionsCommand),
    /// Data quality: each run's check results, and releasing or dropping a quarantined run.
    #[command(subcommand)]
    Quality(quality_cmd::QualityCommand),
    /// S3 retention: list a table's files by run, delete what is loaded (never pending data).
    #[command(subcommand, name = "s3clean")]
    S3clean(s3clean_cmd::S3cleanCommand),
    /// Compare a table in the target with its source: rows missing, gone from the source, or
    /// with different values, each named by key (exit 1 when any); rows changed after the last
    /// loaded run are reported apart, as not yet synced.
    ///
    /// Example: `tidemark verify -t shop.orders`, `tidemark verify -t shop.orders --repair`,
    /// `tidemark verify -p default` (every table)
    Verify(verify_cmd::VerifyArgs),
    /// Load a table again from its runs on S3, without reading MySQL: the runs already loaded
    /// whose rows fall in the window, in order, into the pipeline's target or another warehouse
    /// connection. A replayed row never replaces a newer one; replaying a run there again is a
    /// no-op (the ledger records it under a replay id).
    ///
    /// Example: `tidemark replay -t shop.orders` (after the target table was dropped),
    /// `tidemark replay -t shop.orders --since '2026-11-01' --into staging_wh`
    Replay(replay_cmd::ReplayArgs),
    /// The deployed stack's sync schedules and pipeline alarms, from the config's `schedule`,
    /// `schedule_timezone` and `freshness_alarm`: `plan` shows the changes, `apply` makes them.
    ///
    /// Example: `tidemark schedules plan`, then `tidemark schedules apply` (with the stack's
    /// outputs in TIDEMARK_SCHEDULE_GROUP, TIDEMARK_SCHEDULE_ROLE_ARN and
    /// TIDEMARK_STATE_MACHINE_ARN)
    #[command(subcommand)]
    Schedules(schedules_cmd::SchedulesCommand),
}

/// A command's failure, carrying the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
    /// The command already printed its answer (with `--json`, the one document on stdout).
    pub(crate) reported: bool,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub(crate) fn config(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: error.into(),
            reported: false,
        }
    }

    /// A failure whose answer the command has already printed: `--json` adds no second document.
    pub(crate) fn reported(code: u8, error: anyhow::Error) -> Self {
        Failure {
            code,
            error,
            reported: true,
        }
    }
}

impl From<tidemark::Error> for Failure {
    /// Bad input or config → 2; a service that cannot be reached → 3; anything else → 1.
    fn from(err: tidemark::Error) -> Self {
        let code = match &err {
            tidemark::Error::Config { .. }
            | tidemark::Error::InvalidRequest(_)
            | tidemark::Error::InvalidName { .. } => 2,
            _ if err.kind() == ErrorKind::Retryable => 3,
            _ => 1,
        };
        Failure {
            code,
            error: err.into(),
            reported: false,
        }
    }
}

/// Loads the configuration named on the command line.
pub(crate) fn load_config(path: &Path) -> Result<Config, Failure> {
    let environment: Environment = std::env::vars().collect();
    let location = path.to_string_lossy();
    if location.starts_with("s3://") {
        // The same loader as the Lambda functions' `TIDEMARK_CONFIG` (DESIGN §7).
        return tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(tidemark::lambda::load_config(&location, &environment))
        })
        .map_err(Failure::from);
    }
    Config::from_file(path, &environment).map_err(|err| match err {
        tidemark::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Failure::config(anyhow::anyhow!(
                "no configuration file at `{}`: pass `--config FILE`, or set `TIDEMARK_CONFIG` (the default is `./tidemark.yaml`)",
                path.display()
            ))
        }
        other => Failure::from(other),
    })
}

/// Services for a local command: clients from the standard AWS environment; leases record this
/// process so a later local run can take them over once it is gone.
pub(crate) async fn services(path: &Path) -> Result<Services, Failure> {
    Ok(Services::from_env(load_config(path)?, Some(this_process())).await)
}

/// A command line clap refuses: with `--json`, the one JSON document the README promises (on
/// stdout, with `exit_code` 2); help and version print as usual and exit 0.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    if matches!(err.kind(), Clap::DisplayHelp | Clap::DisplayVersion)
        || !std::env::args().any(|arg| arg == "--json")
    {
        // clap prints help on stdout and errors on stderr, and picks the exit code.
        err.exit()
    }
    let message = err.render().to_string();
    output::print_json(&serde_json::json!({
        "error": message.trim_end(),
        "exit_code": 2,
    }));
    eprint!("{message}");
    ExitCode::from(2)
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("tidemark={level},{level}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_logging(&cli);
    let outcome = match &cli.command {
        Command::Sync(args) => {
            let display = progress::Display::for_stderr(cli.quiet);
            sync_cmd::run(args, &cli.config, cli.json, display).await
        }
        Command::Config(command) => config_cmd::run(command, &cli.config, cli.json).await,
        Command::Watermark(command) => watermark_cmd::run(command, &cli.config, cli.json).await,
        Command::WatermarkCount(command) => {
            watermark_cmd::run_count(command, &cli.config, cli.json).await
        }
        Command::Connections(command) => connections_cmd::run(command, &cli.config, cli.json).await,
        Command::Quality(command) => quality_cmd::run(command, &cli.config, cli.json).await,
        Command::S3clean(command) => s3clean_cmd::run(command, &cli.config, cli.json).await,
        Command::Verify(args) => verify_cmd::run(args, &cli.config, cli.json, cli.quiet).await,
        Command::Replay(args) => replay_cmd::run(args, &cli.config, cli.json, cli.quiet).await,
        Command::Schedules(command) => schedules_cmd::run(command, &cli.config, cli.json).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if cli.json && !failure.reported {
                output::print_json(&serde_json::json!({
                    "error": format!("{:#}", failure.error),
                    "exit_code": failure.code,
                }));
            }
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit 2 is for usage and configuration only; a service out of reach is 3; a bug, a lost
    /// lease or an answer tidemark cannot use is 1.
    #[test]
    fn exit_codes_follow_the_error_variants() {
        let code = |err: tidemark::Error| Failure::from(err).code;
        assert_eq!(code(tidemark::Error::config("tidemark.yaml:3:1", "bad")), 2);
        assert_eq!(
            code(tidemark::Error::InvalidRequest("no such table".into())),
            2
        );
        assert_eq!(code(tidemark::Error::internal("bug")), 1);
        assert_eq!(
            code(tidemark::Error::LeaseLost {
                table: "shop.orders".into(),
                run_id: "r".into(),
            }),
            1
        );
        assert_eq!(
            code(tidemark::Error::unexpected_answer(
                "the target",
                "a count",
                "x"
            )),
            1
        );
        let fault = |retryable| tidemark::Error::InjectedFault {
            point: "after_commit".into(),
            hit: 1,
            retryable,
        };
        assert_eq!(code(fault(true)), 3);
        assert_eq!(code(fault(false)), 1);
    }
}
