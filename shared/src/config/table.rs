//! One table's settings: as the file writes them ([`RawTableConfig`], flat keys) and checked
//! ([`TableConfig`], whose [`Strategy`] carries the columns and statement it needs), with the
//! defaults that depend on the strategy and the load mode.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::custom_sql::CustomStatement;
use crate::error::Result;
use crate::naming::{self, TableId};
use crate::quality::{Check, RawCheck};
use crate::schema::{JsonTarget, NulPolicy, OversizePolicy, RedshiftTableOptions, SchemaOptions};

use super::{
    default_chunk_rows, default_lag, default_lookback, yes, CdcStrategy, ColumnsConfig,
    DeletePolicy, DroppedColumns, HumanDuration, LoadMode, OverrideType, RedshiftTableConfig,
    ScdNames, ScdType, TableType,
};

/// How one table is synced, as the file writes it: flat keys, checked together by
/// [`RawTableConfig::strategy`] and turned into a [`TableConfig`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTableConfig {
    /// `hybrid` (default: timestamp cursor + key), `timestamp_only`, `id_only` (append-only
    /// tables), `full_sync` (whole table every run) or `custom_sql`.
    #[serde(default)]
    pub cdc_strategy: CdcStrategy,
    /// The cursor column: a DATETIME/TIMESTAMP for `hybrid` and `timestamp_only`; for `id_only`
    /// an integer column (default: the single-column key). The old tool's `cdc_timestamp_column`
    /// and `cdc_id_column` are accepted for it.
    #[serde(default, alias = "cdc_timestamp_column", alias = "cdc_id_column")]
    pub cursor_column: Option<String>,
    /// Columns that identify a row in the target. Default: the source table's primary key.
    #[serde(default)]
    pub key_columns: Option<Vec<String>>,
    /// Target table name. Default: the source table name (folded to lowercase).
    #[serde(default)]
    pub target_name: Option<String>,
    /// Which columns to sync and how.
    #[serde(default)]
    pub columns: ColumnsConfig,
    /// Rows per extraction chunk before a continuation. Default 500000.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// How far behind the source clock a run's ceiling stays, so that transactions still open
    /// are not skipped. Default `5s`.
    #[serde(default = "default_lag")]
    pub lag: HumanDuration,
    /// How much before the watermark each run starts re-reading, to catch rows whose transaction
    /// committed late: a row stamped T and committed at T + H is loaded only if
    /// H ≤ `lag` + `lookback`. Re-read rows are merged, so this costs reading, not correctness.
    /// Default `5m` for `merge` and `replace`; `append` must keep `0s` (a re-read row would be
    /// appended twice).
    #[serde(default)]
    pub lookback: Option<HumanDuration>,
    /// For `id_only`: how many ids below the watermark each run starts re-reading, so that a
    /// row whose transaction committed after a later id's is not lost (its id was invisible when
    /// an earlier run read past it). A row is loaded when, at the first sync after its commit, its
    /// id is within `id_lookback` of the watermark. Re-read rows are merged (`append` skips a row
    /// already in the target). Default `1000`; `0` turns it off. Only for `id_only`.
    #[serde(default)]
    pub id_lookback: Option<u64>,
    /// `merge` (upsert by key; default), `append`, or `replace` (whole table; default for
    /// `full_sync`).
    #[serde(default)]
    pub load: Option<LoadMode>,
    /// A target column no source column feeds any more (dropped, renamed or excluded in the
    /// source): `keep` (default: it stays, NULL in every row loaded from now on, with a warning
    /// at each sync) or `drop` (`ALTER TABLE … DROP COLUMN` in the schema step, and its data is
    /// gone). A rename is a drop and an add: the new column is backfilled (see README).
    #[serde(default)]
    pub dropped_columns: DroppedColumns,
    /// Redshift table layout.
    #[serde(default)]
    pub redshift: RedshiftTableConfig,
    /// For `cdc_strategy: custom_sql`: one SELECT with `:last_ts`, `:last_id`, `:ceiling`, `:limit`.
    #[serde(default)]
    pub custom_sql: Option<String>,
    /// Load `tinyint(1)` as BOOLEAN (default true) or keep it an integer.
    #[serde(default = "yes")]
    pub tinyint1_as_boolean: bool,
    /// JSON columns in Redshift: `super` (default) or `varchar`.
    #[serde(default)]
    pub json_in_redshift: JsonTarget,
    /// A value longer than its Redshift column holds (VARCHAR and JSON: 65535 bytes; VARBYTE:
    /// 16 MiB): `fail` (default: the run stops before anything is committed, naming the row),
    /// `truncate` (text cut at a character boundary, binary at the byte, JSON becomes NULL) or
    /// `null`. Counted and logged. PostgreSQL targets ignore it: they hold such values whole.
    #[serde(default)]
    pub oversize_in_redshift: OversizePolicy,
    /// A NUL byte (U+0000) in a text or JSON value, which PostgreSQL refuses and Redshift's COPY
    /// treats as a terminator: `fail` (default: the run stops before anything is committed,
    /// naming the column and row), `strip` (the NUL bytes are removed) or `replace` (each becomes
    /// U+FFFD). Counted and logged. Binary columns keep NUL bytes: they are data there.
    #[serde(default)]
    pub nul_in_text: NulPolicy,
    /// Data quality checks on every run's rows (README: Data quality): `not_null`, `unique`,
    /// `range`, `accepted_values`, `pattern`, `row_count`, `freshness`, each with `severity:
    /// fail` (default: a failing run is quarantined, not loaded) or `warn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<RawCheck>,
    /// Verify the table against its source after a sync that succeeded, at most once per
    /// `every` (`0s`: after every sync): the `VerifyIfDue` state of the sync state machine, as
    /// `tidemark verify` does it (README: Verify). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySchedule>,
    /// A row deleted in the source: `ignore` (default: the target keeps it), `hard` (deleted
    /// from the target) or `soft` (kept, with `_tidemark_deleted_at` set). Deletions are found
    /// by a key reconciliation every `reconcile_every` and loaded as a deletion run (README:
    /// Deleted rows). Only for `load: merge` tables of one source table.
    #[serde(default)]
    pub deletes: DeletePolicy,
    /// How often a sync reconciles keys to find deleted rows: at most once per this long
    /// (default `1d`; `0s`: at every sync). Only with `deletes: hard` or `soft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_every: Option<HumanDuration>,
    /// Statements run in the target, in order, after each load of the table committed (after
    /// the pipeline's `after_load`), e.g. `REFRESH MATERIALIZED VIEW …`: one statement per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_load: Vec<String>,
    /// Tables of the same pipeline (`db.table`) this table syncs after, in a later wave of the
    /// same sync; when one of them does not succeed, this table is skipped (README: Dependencies
    /// between tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `fact` (default) or `dimension`: a dimension is loaded as a slowly changing dimension of
    /// `scd_type` (README: Slowly changing dimensions).
    #[serde(default)]
    pub table_type: TableType,
    /// A dimension's `type_1` (default: one row per key, overwritten: `load: merge`) or `type_2`
    /// (one row per version, with `valid_from`, `valid_to` and `is_current`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scd_type: Option<ScdType>,
    /// A dimension's key (source columns); default `key_columns`, which it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<Vec<String>>,
    /// Type 2: the tracked columns, whose change makes a new version; a change of another column
    /// updates the current version in place. Default: every column outside the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scd_columns: Option<Vec<String>>,
    /// Type 2: a column holding each version's surrogate key, the MD5 of its business key and
    /// `valid_from` (the same at every replay). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surrogate_key: Option<String>,
    /// Type 2: the history columns' names and where `valid_from` comes from.
    #[serde(default, skip_serializing_if = "is_default_scd")]
    pub scd: ScdNames,
}

fn is_default_scd(names: &ScdNames) -> bool {
    *names == ScdNames::default()
}

/// How often the sync verifies a table: `verify: { every: 1d }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySchedule {
    /// At most one verify per this long; `0s` verifies after every sync.
    pub every: HumanDuration,
}

/// How one table is synced, checked: the strategy holds exactly the columns and statement it
/// needs, so a strategy without its cursor column, or a `custom_sql` statement that is not one
/// SELECT, cannot exist past parsing. Every other field is as in [`RawTableConfig`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawTableConfig", into = "RawTableConfig")]
pub struct TableConfig {
    /// How rows are found between runs, with what that needs.
    pub strategy: Strategy,
    /// See [`RawTableConfig::key_columns`].
    pub key_columns: Option<Vec<String>>,
    /// See [`RawTableConfig::target_name`].
    pub target_name: Option<String>,
    /// See [`RawTableConfig::columns`].
    pub columns: ColumnsConfig,
    /// See [`RawTableConfig::chunk_rows`].
    pub chunk_rows: u64,
    /// See [`RawTableConfig::lag`].
    pub lag: HumanDuration,
    /// See [`RawTableConfig::lookback`]; [`TableConfig::lookback`] fills the default in.
    pub lookback: Option<HumanDuration>,
    /// See [`RawTableConfig::load`]; [`TableConfig::load_mode`] fills the default in.
    pub load: Option<LoadMode>,
    /// See [`RawTableConfig::dropped_columns`].
    pub dropped_columns: DroppedColumns,
    /// See [`RawTableConfig::redshift`].
    pub redshift: RedshiftTableConfig,
    /// See [`RawTableConfig::tinyint1_as_boolean`].
    pub tinyint1_as_boolean: bool,
    /// See [`RawTableConfig::json_in_redshift`].
    pub json_in_redshift: JsonTarget,
    /// See [`RawTableConfig::oversize_in_redshift`].
    pub oversize_in_redshift: OversizePolicy,
    /// See [`RawTableConfig::nul_in_text`].
    pub nul_in_text: NulPolicy,
    /// See [`RawTableConfig::checks`].
    pub checks: Vec<Check>,
    /// See [`RawTableConfig::verify`].
    pub verify: Option<VerifySchedule>,
    /// See [`RawTableConfig::deletes`].
    pub deletes: DeletePolicy,
    /// See [`RawTableConfig::reconcile_every`]; [`TableConfig::reconcile_every`] fills the
    /// default in.
    pub reconcile_every: Option<HumanDuration>,
    /// See [`RawTableConfig::after_load`].
    pub after_load: Vec<String>,
    /// See [`RawTableConfig::depends_on`].
    pub depends_on: Vec<String>,
    /// See [`RawTableConfig::table_type`].
    pub table_type: TableType,
    /// See [`RawTableConfig::scd_type`].
    pub scd_type: Option<ScdType>,
    /// See [`RawTableConfig::business_key`].
    pub business_key: Option<Vec<String>>,
    /// See [`RawTableConfig::scd_columns`].
    pub scd_columns: Option<Vec<String>>,
    /// See [`RawTableConfig::surrogate_key`].
    pub surrogate_key: Option<String>,
    /// See [`RawTableConfig::scd`].
    pub scd: ScdNames,
}

/// How rows are found between runs, with the columns and statement that way needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Timestamp cursor, ties broken by the key.
    Hybrid {
        /// The DATETIME/TIMESTAMP column that changes on every insert and update.
        cursor_column: String,
    },
    /// Timestamp cursor only.
    TimestampOnly {
        /// The DATETIME/TIMESTAMP column that changes on every insert and update.
        cursor_column: String,
    },
    /// Increasing integer id; append-only tables.
    IdOnly {
        /// The integer id column; `None` means the single-column key.
        id_column: Option<String>,
        /// How many ids below the watermark each run re-reads.
        id_lookback: u64,
    },
    /// The whole table every run.
    FullSync,
    /// The user's own SELECT.
    CustomSql {
        /// The checked statement.
        statement: CustomStatement,
        /// The column of its result that the watermark follows.
        cursor_column: String,
    },
}

impl Strategy {
    /// The strategy's name, as manifests and run contexts record it.
    pub fn kind(&self) -> CdcStrategy {
        match self {
            Strategy::Hybrid { .. } => CdcStrategy::Hybrid,
            Strategy::TimestampOnly { .. } => CdcStrategy::TimestampOnly,
            Strategy::IdOnly { .. } => CdcStrategy::IdOnly,
            Strategy::FullSync => CdcStrategy::FullSync,
            Strategy::CustomSql { .. } => CdcStrategy::CustomSql,
        }
    }

    /// The column the watermark follows, as configured: the timestamp column, the `id_only` id
    /// column if one is named, the custom statement's cursor column; none for `full_sync`.
    pub fn cursor_column(&self) -> Option<&str> {
        match self {
            Strategy::Hybrid { cursor_column }
            | Strategy::TimestampOnly { cursor_column }
            | Strategy::CustomSql { cursor_column, .. } => Some(cursor_column),
            Strategy::IdOnly { id_column, .. } => id_column.as_deref(),
            Strategy::FullSync => None,
        }
    }
}

impl RawTableConfig {
    /// The strategy with its data, or each key that is missing or does not fit, with why.
    pub fn strategy(&self) -> std::result::Result<Strategy, Vec<(&'static str, String)>> {
        let kind = self.cdc_strategy;
        let mut problems = Vec::new();
        let cursor = self.cursor_column.clone();
        let strategy = match (kind, cursor) {
            (CdcStrategy::Hybrid, Some(cursor_column)) => Some(Strategy::Hybrid { cursor_column }),
            (CdcStrategy::TimestampOnly, Some(cursor_column)) => {
                Some(Strategy::TimestampOnly { cursor_column })
            }
            (CdcStrategy::Hybrid | CdcStrategy::TimestampOnly, None) => {
                problems.push((
                    "cdc_strategy",
                    format!(
                        "`{kind}` needs `cursor_column`: the DATETIME/TIMESTAMP column that changes on every insert and update"
                    ),
                ));
                None
            }
            (CdcStrategy::IdOnly, id_column) => Some(Strategy::IdOnly {
                id_column,
                id_lookback: self.id_lookback.unwrap_or(DEFAULT_ID_LOOKBACK),
            }),
            (CdcStrategy::FullSync, _) => Some(Strategy::FullSync),
            (CdcStrategy::CustomSql, cursor) => {
                match (&self.custom_sql, cursor) {
                    (None, _) => problems.push((
                        "cdc_strategy",
                        "`custom_sql` needs `custom_sql`: one SELECT using `:last_ts`, `:last_id`, `:ceiling` and `:limit`".to_owned(),
                    )),
                    (Some(_), None) => problems.push((
                        "cdc_strategy",
                        "`custom_sql` needs `cursor_column`: the column of its result that the watermark follows".to_owned(),
                    )),
                    (Some(_), Some(_)) => {}
                }
                None
            }
        };
        let statement = match &self.custom_sql {
            Some(sql) => match CustomStatement::parse(sql) {
                Ok(statement) => Some(statement),
                Err(err) => {
                    problems.push(("custom_sql", err.to_string()));
                    None
                }
            },
            None => None,
        };
        if self.custom_sql.is_some() && kind != CdcStrategy::CustomSql {
            problems.push((
                "custom_sql",
                "`custom_sql` is only used with `cdc_strategy: custom_sql`".to_owned(),
            ));
        }
        if self.id_lookback.is_some() && kind != CdcStrategy::IdOnly {
            problems.push((
                "id_lookback",
                format!(
                    "`id_lookback` re-reads ids and only applies to `cdc_strategy: id_only`; `{kind}` re-reads by time with `lookback`"
                ),
            ));
        }
        problems.extend(self.deletes_problems());
        problems.extend(self.scd_problems());
        let strategy = match (strategy, statement, self.cursor_column.clone()) {
            (Some(strategy), _, _) => strategy,
            (None, Some(statement), Some(cursor_column)) if kind == CdcStrategy::CustomSql => {
                Strategy::CustomSql {
                    statement,
                    cursor_column,
                }
            }
            _ => return Err(problems),
        };
        match problems.is_empty() {
            true => Ok(strategy),
            false => Err(problems),
        }
    }

    pub(super) fn load_mode(&self) -> LoadMode {
        load_mode(self.cdc_strategy, self.load)
    }

    /// `deletes` needs a table whose target rows are its source's rows, one per key: `merge`
    /// from one source table.
    fn deletes_problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.deletes == DeletePolicy::Ignore {
            if self.reconcile_every.is_some() {
                problems.push((
                    "reconcile_every",
                    "`reconcile_every` says how often deleted rows are looked for, and this table ignores them: set `deletes: hard` or `soft`, or remove `reconcile_every`".to_owned(),
                ));
            }
            return problems;
        }
        let why = match (self.cdc_strategy, self.load_mode()) {
            (CdcStrategy::CustomSql, _) => Some(
                "its rows come from a `custom_sql` statement, so no source table says which keys still exist".to_owned(),
            ),
            (_, LoadMode::Append) => Some(
                "`load: append` keeps every version of a row, and a deletion would remove them all; use `load: merge`".to_owned(),
            ),
            (kind, LoadMode::Replace) => Some(format!(
                "`load: replace`{} rewrites the whole table at every sync, so deleted rows leave with it already; remove `deletes`",
                if kind == CdcStrategy::FullSync { " (the default of `full_sync`)" } else { "" }
            )),
            _ => None,
        };
        if let Some(why) = why {
            problems.push((
                "deletes",
                format!("`deletes: {}` cannot apply: {why}", self.deletes),
            ));
        }
        problems
    }

    pub(super) fn lookback(&self) -> HumanDuration {
        lookback(self.lookback, self.load_mode())
    }

    pub(super) fn target_table(&self, table: &TableId) -> Result<String> {
        target_table(self.target_name.as_deref(), table)
    }
}

impl TryFrom<RawTableConfig> for TableConfig {
    type Error = String;

    fn try_from(raw: RawTableConfig) -> std::result::Result<TableConfig, String> {
        let strategy = raw.strategy().map_err(|problems| {
            problems
                .into_iter()
                .map(|(key, message)| format!("`{key}`: {message}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let checks = raw
            .checks
            .iter()
            .enumerate()
            .map(|(index, check)| {
                check.check().map_err(|problems| {
                    let found: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
                    format!("`checks` item {}: {}", index + 1, found.join("; "))
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(TableConfig {
            strategy,
            checks,
            key_columns: raw.key_columns.or(raw.business_key.clone()),
            target_name: raw.target_name,
            columns: raw.columns,
            chunk_rows: raw.chunk_rows,
            lag: raw.lag,
            lookback: raw.lookback,
            load: raw.load,
            dropped_columns: raw.dropped_columns,
            redshift: raw.redshift,
            tinyint1_as_boolean: raw.tinyint1_as_boolean,
            json_in_redshift: raw.json_in_redshift,
            oversize_in_redshift: raw.oversize_in_redshift,
            nul_in_text: raw.nul_in_text,
            verify: raw.verify,
            deletes: raw.deletes,
            reconcile_every: raw.reconcile_every,
            after_load: raw.after_load,
            depends_on: raw.depends_on,
            table_type: raw.table_type,
            scd_type: raw.scd_type,
            business_key: raw.business_key,
            scd_columns: raw.scd_columns,
            surrogate_key: raw.surrogate_key,
            scd: raw.scd,
        })
    }
}

impl From<TableConfig> for RawTableConfig {
    fn from(table: TableConfig) -> RawTableConfig {
        let cdc_strategy = table.strategy.kind();
        let cursor_column = table.strategy.cursor_column().map(str::to_owned);
        let (custom_sql, id_lookback) = match table.strategy {
            Strategy::CustomSql { statement, .. } => (Some(statement.text().to_owned()), None),
            Strategy::IdOnly { id_lookback, .. } => (None, Some(id_lookback)),
            _ => (None, None),
        };
        RawTableConfig {
            cdc_strategy,
            cursor_column,
            key_columns: table.key_columns,
            target_name: table.target_name,
            columns: table.columns,
            chunk_rows: table.chunk_rows,
            lag: table.lag,
            lookback: table.lookback,
            id_lookback,
            load: table.load,
            dropped_columns: table.dropped_columns,
            redshift: table.redshift,
            custom_sql,
            tinyint1_as_boolean: table.tinyint1_as_boolean,
            json_in_redshift: table.json_in_redshift,
            oversize_in_redshift: table.oversize_in_redshift,
            nul_in_text: table.nul_in_text,
            checks: table.checks.iter().map(RawCheck::from).collect(),
            verify: table.verify,
            deletes: table.deletes,
            reconcile_every: table.reconcile_every,
            after_load: table.after_load,
            depends_on: table.depends_on,
            table_type: table.table_type,
            scd_type: table.scd_type,
            business_key: table.business_key,
            scd_columns: table.scd_columns,
            surrogate_key: table.surrogate_key,
            scd: table.scd,
        }
    }
}

impl TableConfig {
    /// A type-2 dimension: the target keeps every version of a row.
    pub fn keeps_history(&self) -> bool {
        self.scd_type == Some(ScdType::Type2)
    }

    /// A type-2 dimension's current-version column (as written; the target folds it), whose
    /// rows stand for the source's; `None` for any other table.
    pub fn current_flag(&self) -> Option<&str> {
        self.keeps_history()
            .then_some(self.scd.current_flag.as_str())
    }
}

fn load_mode(kind: CdcStrategy, load: Option<LoadMode>) -> LoadMode {
    load.unwrap_or(match kind {
        CdcStrategy::FullSync => LoadMode::Replace,
        _ => LoadMode::Merge,
    })
}

fn lookback(lookback: Option<HumanDuration>, mode: LoadMode) -> HumanDuration {
    lookback.unwrap_or(match mode {
        LoadMode::Append => HumanDuration::default(),
        LoadMode::Merge | LoadMode::Replace => default_lookback(),
    })
}

fn target_table(target_name: Option<&str>, table: &TableId) -> Result<String> {
    naming::target_identifier(target_name.unwrap_or(table.table()))
}

impl TableConfig {
    /// The lookback, defaulted from the load mode (see the field).
    pub fn lookback(&self) -> HumanDuration {
        lookback(self.lookback, self.load_mode())
    }

    /// The warehouse name of the table `table` loads into: `target_name`, else the source
    /// table's name, folded.
    pub fn target_table(&self, table: &TableId) -> Result<String> {
        target_table(self.target_name.as_deref(), table)
    }

    /// How often deleted rows are looked for: `reconcile_every`, default 1 day.
    pub fn reconcile_every(&self) -> std::time::Duration {
        self.reconcile_every
            .map(|every| every.0)
            .unwrap_or(DEFAULT_RECONCILE_EVERY)
    }

    /// The `id_only` re-read window in ids (see the field); 0 for other strategies.
    pub fn id_lookback(&self) -> u64 {
        match self.strategy {
            Strategy::IdOnly { id_lookback, .. } => id_lookback,
            _ => 0,
        }
    }

    /// The load mode, defaulted from the strategy.
    pub fn load_mode(&self) -> LoadMode {
        load_mode(self.strategy.kind(), self.load)
    }

    /// How the schema module maps this table's columns.
    pub fn schema_options(&self) -> SchemaOptions {
        SchemaOptions {
            tinyint1_as_boolean: self.tinyint1_as_boolean,
            json_in_redshift: self.json_in_redshift,
            include: self.columns.include.clone(),
            exclude: self.columns.exclude.clone(),
            as_text: self
                .columns
                .overrides
                .iter()
                .filter(|(_, o)| o.as_type == OverrideType::Text)
                .map(|(column, _)| column.clone())
                .collect::<BTreeSet<_>>(),
            oversize_in_redshift: self.oversize_in_redshift,
        }
    }

    /// The Redshift layout options for the schema module.
    pub fn redshift_options(&self) -> RedshiftTableOptions {
        RedshiftTableOptions {
            diststyle: self.redshift.diststyle,
            distkey: self.redshift.distkey.clone(),
            sortkey: self.redshift.sortkey.clone(),
        }
    }
}

/// How often deleted rows are looked for when the table does not set `reconcile_every`.
pub const DEFAULT_RECONCILE_EVERY: std::time::Duration =
    std::time::Duration::from_secs(24 * 60 * 60);

/// The `id_only` re-read window when the table does not set `id_lookback`.
pub const DEFAULT_ID_LOOKBACK: u64 = 1000;

impl fmt::Display for CdcStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CdcStrategy::Hybrid => "hybrid",
            CdcStrategy::TimestampOnly => "timestamp_only",
            CdcStrategy::IdOnly => "id_only",
            CdcStrategy::FullSync => "full_sync",
            CdcStrategy::CustomSql => "custom_sql",
        })
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadMode::Merge => "merge",
            LoadMode::Append => "append",
            LoadMode::Replace => "replace",
        })
    }
}
