//! `tidemark config check|show|list`: validate the file and show what tidemark will do with it.

use std::path::Path;

use clap::Subcommand;
use tidemark::config::{Config, Connection};

use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the file and print a summary. Errors name the file, line and column.
    ///
    /// Example: `tidemark config check --config tidemark.yaml`
    Check,
    /// Print the configuration as tidemark resolved it (defaults filled in, secrets masked).
    Show,
    /// List the pipelines and their tables.
    List,
}

pub(crate) fn run(command: &ConfigCommand, path: &Path, json: bool) -> Result<(), Failure> {
    let config = crate::load_config(path)?;
    match command {
        ConfigCommand::Check => {
            if json {
                print_json(&serde_json::json!({
                    "valid": true,
                    "file": path.display().to_string(),
                    "connections": config.connections.len(),
                    "pipelines": config.pipelines.iter().map(|(name, p)| {
                        serde_json::json!({"name": name, "tables": p.tables.len()})
                    }).collect::<Vec<_>>(),
                }));
            } else {
                crate::output::print_line(&format!("{}: valid", path.display()));
                for (name, connection) in &config.connections {
                    crate::output::print_line(&format!(
                        "  connection {name}: {}",
                        describe_connection(connection)
                    ));
                }
                for (name, pipeline) in &config.pipelines {
                    crate::output::print_line(&format!(
                        "  pipeline {name}: {} → {} via s3://{}/{}, {} table(s), {} at a time",
                        pipeline.source,
                        pipeline.target,
                        pipeline.s3.bucket,
                        pipeline.s3.prefix,
                        pipeline.tables.len(),
                        pipeline.table_concurrency
                    ));
                }
            }
        }
        ConfigCommand::Show => {
            if json {
                print_json(&serde_json::to_value(&config).map_err(Failure::config)?);
            } else {
                crate::output::print_text(&serde_yaml_string(&config)?);
            }
        }
        ConfigCommand::List => {
            if json {
                print_json(&serde_json::json!(config
                    .pipelines
                    .iter()
                    .map(|(name, p)| serde_json::json!({
                        "pipeline": name,
                        "tables": p.tables.keys().collect::<Vec<_>>(),
                    }))
                    .collect::<Vec<_>>()));
            } else {
                for (name, pipeline) in &config.pipelines {
                    for (table, table_config) in &pipeline.tables {
                        crate::output::print_line(&format!(
                            "{name}\t{table}\t{}\t{}",
                            table_config.cdc_strategy,
                            table_config.load_mode()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn describe_connection(connection: &Connection) -> String {
    match connection {
        Connection::Mysql(c) => format!("mysql {}:{} as {}", c.host, c.port, c.user),
        Connection::Postgres(c) => format!(
            "postgres {}:{}/{} schema {}",
            c.host, c.port, c.database, c.schema
        ),
        Connection::Redshift(c) => format!(
            "redshift ({:?}) database {} schema {}",
            c.access, c.database, c.schema
        ),
    }
}

fn serde_yaml_string(config: &Config) -> Result<String, Failure> {
    tidemark::config::to_yaml(config).map_err(Failure::config)
}

use crate::output::print_json;
