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
    Check {
        /// Also connect to each pipeline's source and say, for every table with `key_columns`,
        /// whether a unique index of the source makes them identify one row (`merge` and
        /// `replace` refuse keys that do not); and check every table's `checks` against its
        /// columns (an unknown column, a check that cannot read the column's type), at
        /// file:line.
        #[arg(long)]
        source: bool,
    },
    /// Print the configuration as tidemark resolved it (defaults filled in, secrets masked).
    Show,
    /// List the pipelines and their tables.
    List,
}

pub(crate) async fn run(command: &ConfigCommand, path: &Path, json: bool) -> Result<(), Failure> {
    let config = crate::load_config(path)?;
    match command {
        ConfigCommand::Check { source } => {
            let keys = if *source {
                check_quality(path, &config).await?;
                Some(check_keys(path, &config).await?)
            } else {
                None
            };
            if json {
                print_json(&serde_json::json!({
                    "valid": true,
                    "file": path.display().to_string(),
                    "connections": config.connections.len(),
                    "pipelines": config.pipelines.iter().map(|(name, p)| {
                        serde_json::json!({"name": name, "tables": p.tables.len()})
                    }).collect::<Vec<_>>(),
                    "keys": keys,
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
                for key in keys.iter().flatten() {
                    crate::output::print_line(&format!("  {}", key.describe()));
                }
            }
            if let Some(refused) = keys.iter().flatten().find(|k| k.refused) {
                return Err(Failure::config(anyhow::anyhow!("{}", refused.describe())));
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
                            table_config.strategy.kind(),
                            table_config.load_mode()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// How one table's `key_columns` stand against the source's unique indexes.
#[derive(Debug, serde::Serialize)]
struct KeyCheck {
    table: String,
    key_columns: Vec<String>,
    /// The PRIMARY KEY or UNIQUE index (over NOT NULL columns) that lies within the key.
    unique_index: Option<Vec<String>>,
    /// Another unique index the user could name instead.
    suggestion: Option<Vec<String>>,
    /// The load mode refuses this key at the run's start.
    refused: bool,
}

impl KeyCheck {
    fn describe(&self) -> String {
        let key = self.key_columns.join(", ");
        match (&self.unique_index, &self.suggestion) {
            (Some(index), _) => format!(
                "key_columns ({key}) of {}: unique in the source (index over {})",
                self.table,
                index.join(", ")
            ),
            (None, suggestion) => format!(
                "key_columns ({key}) of {}: NOT unique in the source — no PRIMARY KEY or UNIQUE index over NOT NULL columns lies within them{}{}",
                self.table,
                if self.refused { "; `merge` and `replace` refuse them" } else { "" },
                suggestion
                    .as_ref()
                    .map(|s| format!("; a unique key is ({})", s.join(", ")))
                    .unwrap_or_default()
            ),
        }
    }
}

/// For every table with `key_columns`: whether a unique index of its source covers them.
async fn check_keys(path: &Path, config: &Config) -> Result<Vec<KeyCheck>, Failure> {
    let services = crate::services(path).await?;
    let mut checks = Vec::new();
    for pipeline in config.pipelines.values() {
        let keyed: Vec<_> = pipeline
            .tables
            .iter()
            .filter_map(|(table, t)| t.key_columns.as_ref().map(|k| (table, t, k)))
            .collect();
        if keyed.is_empty() {
            continue;
        }
        let source = services.source(pipeline).await?;
        let mut conn = source.conn().await?;
        for (table, table_config, key_columns) in keyed {
            let id = tidemark::naming::TableId::parse(table)?;
            let unique = tidemark::source::unique_keys(&mut conn, &id).await?;
            let unique_index =
                tidemark::source::covering_index(&unique, key_columns).map(<[String]>::to_vec);
            checks.push(KeyCheck {
                table: table.clone(),
                key_columns: key_columns.clone(),
                refused: unique_index.is_none()
                    && table_config.load_mode() != tidemark::config::LoadMode::Append,
                suggestion: unique.first().cloned().filter(|_| unique_index.is_none()),
                unique_index,
            });
        }
    }
    Ok(checks)
}

/// Every table's `checks`, and a type-2 dimension's tracked and history columns, against the
/// columns its source has: each problem at its file:line.
async fn check_quality(path: &Path, config: &Config) -> Result<(), Failure> {
    let text = std::fs::read_to_string(path).map_err(Failure::config)?;
    let file = path.display().to_string();
    let services = crate::services(path).await?;
    let mut found = Vec::new();
    for (pipeline_name, pipeline) in &config.pipelines {
        let checked: Vec<_> = pipeline
            .tables
            .iter()
            .filter(|(_, table)| !table.checks.is_empty() || table.keeps_history())
            .collect();
        if checked.is_empty() {
            continue;
        }
        let source = services.source(pipeline).await?;
        let mut conn = source.conn().await?;
        for (table, table_config) in checked {
            let id = tidemark::naming::TableId::parse(table)?;
            let schema =
                tidemark::schema::discover(&mut conn, &id, &table_config.schema_options()).await?;
            for (index, problem) in tidemark::quality::problems(&table_config.checks, &schema) {
                let item = index.to_string();
                let at = ["pipelines", pipeline_name, "tables", table, "checks", &item];
                found.push(format!(
                    "{}: {problem}",
                    tidemark::config::locate(&file, &text, &at)
                ));
            }
            let keys = table_config
                .key_columns
                .as_ref()
                .unwrap_or(&schema.primary_key);
            if let Err(problem) = tidemark::load::scd_plan(table_config, &schema, keys, &id) {
                let key = match problem.to_string().contains("`scd_columns`") {
                    true => "scd_columns",
                    false => "scd_type",
                };
                let at = ["pipelines", pipeline_name, "tables", table, key];
                found.push(format!(
                    "{}: {problem}",
                    tidemark::config::locate(&file, &text, &at)
                ));
            }
        }
    }
    match found.is_empty() {
        true => Ok(()),
        false => Err(Failure::config(anyhow::anyhow!("{}", found.join("\n")))),
    }
}

fn describe_connection(connection: &Connection) -> String {
    match connection {
        Connection::Mysql(c) => format!("mysql {}:{} as {}", c.host, c.port, c.user),
        Connection::Postgres(c) => format!(
            "postgres {}:{}/{} schema {}",
            c.host, c.port, c.database, c.schema
        ),
        Connection::Redshift(c) => format!(
            "redshift ({}) database {} schema {}",
            c.access.kind(),
            c.database,
            c.schema
        ),
    }
}

fn serde_yaml_string(config: &Config) -> Result<String, Failure> {
    tidemark::config::to_yaml(config).map_err(Failure::config)
}

use crate::output::print_json;
