//! The run context: what `begin` fixes for one run of one table and every later step receives
//! unchanged through the state machine. Small by design (Step Functions payloads are capped at
//! 256 KB): file lists live in S3 manifests, never here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{CdcStrategy, Config, LoadMode, Pipeline, TableConfig};
use crate::cursor::{Ceiling, Cursor};
use crate::error::{Error, Result};
use crate::naming::{RunId, StorageLayout, TableId};

/// Which stages a sync runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Extract, commit, load.
    #[default]
    Full,
    /// Extract and commit only; the runs stay pending.
    BackupOnly,
    /// Load the pending runs only.
    RedshiftOnly,
}

impl std::fmt::Display for SyncMode {
    /// As payloads spell it: `full`, `backup_only`, `redshift_only`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Full => "full",
            SyncMode::BackupOnly => "backup_only",
            SyncMode::RedshiftOnly => "redshift_only",
        })
    }
}

/// A repair run (`tidemark verify --repair`): instead of the rows its cursor finds, it
/// re-extracts the rows of listed keys, whatever their cursor, and leaves the watermark's cursor
/// where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRun {
    /// The S3 key (in the pipeline's bucket) of the keys to re-extract: a JSON array of keys,
    /// each an array of the key columns' values as text.
    pub keys_object: String,
    /// How many keys it lists.
    pub keys: u64,
}

/// Everything fixed at `begin` for one run of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunContext {
    /// Pipeline name.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: TableId,
    /// Target table name.
    pub target: String,
    /// This run.
    pub run_id: RunId,
    /// Which stages run.
    pub mode: SyncMode,
    /// How rows are selected.
    pub strategy: CdcStrategy,
    /// How rows meet the target.
    pub load_mode: LoadMode,
    /// Rows strictly after this position are read (the watermark, moved back by `lookback`).
    pub start_cursor: Cursor,
    /// Rows at or below this bound are read; fixed from the source at begin.
    pub ceiling: Ceiling,
    /// Fingerprint of the source schema at begin; extraction fails if the table changes mid-run.
    pub schema_fingerprint: String,
    /// Key columns (source names) that identify a row in the target, fixed at begin.
    pub key_columns: Vec<String>,
    /// Run-wide cap on extracted rows (`--limit`).
    #[serde(default)]
    pub limit: Option<u64>,
    /// When this run's lease lapses.
    pub lease_expires_at: DateTime<Utc>,
    /// Set for a repair run: the keys it re-extracts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairRun>,
}

impl RunContext {
    /// The pipeline, table config and storage layout this run belongs to.
    pub fn resolve<'c>(
        &self,
        config: &'c Config,
    ) -> Result<(&'c Pipeline, &'c TableConfig, StorageLayout)> {
        let pipeline = config.pipeline(&self.pipeline)?;
        let table = pipeline
            .tables
            .get(&self.table.to_string())
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "table `{}` is not in pipeline `{}` of the configuration",
                    self.table, self.pipeline
                ))
            })?;
        let table_config = table;
        self.refuse_what_the_config_does_not_say(table_config)?;
        Ok((
            pipeline,
            table_config,
            StorageLayout::new(&pipeline.s3.prefix),
        ))
    }

    /// A run's target, load mode, strategy and configured keys come from the configuration, not
    /// from whoever sends the payload: a forged or stale one must not load into another table
    /// or by other keys.
    fn refuse_what_the_config_does_not_say(&self, table_config: &TableConfig) -> Result<()> {
        let configured_target = table_config.target_table(&self.table)?;
        let mut differs = Vec::new();
        if self.target != configured_target {
            differs.push(format!(
                "target `{}` (configured: `{configured_target}`)",
                self.target
            ));
        }
        if self.load_mode != table_config.load_mode() {
            differs.push(format!(
                "load mode `{}` (configured: `{}`)",
                self.load_mode,
                table_config.load_mode()
            ));
        }
        if self.strategy != table_config.strategy.kind() {
            differs.push(format!(
                "strategy `{}` (configured: `{}`)",
                self.strategy,
                table_config.strategy.kind()
            ));
        }
        if let Some(keys) = &table_config.key_columns {
            let same = keys.len() == self.key_columns.len()
                && keys
                    .iter()
                    .zip(&self.key_columns)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b));
            if !same {
                differs.push(format!(
                    "key columns ({}) (configured: ({}))",
                    self.key_columns.join(", "),
                    keys.join(", ")
                ));
            }
        }
        if differs.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidRequest(format!(
                "run `{}` of `{}` names {}: refused, since a run's target, keys and load mode come from the configuration; begin a new run (or, if the configuration changed during the run, let it end and sync again)",
                self.run_id,
                self.table,
                differs.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_mode_prints_as_payloads_spell_it() {
        for mode in [SyncMode::Full, SyncMode::BackupOnly, SyncMode::RedshiftOnly] {
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::Value::String(mode.to_string())
            );
        }
    }
}
