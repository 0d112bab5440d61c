//! The one type authority. Turns a MySQL table's `information_schema` description into a
//! [`TableSchema`], and derives from it everything that depends on a column's type: the Arrow
//! schema of the Parquet files, the extraction select list, the Redshift and PostgreSQL DDL, the
//! schema fingerprint, and the drift of an existing target table.
//!
//! This module must never be bypassed: no other module maps a type, sizes a column, or decides
//! that two types are compatible. It never quotes an identifier itself (that is
//! [`crate::naming`]'s job), never pastes a value into SQL (discovery binds every value), and
//! never loses data silently: every lossy or surprising choice is written down in the mapping
//! table at [`map_column_type`].
//!
//! Here: the table and column types, the options, the Arrow schema and the fingerprint. The
//! type table lives in `types`, the `information_schema` reads in `discover`, the DDL in `ddl`,
//! and drift in `drift`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::{self, TableId};

/// How a table's columns are mapped; built by the config module from the table's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOptions {
    /// `tinyint(1)` → BOOLEAN (the MySQL `BOOL` convention). `false` keeps it an integer
    /// (SMALLINT).
    pub tinyint1_as_boolean: bool,
    /// What a JSON column becomes in Redshift.
    pub json_in_redshift: JsonTarget,
    /// Extract only these source columns (`None` = all). Names match case-insensitively, as in
    /// MySQL.
    pub include: Option<Vec<String>>,
    /// Leave these source columns out.
    pub exclude: Vec<String>,
    /// Source columns forced to text (`as: text`): the rescue for `decimal(p > 38)`, spatial and
    /// unknown types, and an option for any other column.
    pub as_text: BTreeSet<String>,
    /// What becomes of a value longer than its Redshift column holds; decides which columns
    /// must be nullable (see [`OversizePolicy::may_write_null`]).
    pub oversize_in_redshift: OversizePolicy,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            tinyint1_as_boolean: true,
            json_in_redshift: JsonTarget::Super,
            include: None,
            exclude: Vec::new(),
            as_text: BTreeSet::new(),
            oversize_in_redshift: OversizePolicy::Fail,
        }
    }
}

/// What a JSON column becomes in Redshift. PostgreSQL always gets `jsonb`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonTarget {
    /// SUPER, filled with `JSON_PARSE` from the staging table's text.
    #[default]
    Super,
    /// VARCHAR(65535): the raw JSON text.
    Varchar,
}

/// What becomes of a value longer than its Redshift column holds (VARCHAR: 65535 bytes at most,
/// and JSON is staged as VARCHAR(65535); VARBYTE: 16 MiB). Only a Redshift target applies it:
/// PostgreSQL's `text`, `jsonb` and `bytea` hold every such value whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizePolicy {
    /// The extraction fails before anything is committed, naming the table, column, row and
    /// length.
    #[default]
    Fail,
    /// Text is cut to the column's length at a character boundary, binary at the byte; a JSON
    /// document, which a cut would make invalid, becomes NULL. Counted and logged.
    Truncate,
    /// The value becomes NULL. Counted and logged.
    Null,
}

/// What becomes of a NUL byte (U+0000) in a text value: PostgreSQL refuses it in `text`, and
/// Redshift's loading guide treats it as a terminator that fails a COPY. Applied for every target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NulPolicy {
    /// The extraction fails before anything is committed, naming the column and the row.
    #[default]
    Fail,
    /// NUL bytes are removed from the value. Counted and logged.
    Strip,
    /// Each NUL byte becomes U+FFFD (the replacement character). Counted and logged.
    Replace,
}

impl OversizePolicy {
    /// Whether this policy can write NULL for a value of this type, so that its column must be
    /// nullable: `null` for every type that can outgrow its Redshift column, `truncate` for JSON.
    pub fn may_write_null(self, ty: &ColumnType) -> bool {
        ty.may_outgrow_redshift()
            && match self {
                OversizePolicy::Fail => false,
                OversizePolicy::Truncate => *ty == ColumnType::Json,
                OversizePolicy::Null => true,
            }
    }
}

/// One row of `information_schema.COLUMNS`, as discovery reads it (plus the MariaDB JSON check).
/// Public so that other modules' tests can build a [`TableSchema`] without a server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceColumn {
    /// `COLUMN_NAME`.
    pub name: String,
    /// `DATA_TYPE`, e.g. `int`.
    pub data_type: String,
    /// `COLUMN_TYPE`, e.g. `int(10) unsigned`.
    pub column_type: String,
    /// `IS_NULLABLE = 'YES'`.
    pub nullable: bool,
    /// `CHARACTER_OCTET_LENGTH`.
    pub octet_length: Option<u64>,
    /// `NUMERIC_PRECISION`.
    pub numeric_precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub numeric_scale: Option<u64>,
    /// `DATETIME_PRECISION`.
    pub datetime_precision: Option<u64>,
    /// MariaDB: the column has a `json_valid(col)` CHECK (how MariaDB spells `JSON`).
    pub json_checked: bool,
}

/// One extracted column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The source (MySQL) name.
    pub name: String,
    /// The warehouse name: [`naming::target_identifier`] of `name`.
    pub target_name: String,
    /// MySQL `COLUMN_TYPE` as reported, e.g. `bigint(20) unsigned`.
    pub column_type: String,
    /// The mapped type.
    pub ty: ColumnType,
    /// Whether the extracted column may hold NULL (Arrow field and warehouse column). This is the
    /// source's `IS_NULLABLE`, except that date and time columns outside the primary key are
    /// always nullable: MySQL zero dates (`0000-00-00`) are extracted as NULL (DESIGN §4); and
    /// so are columns outside the primary key whose too-long values `oversize_in_redshift`
    /// turns into NULL ([`OversizePolicy::may_write_null`]).
    pub nullable: bool,
}

impl Column {
    /// The expression that reads this column in the extraction SELECT. Usually the quoted name;
    /// columns read as text go through MySQL's own text conversion so the value is exact:
    /// TIME and other forced-text types → `CAST(col AS CHAR)`, spatial → `ST_AsText(col)` (WKT),
    /// binary forced to text → `HEX(col)`, bits forced to text → the number.
    pub fn mysql_select_expr(&self) -> String {
        let quoted = naming::quote_mysql(&self.name);
        match self.ty {
            ColumnType::Text {
                source: TextSource::Time,
                ..
            } => format!("CAST({quoted} AS CHAR)"),
            ColumnType::Text {
                source: TextSource::Spatial,
                ..
            } => format!("ST_AsText({quoted})"),
            ColumnType::Text {
                source: TextSource::Other,
                ..
            } => {
                let base = base_type(&self.column_type);
                if BINARY_TYPES.contains(&base.as_str()) {
                    format!("HEX({quoted})")
                } else if base == "bit" {
                    format!("CAST({quoted} + 0 AS CHAR)")
                } else {
                    format!("CAST({quoted} AS CHAR)")
                }
            }
            _ => quoted,
        }
    }
}

/// The type-level description of one source table: every extracted column in ordinal order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The source table.
    pub table: TableId,
    /// The extracted columns, in the source's ordinal order.
    pub columns: Vec<Column>,
    /// The primary key's source column names, in index order; empty when the table has none.
    pub primary_key: Vec<String>,
    /// What JSON columns become in Redshift (from [`SchemaOptions::json_in_redshift`]).
    pub json_in_redshift: JsonTarget,
}

/// Redshift distribution style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistStyle {
    /// Redshift chooses, and changes it as the table grows.
    Auto,
    /// Rows spread round-robin.
    Even,
    /// A copy on every node (small dimension tables).
    All,
    /// By the `distkey` column.
    Key,
}

impl DistStyle {
    fn keyword(self) -> &'static str {
        match self {
            DistStyle::Auto => "AUTO",
            DistStyle::Even => "EVEN",
            DistStyle::All => "ALL",
            DistStyle::Key => "KEY",
        }
    }
}

/// Redshift table attributes from the table's config. Columns are SOURCE names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedshiftTableOptions {
    /// `None`: Redshift's default (AUTO), or KEY when `distkey` is set.
    pub diststyle: Option<DistStyle>,
    /// The distribution key column.
    pub distkey: Option<String>,
    /// Compound sort key columns, in order; empty for Redshift's default (AUTO).
    pub sortkey: Vec<String>,
}

/// Which warehouse a target table lives in, and so the SQL flavour tidemark writes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warehouse {
    /// Amazon Redshift (Data API or wire protocol).
    Redshift,
    /// PostgreSQL.
    Postgres,
}

fn contains_name<'a>(names: impl IntoIterator<Item = &'a String>, name: &str) -> bool {
    names.into_iter().any(|n| same_column(n, name))
}

/// MySQL column names are case-insensitive.
fn same_column(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

impl TableSchema {
    /// Builds the schema from `information_schema` rows (ordinal order) and the primary key's
    /// column names: applies include/exclude/as-text, maps every type, folds names for the
    /// warehouse and rejects anything that cannot be loaded faithfully. [`discover`] calls this
    /// after reading the server; tests call it directly.
    pub fn from_source_columns(
        table: &TableId,
        source: Vec<SourceColumn>,
        primary_key: Vec<String>,
        options: &SchemaOptions,
    ) -> Result<TableSchema> {
        if source.is_empty() {
            return Err(table_not_found(table));
        }
        check_option_names(table, &source, options)?;

        let selected: Vec<SourceColumn> = source
            .into_iter()
            .filter(|c| {
                options
                    .include
                    .as_ref()
                    .is_none_or(|include| contains_name(include, &c.name))
                    && !contains_name(&options.exclude, &c.name)
            })
            .collect();
        if selected.is_empty() {
            return Err(Error::Schema(format!(
                "`columns` of `{table}` leave no column to extract: check `include` and `exclude`"
            )));
        }

        let mut primary_key_names = Vec::with_capacity(primary_key.len());
        for key in &primary_key {
            let Some(column) = selected.iter().find(|c| same_column(&c.name, key)) else {
                return Err(Error::Schema(format!(
                    "primary key column `{key}` of `{table}` is left out by `columns` \
                     include/exclude: tidemark pages and merges by the primary key, so it must \
                     be extracted"
                )));
            };
            primary_key_names.push(column.name.clone());
        }

        let mut problems = Vec::new();
        let mut columns = Vec::with_capacity(selected.len());
        for source in &selected {
            match map_column_type(table, source, options) {
                Ok(ty) => {
                    let in_primary_key = contains_name(&primary_key_names, &source.name);
                    let nullable = source.nullable
                        || (!in_primary_key
                            && (ty.is_temporal()
                                || options.oversize_in_redshift.may_write_null(&ty)));
                    columns.push(Column {
                        name: source.name.clone(),
                        target_name: naming::target_identifier(&source.name)?,
                        column_type: source.column_type.clone(),
                        ty,
                        nullable,
                    });
                }
                Err(Error::Schema(message)) => problems.push(message),
                Err(other) => return Err(other),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Schema(problems.join("; ")));
        }

        let mut by_target: BTreeMap<&str, &str> = BTreeMap::new();
        for column in &columns {
            if column
                .target_name
                .starts_with(naming::RESERVED_COLUMN_PREFIX)
            {
                return Err(Error::Schema(format!(
                    "column `{}` of `{table}`: warehouse names starting with `{}` are tidemark's \
                     own (the load's staging columns); leave it out with \
                     `columns: {{ exclude: [{}] }}`, or rename it in the source",
                    column.name,
                    naming::RESERVED_COLUMN_PREFIX,
                    column.name
                )));
            }
            if let Some(first) = by_target.insert(&column.target_name, &column.name) {
                return Err(Error::Schema(format!(
                    "columns `{first}` and `{}` of `{table}` both become `{}` in the warehouse, \
                     which folds names to lowercase: rename one in the source or leave one out \
                     with `columns: {{ exclude: [...] }}`",
                    column.name, column.target_name
                )));
            }
        }

        Ok(TableSchema {
            table: table.clone(),
            columns,
            primary_key: primary_key_names,
            json_in_redshift: options.json_in_redshift,
        })
    }

    /// The Arrow schema of every Parquet file of the table: target names, ordinal order.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.target_name.as_str(), c.ty.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// Source column names in order: what the extraction reads.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Target column names in order: the COPY column list (Redshift maps Parquet by position).
    pub fn target_column_names(&self) -> Vec<&str> {
        self.columns
            .iter()
            .map(|c| c.target_name.as_str())
            .collect()
    }

    /// Why rows loaded under `before` (the last committed run's schema) need the source's values
    /// again: columns added since (old target rows hold NULL there, the source its default or
    /// computed value), or a TIMESTAMP become DATETIME (MySQL rewrote each value in the zone of
    /// the session that altered it). `None` when every loaded value still stands.
    pub fn backfill_reason(&self, before: &TableSchema) -> Option<String> {
        let added: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| {
                !before
                    .columns
                    .iter()
                    .any(|b| b.target_name == c.target_name)
            })
            .map(|c| c.target_name.as_str())
            .collect();
        let rezoned: Vec<&str> =
            self.columns
                .iter()
                .filter(|c| {
                    c.ty == ColumnType::Timestamp
                        && before.columns.iter().any(|b| {
                            b.target_name == c.target_name && b.ty == ColumnType::TimestampTz
                        })
                })
                .map(|c| c.target_name.as_str())
                .collect();
        let mut reasons = Vec::new();
        if !added.is_empty() {
            reasons.push(format!("columns were added ({})", added.join(", ")));
        }
        if !rezoned.is_empty() {
            reasons.push(format!(
                "TIMESTAMP columns became DATETIME ({}), whose values MySQL rewrote in the altering session's time zone",
                rezoned.join(", ")
            ));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The extraction SELECT list: [`Column::mysql_select_expr`] of every column, in order.
    pub fn mysql_select_list(&self) -> String {
        self.columns
            .iter()
            .map(Column::mysql_select_expr)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The column with this source name (case-insensitive, as MySQL compares column names).
    pub fn column(&self, source_name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| same_column(&c.name, source_name))
    }

    /// A stable hex hash (64-bit FNV-1a) of the extracted shape: every column's source name,
    /// target name, type and nullability, and the primary key. Equal fingerprints mean
    /// interchangeable Parquet files. Stable across runs, platforms and releases.
    pub fn fingerprint(&self) -> String {
        let mut canonical = String::from("tidemark-schema-v1\n");
        for column in &self.columns {
            canonical.push_str(&format!(
                "column {}:{} {}:{} {} {}\n",
                column.name.len(),
                column.name,
                column.target_name.len(),
                column.target_name,
                column.ty.fingerprint_key(),
                if column.nullable { "null" } else { "not-null" }
            ));
        }
        for key in &self.primary_key {
            canonical.push_str(&format!("key {}:{key}\n", key.len()));
        }
        format!("{:016x}", fnv1a_64(canonical.as_bytes()))
    }
}

/// Option names must name real columns: a typo must not silently extract everything.
fn check_option_names(
    table: &TableId,
    source: &[SourceColumn],
    options: &SchemaOptions,
) -> Result<()> {
    let exists = |name: &String| source.iter().any(|c| same_column(&c.name, name));
    let mut unknown = Vec::new();
    for (setting, names) in [
        (
            "include",
            options.include.iter().flatten().collect::<Vec<_>>(),
        ),
        ("exclude", options.exclude.iter().collect()),
        ("overrides (`as: text`)", options.as_text.iter().collect()),
    ] {
        for name in names {
            if !exists(name) {
                unknown.push(format!("`{name}` (in `columns.{setting}`)"));
            }
        }
    }
    if !unknown.is_empty() {
        let available: Vec<&str> = source.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::Schema(format!(
            "the config of `{table}` names columns that do not exist: {}; the columns are: {}",
            unknown.join(", "),
            available.join(", ")
        )));
    }
    if let Some(include) = &options.include {
        if let Some(both) = include.iter().find(|n| contains_name(&options.exclude, n)) {
            return Err(Error::Schema(format!(
                "column `{both}` of `{table}` is both included and excluded in `columns`"
            )));
        }
    }
    Ok(())
}

/// 64-bit FNV-1a: tiny, std-only and identical on every platform (unlike `DefaultHasher`).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

mod ddl;
mod discover;
mod drift;
mod types;

pub use discover::discover;
use discover::table_not_found;
pub use drift::*;
use types::{base_type, BINARY_TYPES};
pub use types::{map_column_type, BooleanSource, ColumnType, TextSource};

#[cfg(test)]
mod tests;
