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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::{self, TableId};

/// Redshift VARCHAR lengths are bytes, at most this many.
const REDSHIFT_VARCHAR_MAX_OCTETS: u64 = 65_535;
/// Redshift VARBYTE lengths are bytes, at most this many (16 MiB).
const REDSHIFT_VARBYTE_MAX_OCTETS: u64 = 16_777_216;
/// Arrow Decimal128 and Redshift DECIMAL both stop at 38 digits.
const MAX_DECIMAL_PRECISION: u64 = 38;
/// `bigint unsigned` and `bit(64)` hold up to 18446744073709551615: 20 digits.
const UNSIGNED_64_DIGITS: u8 = 20;
/// The longest TIME as text: `-838:59:59.000000`.
const TIME_TEXT_MAX_OCTETS: u64 = 17;
/// LONGTEXT / LONGBLOB / JSON: what a column without a reported length may hold.
const LONGTEXT_MAX_OCTETS: u64 = 4_294_967_295;
/// The most an integer, bit or year forced to text can print: `-9223372036854775808`.
const INTEGER_TEXT_MAX_OCTETS: u64 = 20;
/// The most a float or double forced to text can print (`-1.7976931348623157e308` is 23).
const FLOAT_TEXT_MAX_OCTETS: u64 = 32;
/// `9999-12-31 23:59:59.999999`.
const DATETIME_TEXT_MAX_OCTETS: u64 = 26;
/// Source types that `as: text` can rescue but that have no mapping of their own.
const SPATIAL_TYPES: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];
const BINARY_TYPES: &[&str] = &[
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
];
const TEXT_TYPES: &[&str] = &["tinytext", "text", "mediumtext", "longtext"];
const INTEGER_TYPES: &[&str] = &[
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "integer",
    "bigint",
];

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

/// Why a column is text, which also says how its value is read (see [`Column::mysql_select_expr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// `char(n)`.
    Char,
    /// `varchar(n)`.
    Varchar,
    /// `tinytext`, `text`, `mediumtext`, `longtext`.
    Text,
    /// `enum(...)`: the label.
    Enum,
    /// `set(...)`: the labels joined by commas, as MySQL prints them.
    Set,
    /// `time`: MySQL's own text, `[-]HHH:MM:SS[.ffffff]`.
    Time,
    /// `decimal` forced to text: the exact digits.
    Decimal,
    /// JSON forced to text (`as: text`): the JSON document as text.
    Json,
    /// A spatial type forced to text: WKT (`ST_AsText`).
    Spatial,
    /// Any other type forced to text: MySQL's `CAST(… AS CHAR)` (binary types: `HEX`, bits: the
    /// number).
    Other,
}

/// Where a BOOLEAN column comes from; the extractor decodes the two differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BooleanSource {
    /// `tinyint(1)`: an integer, nonzero is true.
    TinyInt,
    /// `bit(1)`: one byte, `0x01` is true.
    Bit,
}

/// A column's type as tidemark carries it: one variant per distinct Arrow/warehouse shape (and
/// per distinct decoding where the extractor needs to know). See [`map_column_type`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnType {
    /// Arrow Boolean; BOOLEAN.
    Boolean {
        /// The MySQL type it comes from.
        source: BooleanSource,
    },
    /// Arrow Int16; SMALLINT.
    Int16,
    /// Arrow Int32; INTEGER.
    Int32,
    /// Arrow Int64; BIGINT.
    Int64,
    /// Arrow Decimal128(p, s); DECIMAL(p, s). `bigint unsigned` is `Decimal { 20, 0 }`.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// `bit(2..=64)`, read as an unsigned big-endian number: Int64/BIGINT up to 63 bits,
    /// Decimal128(20, 0)/DECIMAL(20, 0) for 64 bits.
    Bits {
        /// The `bit(n)` width.
        width: u8,
    },
    /// Arrow Float32; REAL.
    Float32,
    /// Arrow Float64; DOUBLE PRECISION.
    Float64,
    /// Arrow Date32; DATE.
    Date,
    /// `datetime`: Arrow Timestamp(µs, none); TIMESTAMP. Zone-less, and stays so.
    Timestamp,
    /// `timestamp`: Arrow Timestamp(µs, "UTC"); TIMESTAMPTZ.
    TimestampTz,
    /// Arrow Utf8; VARCHAR(`max_octets` capped at 65535) / text.
    Text {
        /// The longest value, in bytes.
        max_octets: u64,
        /// The MySQL type it comes from.
        source: TextSource,
    },
    /// Arrow Utf8; SUPER or VARCHAR(65535) per [`JsonTarget`] / jsonb.
    Json,
    /// Arrow Binary; VARBYTE(`max_octets` capped at 16 MiB) / bytea.
    Binary {
        /// The longest value, in bytes.
        max_octets: u64,
    },
}

impl ColumnType {
    /// The Arrow type of the column in every Parquet file.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Boolean { .. } => DataType::Boolean,
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Bits { width } if *width < 64 => DataType::Int64,
            ColumnType::Bits { .. } => DataType::Decimal128(UNSIGNED_64_DIGITS, 0),
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            ColumnType::Text { .. } | ColumnType::Json => DataType::Utf8,
            ColumnType::Binary { .. } => DataType::Binary,
        }
    }

    /// The Redshift column type.
    pub fn redshift_type(&self, json: JsonTarget) -> String {
        match self {
            ColumnType::Boolean { .. } => "BOOLEAN".to_owned(),
            ColumnType::Int16 => "SMALLINT".to_owned(),
            ColumnType::Int32 => "INTEGER".to_owned(),
            ColumnType::Int64 => "BIGINT".to_owned(),
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            ColumnType::Bits { width } if *width < 64 => "BIGINT".to_owned(),
            ColumnType::Bits { .. } => format!("DECIMAL({UNSIGNED_64_DIGITS}, 0)"),
            ColumnType::Float32 => "REAL".to_owned(),
            ColumnType::Float64 => "DOUBLE PRECISION".to_owned(),
            ColumnType::Date => "DATE".to_owned(),
            ColumnType::Timestamp => "TIMESTAMP".to_owned(),
            ColumnType::TimestampTz => "TIMESTAMPTZ".to_owned(),
            ColumnType::Text { max_octets, .. } => {
                format!("VARCHAR({})", redshift_varchar_length(*max_octets))
            }
            ColumnType::Json => match json {
                JsonTarget::Super => "SUPER".to_owned(),
                JsonTarget::Varchar => format!("VARCHAR({REDSHIFT_VARCHAR_MAX_OCTETS})"),
            },
            ColumnType::Binary { max_octets } => {
                format!("VARBYTE({})", redshift_varbyte_length(*max_octets))
            }
        }
    }

    /// The PostgreSQL column type.
    pub fn postgres_type(&self) -> String {
        match self {
            ColumnType::Boolean { .. } => "boolean".to_owned(),
            ColumnType::Int16 => "smallint".to_owned(),
            ColumnType::Int32 => "integer".to_owned(),
            ColumnType::Int64 => "bigint".to_owned(),
            ColumnType::Decimal { precision, scale } => format!("numeric({precision}, {scale})"),
            ColumnType::Bits { width } if *width < 64 => "bigint".to_owned(),
            ColumnType::Bits { .. } => format!("numeric({UNSIGNED_64_DIGITS}, 0)"),
            ColumnType::Float32 => "real".to_owned(),
            ColumnType::Float64 => "double precision".to_owned(),
            ColumnType::Date => "date".to_owned(),
            ColumnType::Timestamp => "timestamp".to_owned(),
            ColumnType::TimestampTz => "timestamptz".to_owned(),
            ColumnType::Text { .. } => "text".to_owned(),
            ColumnType::Json => "jsonb".to_owned(),
            ColumnType::Binary { .. } => "bytea".to_owned(),
        }
    }

    /// The warehouse column type.
    pub fn warehouse_type(&self, warehouse: Warehouse, json: JsonTarget) -> String {
        match warehouse {
            Warehouse::Redshift => self.redshift_type(json),
            Warehouse::Postgres => self.postgres_type(),
        }
    }

    /// A stable spelling for the fingerprint. Changing it changes every fingerprint: don't.
    fn fingerprint_key(&self) -> String {
        match self {
            ColumnType::Boolean {
                source: BooleanSource::TinyInt,
            } => "boolean:tinyint".to_owned(),
            ColumnType::Boolean {
                source: BooleanSource::Bit,
            } => "boolean:bit".to_owned(),
            ColumnType::Int16 => "int16".to_owned(),
            ColumnType::Int32 => "int32".to_owned(),
            ColumnType::Int64 => "int64".to_owned(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::Bits { width } => format!("bits({width})"),
            ColumnType::Float32 => "float32".to_owned(),
            ColumnType::Float64 => "float64".to_owned(),
            ColumnType::Date => "date".to_owned(),
            ColumnType::Timestamp => "timestamp".to_owned(),
            ColumnType::TimestampTz => "timestamptz".to_owned(),
            ColumnType::Text { max_octets, source } => {
                format!("text({max_octets}):{}", text_source_key(*source))
            }
            ColumnType::Json => "json".to_owned(),
            ColumnType::Binary { max_octets } => format!("binary({max_octets})"),
        }
    }

    /// The most bytes one value may have to load into Redshift: the VARCHAR length of text, the
    /// VARCHAR(65535) Redshift stages JSON in (for SUPER too), the VARBYTE length of binary.
    /// `None` for fixed-size types.
    pub fn redshift_max_value_octets(&self) -> Option<u64> {
        match self {
            ColumnType::Text { max_octets, .. } => Some(redshift_varchar_length(*max_octets)),
            ColumnType::Json => Some(REDSHIFT_VARCHAR_MAX_OCTETS),
            ColumnType::Binary { max_octets } => Some(redshift_varbyte_length(*max_octets)),
            _ => None,
        }
    }

    /// Whether a source value can be longer than [`ColumnType::redshift_max_value_octets`]:
    /// `mediumtext`, `longtext`, JSON, `varchar(n > 16383)` in utf8mb4, `longblob`…
    pub fn may_outgrow_redshift(&self) -> bool {
        match self {
            ColumnType::Text { max_octets, .. } => *max_octets > REDSHIFT_VARCHAR_MAX_OCTETS,
            ColumnType::Json => true,
            ColumnType::Binary { max_octets } => *max_octets > REDSHIFT_VARBYTE_MAX_OCTETS,
            _ => false,
        }
    }

    fn is_temporal(&self) -> bool {
        matches!(
            self,
            ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
        )
    }
}

fn text_source_key(source: TextSource) -> &'static str {
    match source {
        TextSource::Char => "char",
        TextSource::Varchar => "varchar",
        TextSource::Text => "text",
        TextSource::Enum => "enum",
        TextSource::Set => "set",
        TextSource::Time => "time",
        TextSource::Decimal => "decimal",
        TextSource::Json => "json",
        TextSource::Spatial => "spatial",
        TextSource::Other => "other",
    }
}

fn redshift_varchar_length(max_octets: u64) -> u64 {
    max_octets.clamp(1, REDSHIFT_VARCHAR_MAX_OCTETS)
}

fn redshift_varbyte_length(max_octets: u64) -> u64 {
    max_octets.clamp(1, REDSHIFT_VARBYTE_MAX_OCTETS)
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

/// Maps one source column. The whole MySQL → Arrow → Redshift / PostgreSQL type table lives in
/// this one match (and in [`ColumnType::arrow_type`] / [`ColumnType::redshift_type`] /
/// [`ColumnType::postgres_type`], which only spell each variant).
///
/// | MySQL | ColumnType | Arrow | Redshift | PostgreSQL |
/// |---|---|---|---|---|
/// | `tinyint(1)` (signed or unsigned) | Boolean | Boolean | BOOLEAN | boolean |
/// | `tinyint(1)` with `tinyint1_as_boolean: false`, `tinyint`, `tinyint unsigned`, `smallint`, `year` | Int16 | Int16 | SMALLINT | smallint |
/// | `smallint unsigned`, `mediumint` (both), `int` | Int32 | Int32 | INTEGER | integer |
/// | `int unsigned`, `bigint` | Int64 | Int64 | BIGINT | bigint |
/// | `bigint unsigned` | Decimal(20,0) | Decimal128(20,0) | DECIMAL(20,0) | numeric(20,0) |
/// | `decimal(p,s)`, p ≤ 38 | Decimal(p,s) | Decimal128(p,s) | DECIMAL(p,s) | numeric(p,s) |
/// | `float` / `double` | Float32 / Float64 | Float32 / Float64 | REAL / DOUBLE PRECISION | real / double precision |
/// | `bit(1)` | Boolean | Boolean | BOOLEAN | boolean |
/// | `bit(2..=63)` / `bit(64)` | Bits | Int64 / Decimal128(20,0) | BIGINT / DECIMAL(20,0) | bigint / numeric(20,0) |
/// | `date` | Date | Date32 | DATE | date |
/// | `datetime(p)` | Timestamp | Timestamp(µs) | TIMESTAMP | timestamp |
/// | `timestamp(p)` | TimestampTz | Timestamp(µs, UTC) | TIMESTAMPTZ | timestamptz |
/// | `time(p)` | Text(17) | Utf8 | VARCHAR(17) | text |
/// | `char`, `varchar`, `*text`, `enum`, `set` | Text(octets) | Utf8 | VARCHAR(min(octets, 65535)) | text |
/// | `json`, MariaDB `longtext` + `json_valid` CHECK | Json | Utf8 | SUPER / VARCHAR(65535) | jsonb |
/// | `binary`, `varbinary`, `*blob` | Binary(octets) | Binary | VARBYTE(min(octets, 16 MiB)) | bytea |
/// | `decimal(p > 38)`, spatial, anything else | error unless `as: text` | | | |
///
/// Lossy or surprising, on purpose:
/// - `tinyint(1)` → BOOLEAN follows MySQL's `BOOL` convention: any nonzero value is true, so a
///   `tinyint(1)` that stores 2 or -1 loses the number. Such tables set
///   `tinyint1_as_boolean: false`.
/// - Every integer lands in the narrowest SIGNED type that holds its whole range (warehouses have
///   no unsigned types), so unsigned columns widen one step; `bigint unsigned` and `bit(64)` need
///   DECIMAL(20,0).
/// - Zero dates (`0000-00-00…`, and dates with a zero month or day) have no Arrow or warehouse
///   value: they extract as NULL (counted and logged), which is why date/time columns outside the
///   primary key are always nullable in the target. `year` 0000 stays the number 0.
/// - `datetime` stays zone-less (TIMESTAMP); `timestamp` is UTC (TIMESTAMPTZ). Both keep µs.
/// - `time` is text, not TIME: MySQL TIME spans ±838 hours and Redshift cannot COPY TIME from
///   Parquet. It is read as MySQL prints it (`-838:59:59.000000`).
/// - `char` becomes VARCHAR (Redshift CHAR is single-byte only); MySQL already strips a CHAR's
///   trailing spaces when reading it.
/// - Redshift VARCHAR/VARBYTE lengths are bytes, sized from `CHARACTER_OCTET_LENGTH` and capped
///   at 65535 / 16 MiB (JSON is staged as VARCHAR(65535), for SUPER too): a longer
///   `mediumtext`/`longtext`/`varchar(n > 16383)`/JSON/`longblob` value cannot load. The table's
///   `oversize_in_redshift` ([`OversizePolicy`]) decides, during extraction, before anything is
///   committed: `fail` (default) stops the run naming the row; `truncate` cuts text at a
///   character boundary (binary at the byte; JSON becomes NULL, a cut document is not JSON);
///   `null` writes NULL — those columns are then nullable outside the primary key, in either
///   warehouse's DDL. Key columns are never cut or nulled. PostgreSQL targets ignore the
///   setting: `text`/`bytea`/`jsonb` have no such limit, but `text` and `jsonb` reject the NUL
///   character, and `jsonb` normalises the document (key order, whitespace, duplicate keys).
/// - `enum`/`set` become their labels as text; the label list itself is not carried.
/// - A forced-text column (`as: text`) is read through MySQL's own text conversion (see
///   [`Column::mysql_select_expr`]) and sized by what that text can be.
pub fn map_column_type(
    table: &TableId,
    column: &SourceColumn,
    options: &SchemaOptions,
) -> Result<ColumnType> {
    let data_type = column.data_type.to_ascii_lowercase();
    let column_type = column.column_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let octets = column.octet_length.unwrap_or(LONGTEXT_MAX_OCTETS);
    let is_json = data_type == "json" || (data_type == "longtext" && column.json_checked);

    if contains_name(&options.as_text, &column.name) {
        return Ok(forced_text_type(&data_type, column, is_json));
    }

    let ty = match data_type.as_str() {
        "tinyint" if options.tinyint1_as_boolean && is_tinyint1(&column_type) => {
            ColumnType::Boolean {
                source: BooleanSource::TinyInt,
            }
        }
        "tinyint" => ColumnType::Int16,
        "smallint" if unsigned => ColumnType::Int32,
        "smallint" => ColumnType::Int16,
        "mediumint" => ColumnType::Int32,
        "int" | "integer" if unsigned => ColumnType::Int64,
        "int" | "integer" => ColumnType::Int32,
        "bigint" if unsigned => ColumnType::Decimal {
            precision: UNSIGNED_64_DIGITS,
            scale: 0,
        },
        "bigint" => ColumnType::Int64,
        "decimal" | "numeric" => {
            let (precision, scale) = decimal_arguments(column);
            match (u8::try_from(precision), i8::try_from(scale)) {
                (Ok(p), Ok(s)) if precision <= MAX_DECIMAL_PRECISION => ColumnType::Decimal {
                    precision: p,
                    scale: s,
                },
                _ => {
                    return Err(unsupported(
                        table,
                        column,
                        &format!(
                            "its precision {precision} is more than the \
                             {MAX_DECIMAL_PRECISION} digits Arrow Decimal128 and Redshift DECIMAL \
                             hold"
                        ),
                    ))
                }
            }
        }
        "float" => ColumnType::Float32,
        "double" | "double precision" | "real" => ColumnType::Float64,
        "bit" => match bit_width(column) {
            1 => ColumnType::Boolean {
                source: BooleanSource::Bit,
            },
            width @ 2..=64 => ColumnType::Bits { width },
            _ => {
                return Err(unsupported(
                    table,
                    column,
                    "MySQL bit columns are 1 to 64 bits wide",
                ))
            }
        },
        "year" => ColumnType::Int16,
        "date" => ColumnType::Date,
        "datetime" => ColumnType::Timestamp,
        "timestamp" => ColumnType::TimestampTz,
        "time" => ColumnType::Text {
            max_octets: TIME_TEXT_MAX_OCTETS,
            source: TextSource::Time,
        },
        "char" => ColumnType::Text {
            max_octets: octets,
            source: TextSource::Char,
        },
        "varchar" => ColumnType::Text {
            max_octets: octets,
            source: TextSource::Varchar,
        },
        _ if is_json => ColumnType::Json,
        "tinytext" | "text" | "mediumtext" | "longtext" => ColumnType::Text {
            max_octets: octets,
            source: TextSource::Text,
        },
        "enum" => ColumnType::Text {
            max_octets: octets,
            source: TextSource::Enum,
        },
        "set" => ColumnType::Text {
            max_octets: octets,
            source: TextSource::Set,
        },
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            ColumnType::Binary { max_octets: octets }
        }
        spatial if SPATIAL_TYPES.contains(&spatial) => {
            return Err(unsupported(
                table,
                column,
                "spatial types have no Redshift/Arrow mapping (as text they load as WKT)",
            ))
        }
        _ => {
            return Err(unsupported(
                table,
                column,
                "tidemark does not know this type",
            ))
        }
    };
    Ok(ty)
}

/// A column forced to text with `as: text`: sized by the longest text MySQL can print for it.
fn forced_text_type(data_type: &str, column: &SourceColumn, is_json: bool) -> ColumnType {
    let octets = column.octet_length.unwrap_or(LONGTEXT_MAX_OCTETS);
    let (max_octets, source) = match data_type {
        _ if is_json => (octets, TextSource::Json),
        "char" => (octets, TextSource::Char),
        "varchar" => (octets, TextSource::Varchar),
        "enum" => (octets, TextSource::Enum),
        "set" => (octets, TextSource::Set),
        "time" => (TIME_TEXT_MAX_OCTETS, TextSource::Time),
        "decimal" | "numeric" => {
            // sign and decimal point around the digits
            let (precision, _) = decimal_arguments(column);
            (precision + 2, TextSource::Decimal)
        }
        text if TEXT_TYPES.contains(&text) => (octets, TextSource::Text),
        spatial if SPATIAL_TYPES.contains(&spatial) => (LONGTEXT_MAX_OCTETS, TextSource::Spatial),
        binary if BINARY_TYPES.contains(&binary) => (octets.saturating_mul(2), TextSource::Other),
        integer if INTEGER_TYPES.contains(&integer) => (INTEGER_TEXT_MAX_OCTETS, TextSource::Other),
        "bit" | "year" => (INTEGER_TEXT_MAX_OCTETS, TextSource::Other),
        "float" | "double" | "double precision" | "real" => {
            (FLOAT_TEXT_MAX_OCTETS, TextSource::Other)
        }
        "date" => (10, TextSource::Other),
        "datetime" | "timestamp" => (DATETIME_TEXT_MAX_OCTETS, TextSource::Other),
        _ => (
            column.octet_length.unwrap_or(REDSHIFT_VARCHAR_MAX_OCTETS),
            TextSource::Other,
        ),
    };
    ColumnType::Text { max_octets, source }
}

fn unsupported(table: &TableId, column: &SourceColumn, why: &str) -> Error {
    let name = &column.name;
    Error::Schema(format!(
        "column `{name}` of `{table}` has type `{}`, which tidemark cannot load: {why}; in the \
         table's config, load it as text with \
         `columns: {{ overrides: {{ {name}: {{ as: text }} }} }}` or leave it out with \
         `columns: {{ exclude: [{name}] }}`",
        column.column_type
    ))
}

/// The numbers in a column type's parentheses: `decimal(38,10)` → `[38, 10]`, `int` → `[]`.
fn type_arguments(column_type: &str) -> Vec<u64> {
    let Some((_, rest)) = column_type.split_once('(') else {
        return Vec::new();
    };
    let Some((inside, _)) = rest.split_once(')') else {
        return Vec::new();
    };
    inside
        .split(',')
        .map(|part| part.trim().parse::<u64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .unwrap_or_default()
}

/// `tinyint(1)`, signed or unsigned: MySQL's BOOL.
fn is_tinyint1(column_type: &str) -> bool {
    base_type(column_type) == "tinyint" && type_arguments(&column_type.to_ascii_lowercase()) == [1]
}

/// `int(10) unsigned zerofill` → `int`.
fn base_type(column_type: &str) -> String {
    column_type
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn decimal_arguments(column: &SourceColumn) -> (u64, u64) {
    let from_type = type_arguments(&column.column_type.to_ascii_lowercase());
    let precision = column
        .numeric_precision
        .or_else(|| from_type.first().copied())
        .unwrap_or(10);
    let scale = column
        .numeric_scale
        .or_else(|| from_type.get(1).copied())
        .unwrap_or(0);
    (precision, scale)
}

fn bit_width(column: &SourceColumn) -> u8 {
    let width = type_arguments(&column.column_type.to_ascii_lowercase())
        .first()
        .copied()
        .or(column.numeric_precision)
        .unwrap_or(1);
    u8::try_from(width).unwrap_or(u8::MAX)
}

fn contains_name<'a>(names: impl IntoIterator<Item = &'a String>, name: &str) -> bool {
    names.into_iter().any(|n| same_column(n, name))
}

/// MySQL column names are case-insensitive.
fn same_column(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Reads the table's columns, primary key and (on MariaDB) JSON checks, and maps them. Every
/// value is a bound parameter.
pub async fn discover(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    options: &SchemaOptions,
) -> Result<TableSchema> {
    type ColumnRow = (
        String,
        String,
        String,
        String,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    );
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_OCTET_LENGTH, \
                    NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (table.database(), table.table()),
        )
        .await
        .map_err(|e| Error::mysql(format!("reading the columns of `{table}`"), e))?;
    if rows.is_empty() {
        return Err(table_not_found(table));
    }
    let mut columns: Vec<SourceColumn> = rows
        .into_iter()
        .map(
            |(name, data_type, column_type, nullable, octets, precision, scale, dt_precision)| {
                SourceColumn {
                    name,
                    data_type,
                    column_type,
                    nullable: nullable.eq_ignore_ascii_case("YES"),
                    octet_length: octets,
                    numeric_precision: precision,
                    numeric_scale: scale,
                    datetime_precision: dt_precision,
                    json_checked: false,
                }
            },
        )
        .collect();

    let primary_key: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = ? \
             ORDER BY SEQ_IN_INDEX",
            (table.database(), table.table(), "PRIMARY"),
        )
        .await
        .map_err(|e| Error::mysql(format!("reading the primary key of `{table}`"), e))?;

    // MariaDB spells JSON as LONGTEXT plus a `json_valid(col)` CHECK; MySQL has a real JSON type.
    if columns
        .iter()
        .any(|c| c.data_type.eq_ignore_ascii_case("longtext"))
    {
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| Error::mysql("reading the server version", e))?;
        if version.is_some_and(|v| v.to_ascii_lowercase().contains("mariadb")) {
            let checks: Vec<String> = conn
                .exec(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                    (table.database(), table.table()),
                )
                .await
                .map_err(|e| {
                    Error::mysql(format!("reading the CHECK constraints of `{table}`"), e)
                })?;
            for column in &mut columns {
                column.json_checked = checks
                    .iter()
                    .any(|check| is_json_valid_check(check, &column.name));
            }
        }
    }

    TableSchema::from_source_columns(table, columns, primary_key, options)
}

fn table_not_found(table: &TableId) -> Error {
    Error::Schema(format!(
        "table `{table}` not found in the source: check the database and table names in the \
         config (they are case-sensitive on most servers) and that the source user has SELECT on it"
    ))
}

/// `json_valid(`col`)`, as MariaDB stores the CHECK it adds for a JSON column.
fn is_json_valid_check(check_clause: &str, column: &str) -> bool {
    let expected = format!("json_valid({})", naming::quote_mysql(column));
    let normalized: String = check_clause.split_whitespace().collect();
    let expected: String = expected.split_whitespace().collect();
    normalized.eq_ignore_ascii_case(&expected)
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

    /// `CREATE TABLE IF NOT EXISTS` for Redshift. `schema` and `table` are folded like every
    /// warehouse name; distkey/sortkey name source columns.
    pub fn redshift_ddl(
        &self,
        schema: &str,
        table: &str,
        dist: &RedshiftTableOptions,
    ) -> Result<String> {
        let mut sql =
            self.create_table(schema, table, |c| c.ty.redshift_type(self.json_in_redshift))?;
        let distkey = dist
            .distkey
            .as_deref()
            .map(|name| self.key_column("distkey", name))
            .transpose()?;
        match (dist.diststyle, distkey) {
            (None | Some(DistStyle::Key), Some(column)) => sql.push_str(&format!(
                "\nDISTSTYLE KEY\nDISTKEY ({})",
                naming::quote_warehouse(&column.target_name)
            )),
            (Some(DistStyle::Key), None) => {
                return Err(Error::Schema(format!(
                    "`diststyle: key` for `{}` needs a `distkey` column",
                    self.table
                )))
            }
            (Some(style), Some(_)) => {
                return Err(Error::Schema(format!(
                    "`distkey` for `{}` needs `diststyle: key` (or no diststyle), not `{}`",
                    self.table,
                    style.keyword().to_ascii_lowercase()
                )))
            }
            (Some(style), None) => sql.push_str(&format!("\nDISTSTYLE {}", style.keyword())),
            (None, None) => {}
        }
        if !dist.sortkey.is_empty() {
            let mut seen = BTreeSet::new();
            let mut keys = Vec::with_capacity(dist.sortkey.len());
            for name in &dist.sortkey {
                let column = self.key_column("sortkey", name)?;
                if !seen.insert(column.target_name.as_str()) {
                    return Err(Error::Schema(format!(
                        "sortkey of `{}` names `{name}` twice",
                        self.table
                    )));
                }
                keys.push(naming::quote_warehouse(&column.target_name));
            }
            sql.push_str(&format!("\nSORTKEY ({})", keys.join(", ")));
        }
        sql.push_str("\nENCODE AUTO");
        Ok(sql)
    }

    /// This schema with `key` (source names) as the primary key its DDL declares.
    pub fn declaring_key(&self, key: &[String]) -> TableSchema {
        TableSchema {
            primary_key: key.to_vec(),
            ..self.clone()
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for PostgreSQL; also checks every name fits PostgreSQL.
    pub fn postgres_ddl(&self, schema: &str, table: &str) -> Result<String> {
        for column in &self.columns {
            naming::check_postgres_identifier(&column.target_name).map_err(|_| {
                Error::Schema(format!(
                    "column `{}` of `{}` is too long for a PostgreSQL name ({} bytes at most); runs committed with it cannot load: leave it out with `columns: {{ exclude: [{}] }}`, then drop those runs with `tidemark watermark reset -t {} --drop-pending --yes` and sync again",
                    column.name,
                    self.table,
                    naming::POSTGRES_IDENTIFIER_MAX_BYTES,
                    column.name,
                    self.table
                ))
            })?;
        }
        naming::check_postgres_identifier(&naming::target_identifier(schema)?)?;
        naming::check_postgres_identifier(&naming::target_identifier(table)?)?;
        self.create_table(schema, table, |c| c.ty.postgres_type())
    }

    fn create_table(
        &self,
        schema: &str,
        table: &str,
        column_type: impl Fn(&Column) -> String,
    ) -> Result<String> {
        let qualified = naming::quote_warehouse_qualified(
            &naming::target_identifier(schema)?,
            &naming::target_identifier(table)?,
        );
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "    {} {}{}",
                    naming::quote_warehouse(&c.target_name),
                    column_type(c),
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .collect();
        if !self.primary_key.is_empty() {
            let keys = self
                .primary_key
                .iter()
                .map(|key| {
                    self.column(key)
                        .map(|c| naming::quote_warehouse(&c.target_name))
                        .ok_or_else(|| {
                            Error::Schema(format!(
                                "primary key column `{key}` is not a column of `{}`",
                                self.table
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            lines.push(format!("    PRIMARY KEY ({})", keys.join(", ")));
        }
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {qualified} (\n{}\n)",
            lines.join(",\n")
        ))
    }

    /// A distkey/sortkey column: must exist, and must not be SUPER.
    fn key_column(&self, role: &str, name: &str) -> Result<&Column> {
        let column = self.column(name).ok_or_else(|| {
            Error::Schema(format!(
                "{role} `{name}` is not an extracted column of `{}`; the columns are: {}",
                self.table,
                self.column_names().join(", ")
            ))
        })?;
        if column.ty == ColumnType::Json && self.json_in_redshift == JsonTarget::Super {
            return Err(Error::Schema(format!(
                "{role} `{name}` of `{}` is JSON, which Redshift stores as SUPER, and a SUPER \
                 column cannot be a distribution or sort key",
                self.table
            )));
        }
        Ok(column)
    }

    /// How an existing target table differs from this schema. Compatible differences (a wider
    /// integer, a longer VARCHAR, more decimal digits) are not drift. See [`drift_error`] and
    /// [`drift_ddl`] for what to do with the result.
    pub fn drift(&self, existing: &[TargetColumn], warehouse: Warehouse) -> Vec<Drift> {
        let mut drifts = Vec::new();
        for column in &self.columns {
            let temporary = retype_temporary(&column.target_name);
            let interrupted = existing.iter().find(|t| t.name == temporary);
            let Some(target) = existing.iter().find(|t| t.name == column.target_name) else {
                match interrupted {
                    Some(_) => drifts.push(Drift::FinishRetype {
                        column: column.target_name.clone(),
                        temporary,
                    }),
                    None => drifts.push(Drift::AddColumn {
                        column: column.target_name.clone(),
                        ddl_type: column.ty.warehouse_type(warehouse, self.json_in_redshift),
                    }),
                }
                continue;
            };
            match self.fit(column, target, warehouse) {
                // The type holds, but the target refuses NULL where the source (or tidemark:
                // zero dates, `oversize_in_redshift: null`) may now write one.
                Fit::Holds if column.nullable && !target.nullable => {
                    drifts.push(Drift::DropNotNull {
                        column: column.target_name.clone(),
                        ddl_type: column.ty.warehouse_type(warehouse, self.json_in_redshift),
                        temporary_exists: interrupted.is_some(),
                        temporary,
                    })
                }
                Fit::Holds => {}
                Fit::Retype { .. }
                    if warehouse == Warehouse::Redshift
                        && (contains_name(&self.primary_key, &column.name)
                            || target.primary_key.is_some()
                            || temporary.len() > naming::REDSHIFT_IDENTIFIER_MAX_BYTES) =>
                {
                    let needed = column.ty.warehouse_type(warehouse, self.json_in_redshift);
                    drifts.push(Drift::Incompatible {
                        column: column.target_name.clone(),
                        target_type: describe_target(target),
                        source_type: column.column_type.clone(),
                        hint: format!(
                            "the source widened it to `{needed}`; Redshift changes only VARCHAR in \
                             place, and a key column cannot be dropped and re-added: recreate the \
                             target with `{needed}` (drop it, `tidemark watermark reset`, sync)"
                        ),
                    });
                }
                Fit::Retype { from_utc } => drifts.push(Drift::Retype {
                    column: column.target_name.clone(),
                    ddl_type: column.ty.warehouse_type(warehouse, self.json_in_redshift),
                    temporary_exists: interrupted.is_some(),
                    temporary,
                    from_utc,
                }),
                Fit::Widen { from, to } => drifts.push(Drift::WidenVarchar {
                    column: column.target_name.clone(),
                    from,
                    to,
                }),
                Fit::Incompatible { extra_hint } => {
                    let needed = column.ty.warehouse_type(warehouse, self.json_in_redshift);
                    drifts.push(Drift::Incompatible {
                        column: column.target_name.clone(),
                        target_type: describe_target(target),
                        source_type: column.column_type.clone(),
                        hint: format!(
                            "the source needs `{needed}` and a warehouse column cannot change to \
                             that in place: recreate column `{}` of the target as `{needed}` and \
                             reload the table, or leave the column out with \
                             `columns: {{ exclude: [{}] }}` in the table's config{extra_hint}",
                            column.target_name, column.name
                        ),
                    });
                }
            }
        }
        for target in existing {
            if !self.columns.iter().any(|c| {
                c.target_name == target.name || retype_temporary(&c.target_name) == target.name
            }) {
                drifts.push(Drift::MissingInSource {
                    column: target.name.clone(),
                });
            }
        }
        if warehouse == Warehouse::Redshift {
            if let Some(drift) = self.key_drift(existing, &drifts) {
                drifts.push(drift);
            }
        }
        drifts
    }

    /// Redshift's PRIMARY KEY around `drifts`: dropped and declared again when a VARCHAR of it
    /// widens ([`Drift::WidenKeyOf`]); declared when the target lost it ([`Drift::DeclareKey`]).
    /// `self.primary_key` is the key the load mode declares (see [`TableSchema::declaring_key`]).
    fn key_drift(&self, existing: &[TargetColumn], drifts: &[Drift]) -> Option<Drift> {
        let widened_key = drifts.iter().find_map(|drift| match drift {
            Drift::WidenVarchar { column, .. } => existing
                .iter()
                .find(|t| &t.name == column)
                .and_then(|t| t.primary_key.clone()),
            _ => None,
        });
        if let Some(constraint) = widened_key {
            let columns = existing
                .iter()
                .filter(|t| t.primary_key.as_ref() == Some(&constraint))
                .map(|t| t.name.clone())
                .collect();
            return Some(Drift::WidenKeyOf {
                constraint,
                columns,
            });
        }
        let declared: Vec<String> = self
            .primary_key
            .iter()
            .filter_map(|key| self.column(key).map(|c| c.target_name.clone()))
            .collect();
        let lost = !existing.is_empty() && existing.iter().all(|t| t.primary_key.is_none());
        (lost && !declared.is_empty() && declared.len() == self.primary_key.len())
            .then_some(Drift::DeclareKey { columns: declared })
    }

    fn fit(&self, column: &Column, target: &TargetColumn, warehouse: Warehouse) -> Fit {
        let family = TargetFamily::of(target);
        if let Some(digits) = integer_digits(&column.ty) {
            return match family {
                TargetFamily::Integer { digits: held } if held >= digits => Fit::Holds,
                // A narrower integer column: every value it holds fits the wider type.
                TargetFamily::Integer { .. } => Fit::Retype { from_utc: false },
                TargetFamily::Numeric { precision, scale }
                    if numeric_holds(precision, scale, i64::from(digits), 0) =>
                {
                    Fit::Holds
                }
                TargetFamily::Boolean if is_tinyint1(&column.column_type) => Fit::Incompatible {
                    extra_hint: "; if the target was loaded with booleans, set \
                                 `tinyint1_as_boolean: true` for this table",
                },
                _ => Fit::incompatible(),
            };
        }
        match (&column.ty, family) {
            (ColumnType::Boolean { .. }, TargetFamily::Boolean) => Fit::Holds,
            (ColumnType::Boolean { .. }, TargetFamily::Integer { .. }) => Fit::Incompatible {
                extra_hint: "; if the target was loaded with integers, set \
                             `tinyint1_as_boolean: false` for this table",
            },
            (
                ColumnType::Decimal { precision, scale },
                TargetFamily::Numeric {
                    precision: p,
                    scale: s,
                },
            ) if numeric_holds(p, s, i64::from(*precision), i64::from(*scale)) => Fit::Holds,
            // A narrower decimal whose every value the source's new type holds.
            (
                ColumnType::Decimal { precision, scale },
                TargetFamily::Numeric {
                    precision: Some(p),
                    scale: s,
                },
            ) if numeric_holds(
                Some(i64::from(*precision)),
                Some(i64::from(*scale)),
                p,
                s.unwrap_or(0),
            ) =>
            {
                Fit::Retype { from_utc: false }
            }
            // MySQL TIMESTAMP → DATETIME: the range only grows (1970–2038 → 1000–9999).
            (ColumnType::Timestamp, TargetFamily::TimestampTz) => Fit::Retype { from_utc: true },
            (ColumnType::Bits { width: 64 }, TargetFamily::Numeric { precision, scale })
                if numeric_holds(precision, scale, i64::from(UNSIGNED_64_DIGITS), 0) =>
            {
                Fit::Holds
            }
            (ColumnType::Float32, TargetFamily::Real | TargetFamily::Double)
            | (ColumnType::Float64, TargetFamily::Double)
            | (ColumnType::Date, TargetFamily::Date)
            | (ColumnType::Timestamp, TargetFamily::Timestamp)
            | (ColumnType::TimestampTz, TargetFamily::TimestampTz)
            | (ColumnType::Text { .. }, TargetFamily::UnboundedText)
            | (ColumnType::Binary { .. }, TargetFamily::Bytea) => Fit::Holds,
            (ColumnType::Text { max_octets, .. }, TargetFamily::Varchar { length }) => {
                let needed = match warehouse {
                    Warehouse::Redshift => redshift_varchar_length(*max_octets),
                    Warehouse::Postgres => *max_octets,
                };
                Fit::varchar(length, needed)
            }
            (ColumnType::Json, family) => match (warehouse, self.json_in_redshift, family) {
                (Warehouse::Redshift, JsonTarget::Super, TargetFamily::Super)
                | (Warehouse::Postgres, _, TargetFamily::Json) => Fit::Holds,
                (Warehouse::Redshift, JsonTarget::Varchar, TargetFamily::Varchar { length }) => {
                    Fit::varchar(length, REDSHIFT_VARCHAR_MAX_OCTETS)
                }
                (Warehouse::Redshift, _, TargetFamily::Super | TargetFamily::Varchar { .. }) => {
                    Fit::Incompatible {
                        extra_hint: "; or set `json_in_redshift` for this table to match the \
                                     existing column",
                    }
                }
                _ => Fit::incompatible(),
            },
            (ColumnType::Binary { max_octets }, TargetFamily::Varbyte { length })
                if length.is_none_or(|l| {
                    u64::try_from(l).is_ok_and(|l| l >= redshift_varbyte_length(*max_octets))
                }) =>
            {
                Fit::Holds
            }
            _ => Fit::incompatible(),
        }
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

mod drift;
pub use drift::*;

#[cfg(test)]
mod tests;
