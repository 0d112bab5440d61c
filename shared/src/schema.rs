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
use std::fmt;
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

/// A column of an existing target table, as `information_schema.columns` (PostgreSQL) or
/// `SVV_COLUMNS` (Redshift) report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// The column's name.
    pub name: String,
    /// e.g. `character varying`, `integer`, `numeric`, `timestamp without time zone`.
    pub data_type: String,
    /// A VARCHAR's length (characters in PostgreSQL, bytes in Redshift).
    pub character_maximum_length: Option<i64>,
    /// A number's precision (digits, or bits for PostgreSQL's integers and floats).
    pub numeric_precision: Option<i64>,
    /// A number's scale.
    pub numeric_scale: Option<i64>,
    /// `false` when the column is NOT NULL (`is_nullable = 'NO'`); `true` when it takes NULL or
    /// the catalog did not say.
    pub nullable: bool,
    /// The name of the PRIMARY KEY constraint the column is part of, if any.
    pub primary_key: Option<String>,
}

/// One difference between the source schema and an existing target table. Column names are
/// TARGET names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A source column the target lacks: `ALTER TABLE … ADD COLUMN column ddl_type`.
    AddColumn {
        /// The column.
        column: String,
        /// Its warehouse type.
        ddl_type: String,
    },
    /// A VARCHAR that must grow to hold the source's longest value.
    WidenVarchar {
        /// The column.
        column: String,
        /// Its length now.
        from: i64,
        /// The length it needs.
        to: i64,
    },
    /// A target column whose type cannot hold the source's values: needs an operator.
    Incompatible {
        /// The column.
        column: String,
        /// Its type in the target.
        target_type: String,
        /// Its type in the source (MySQL's `COLUMN_TYPE`).
        source_type: String,
        /// What to do.
        hint: String,
    },
    /// A target column no source column feeds (dropped or excluded in the source, or added by
    /// the loader): loads leave it NULL. Informational, never an error.
    MissingInSource {
        /// The column.
        column: String,
    },
    /// A column whose source type widened in a way every old value survives (INT → BIGINT,
    /// DECIMAL(8,2) → DECIMAL(12,4)): PostgreSQL changes it in place; Redshift, which changes
    /// only VARCHAR in place, creates `temporary` with the new type, copies, drops the old column
    /// and renames.
    Retype {
        /// The column.
        column: String,
        /// Its new warehouse type.
        ddl_type: String,
        /// Redshift's temporary column ([`retype_temporary`]).
        temporary: String,
        /// An interrupted retype already created `temporary`.
        temporary_exists: bool,
        /// A TIMESTAMPTZ that becomes a zone-less TIMESTAMP (MySQL TIMESTAMP → DATETIME): old
        /// values become their UTC wall-clock time, until the backfill the change starts
        /// ([`TableSchema::backfill_reason`]) brings the source's own.
        from_utc: bool,
    },
    /// A Redshift retype interrupted after dropping the old column: only the rename is left.
    FinishRetype {
        /// The column.
        column: String,
        /// The temporary column to rename to it.
        temporary: String,
    },
    /// A NOT NULL target column that must take NULL now: PostgreSQL drops the constraint;
    /// Redshift, which cannot change a column's nullability, rebuilds the column like a
    /// [`Drift::Retype`] to the same, nullable, type.
    DropNotNull {
        /// The column.
        column: String,
        /// Its warehouse type.
        ddl_type: String,
        /// Redshift's temporary column ([`retype_temporary`]).
        temporary: String,
        /// An interrupted rebuild already created `temporary`.
        temporary_exists: bool,
    },
    /// Redshift: a VARCHAR to widen is part of PRIMARY KEY `constraint`, and r_ALTER_TABLE
    /// refuses ALTER COLUMN TYPE on such a column. The constraint is dropped before the
    /// widenings and declared again after them over `columns`, each statement autocommitted.
    WidenKeyOf {
        /// The PRIMARY KEY constraint's name.
        constraint: String,
        /// Its columns.
        columns: Vec<String>,
    },
    /// Redshift: the target declares no PRIMARY KEY, though the load mode guarantees one over
    /// `columns` (a `merge`/`replace` table whose key was dropped by an interrupted
    /// [`Drift::WidenKeyOf`]): declared again. Redshift never enforces it; its planner uses it.
    DeclareKey {
        /// The key's columns.
        columns: Vec<String>,
    },
}

/// The temporary name of a column being retyped in Redshift (see [`Drift::Retype`]).
pub fn retype_temporary(column: &str) -> String {
    format!("tidemark_retype_{column}")
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

/// How well an existing target column holds a source column.
enum Fit {
    Holds,
    Widen {
        from: i64,
        to: i64,
    },
    /// The source's type holds every value of the target's (a widened INT or DECIMAL, a
    /// TIMESTAMP become DATETIME: `from_utc`).
    Retype {
        from_utc: bool,
    },
    Incompatible {
        extra_hint: &'static str,
    },
}

impl Fit {
    fn incompatible() -> Self {
        Fit::Incompatible { extra_hint: "" }
    }

    fn varchar(length: Option<i64>, needed: u64) -> Self {
        let needed = i64::try_from(needed).unwrap_or(i64::MAX);
        match length {
            Some(from) if from < needed => Fit::Widen { from, to: needed },
            _ => Fit::Holds,
        }
    }
}

/// Decimal digits an integer-valued source type needs; `None` for non-integers.
fn integer_digits(ty: &ColumnType) -> Option<u8> {
    match ty {
        ColumnType::Int16 => Some(5),
        ColumnType::Int32 => Some(10),
        ColumnType::Int64 => Some(19),
        ColumnType::Bits { width } if *width < 64 => Some(19),
        _ => None,
    }
}

/// Whether numeric(precision, scale) holds every numeric(p, s) value. Unconstrained `numeric`
/// (PostgreSQL, no precision) holds everything.
fn numeric_holds(precision: Option<i64>, scale: Option<i64>, p: i64, s: i64) -> bool {
    match precision {
        None => true,
        Some(precision) => {
            let scale = scale.unwrap_or(0);
            scale >= s && precision - scale >= p - s
        }
    }
}

/// What kind of column the warehouse reports, from `data_type` (PostgreSQL's and Redshift's
/// information_schema spellings, plus common short aliases).
enum TargetFamily {
    Boolean,
    Integer {
        digits: u8,
    },
    Numeric {
        precision: Option<i64>,
        scale: Option<i64>,
    },
    Real,
    Double,
    Date,
    Timestamp,
    TimestampTz,
    Varchar {
        length: Option<i64>,
    },
    UnboundedText,
    Super,
    Json,
    Varbyte {
        length: Option<i64>,
    },
    Bytea,
    Other,
}

impl TargetFamily {
    fn of(target: &TargetColumn) -> Self {
        match target.data_type.trim().to_ascii_lowercase().as_str() {
            "boolean" | "bool" => TargetFamily::Boolean,
            "smallint" | "int2" => TargetFamily::Integer { digits: 5 },
            "integer" | "int" | "int4" => TargetFamily::Integer { digits: 10 },
            "bigint" | "int8" => TargetFamily::Integer { digits: 19 },
            "numeric" | "decimal" => TargetFamily::Numeric {
                precision: target.numeric_precision,
                scale: target.numeric_scale,
            },
            "real" | "float4" => TargetFamily::Real,
            "double precision" | "float8" | "float" => TargetFamily::Double,
            "date" => TargetFamily::Date,
            "timestamp without time zone" | "timestamp" => TargetFamily::Timestamp,
            "timestamp with time zone" | "timestamptz" => TargetFamily::TimestampTz,
            "character varying" | "varchar" | "nvarchar" => TargetFamily::Varchar {
                length: target.character_maximum_length,
            },
            "text" => TargetFamily::UnboundedText,
            "super" => TargetFamily::Super,
            "jsonb" | "json" => TargetFamily::Json,
            "binary varying" | "varbyte" | "varbinary" => TargetFamily::Varbyte {
                length: target.character_maximum_length,
            },
            "bytea" => TargetFamily::Bytea,
            _ => TargetFamily::Other,
        }
    }
}

/// `character varying(10)`, `numeric(20,0)`, `integer`.
fn describe_target(target: &TargetColumn) -> String {
    match (
        target.character_maximum_length,
        target.numeric_precision,
        target.numeric_scale,
    ) {
        (Some(length), _, _) => format!("{}({length})", target.data_type),
        (None, Some(p), Some(s))
            if matches!(
                target.data_type.to_ascii_lowercase().as_str(),
                "numeric" | "decimal"
            ) =>
        {
            format!("{}({p},{s})", target.data_type)
        }
        _ => target.data_type.clone(),
    }
}

/// The non-retryable [`Error::SchemaDrift`] for every incompatible column, or `None` when the
/// drift can be applied automatically (added columns, widened VARCHARs, missing columns).
pub fn drift_error(table: impl fmt::Display, drifts: &[Drift]) -> Option<Error> {
    let details: Vec<String> = drifts
        .iter()
        .filter_map(|drift| match drift {
            Drift::Incompatible {
                column,
                target_type,
                source_type,
                hint,
            } => Some(format!(
                "column `{column}` is `{target_type}` in the target but `{source_type}` in the \
                 source: {hint}"
            )),
            _ => None,
        })
        .collect();
    if details.is_empty() {
        None
    } else {
        Some(Error::SchemaDrift {
            table: table.to_string(),
            details: details.join("; "),
        })
    }
}

/// The statements that apply the automatic part of `drifts` to `schema.table`: one
/// `ADD COLUMN` per added column, one `ALTER COLUMN … TYPE` per widened VARCHAR (PostgreSQL
/// widens to `text`, its type for all text). Missing-in-source columns need nothing. Fails with
/// [`drift_error`] if any drift is incompatible. In Redshift each statement must run outside a
/// transaction block, before the load.
pub fn drift_ddl(
    schema: &str,
    table: &str,
    drifts: &[Drift],
    warehouse: Warehouse,
) -> Result<Vec<String>> {
    let schema = naming::target_identifier(schema)?;
    let table = naming::target_identifier(table)?;
    if let Some(error) = drift_error(format!("{schema}.{table}"), drifts) {
        return Err(error);
    }
    let qualified = naming::quote_warehouse_qualified(&schema, &table);
    let key_list = |columns: &[String]| {
        columns
            .iter()
            .map(|c| naming::quote_warehouse(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A key to widen is dropped first and declared again last (r_ALTER_TABLE: ALTER COLUMN TYPE
    // cannot change a PRIMARY KEY column).
    let drop_key = drifts.iter().filter_map(|drift| match drift {
        Drift::WidenKeyOf { constraint, .. } => Some(format!(
            "ALTER TABLE {qualified} DROP CONSTRAINT {}",
            naming::quote_warehouse(constraint)
        )),
        _ => None,
    });
    let declare_key = drifts.iter().filter_map(|drift| match drift {
        Drift::WidenKeyOf {
            constraint,
            columns,
        } => Some(format!(
            "ALTER TABLE {qualified} ADD CONSTRAINT {} PRIMARY KEY ({})",
            naming::quote_warehouse(constraint),
            key_list(columns)
        )),
        Drift::DeclareKey { columns } => Some(format!(
            "ALTER TABLE {qualified} ADD PRIMARY KEY ({})",
            key_list(columns)
        )),
        _ => None,
    });
    let declare_key: Vec<String> = declare_key.collect();
    Ok(drop_key
        .chain(drifts.iter().filter_map(|drift| match drift {
            Drift::AddColumn { column, ddl_type } => Some(format!(
                "ALTER TABLE {qualified} ADD COLUMN {} {ddl_type}",
                naming::quote_warehouse(column)
            )),
            Drift::WidenVarchar { column, to, .. } => {
                let ty = match warehouse {
                    Warehouse::Redshift => format!("VARCHAR({to})"),
                    Warehouse::Postgres => "text".to_owned(),
                };
                Some(format!(
                    "ALTER TABLE {qualified} ALTER COLUMN {} TYPE {ty}",
                    naming::quote_warehouse(column)
                ))
            }
            Drift::Incompatible { .. }
            | Drift::MissingInSource { .. }
            | Drift::Retype { .. }
            | Drift::FinishRetype { .. }
            | Drift::DropNotNull { .. }
            | Drift::WidenKeyOf { .. }
            | Drift::DeclareKey { .. } => None,
        }))
        .chain(
            drifts
                .iter()
                .flat_map(|drift| retype_ddl(&qualified, drift, warehouse)),
        )
        .chain(declare_key)
        .collect())
}

/// The statements of a retype. PostgreSQL: `ALTER COLUMN … TYPE`. Redshift (r_ALTER_TABLE: only
/// VARCHAR changes in place, outside a transaction): add the temporary column (unless an
/// interrupted retype did), copy, drop the old column, rename — each autocommitted, and each
/// safe to repeat from where a crash left it (see [`Drift::FinishRetype`]).
fn retype_ddl(qualified: &str, drift: &Drift, warehouse: Warehouse) -> Vec<String> {
    match (drift, warehouse) {
        (Drift::DropNotNull { column, .. }, Warehouse::Postgres) => vec![format!(
            "ALTER TABLE {qualified} ALTER COLUMN {} DROP NOT NULL",
            naming::quote_warehouse(column)
        )],
        (
            Drift::DropNotNull {
                column,
                ddl_type,
                temporary,
                temporary_exists,
            },
            Warehouse::Redshift,
        ) => retype_ddl(
            qualified,
            &Drift::Retype {
                column: column.clone(),
                ddl_type: ddl_type.clone(),
                temporary: temporary.clone(),
                temporary_exists: *temporary_exists,
                from_utc: false,
            },
            warehouse,
        ),
        (
            Drift::Retype {
                column,
                ddl_type,
                from_utc,
                ..
            },
            Warehouse::Postgres,
        ) => {
            let column = naming::quote_warehouse(column);
            let using = if *from_utc {
                format!(" USING {}", utc_wall_clock(&column))
            } else {
                String::new()
            };
            vec![format!(
                "ALTER TABLE {qualified} ALTER COLUMN {column} TYPE {ddl_type}{using}"
            )]
        }
        (
            Drift::Retype {
                column,
                ddl_type,
                temporary,
                temporary_exists,
                from_utc,
            },
            Warehouse::Redshift,
        ) => {
            let (column, temporary) = (
                naming::quote_warehouse(column),
                naming::quote_warehouse(temporary),
            );
            let value = if *from_utc {
                utc_wall_clock(&column)
            } else {
                column.clone()
            };
            let mut ddl = Vec::new();
            if !temporary_exists {
                ddl.push(format!(
                    "ALTER TABLE {qualified} ADD COLUMN {temporary} {ddl_type}"
                ));
            }
            ddl.push(format!("UPDATE {qualified} SET {temporary} = {value}"));
            ddl.push(format!("ALTER TABLE {qualified} DROP COLUMN {column}"));
            ddl.push(format!(
                "ALTER TABLE {qualified} RENAME COLUMN {temporary} TO {column}"
            ));
            ddl
        }
        (Drift::FinishRetype { column, temporary }, _) => vec![format!(
            "ALTER TABLE {qualified} RENAME COLUMN {} TO {}",
            naming::quote_warehouse(temporary),
            naming::quote_warehouse(column)
        )],
        _ => Vec::new(),
    }
}

/// A TIMESTAMPTZ column's values as zone-less UTC wall-clock time, whatever the session's time
/// zone (PostgreSQL; Redshift's AT TIME ZONE likewise returns TIMESTAMP for a TIMESTAMPTZ).
fn utc_wall_clock(quoted_column: &str) -> String {
    format!("{quoted_column} AT TIME ZONE 'UTC'")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn zoo() -> TableId {
        TableId::parse("shop.zoo").unwrap()
    }

    /// A source column from the values `information_schema.COLUMNS` reports on MariaDB 10.11.
    fn src(name: &str, data_type: &str, column_type: &str) -> SourceColumn {
        let args = type_arguments(column_type);
        let (octets, precision, scale) = match data_type {
            "char" | "varchar" => (args.first().map(|n| n * 4), None, None),
            "binary" | "varbinary" => (args.first().copied(), None, None),
            "tinytext" | "tinyblob" => (Some(255), None, None),
            "text" | "blob" => (Some(65_535), None, None),
            "mediumtext" | "mediumblob" => (Some(16_777_215), None, None),
            "longtext" | "longblob" => (Some(LONGTEXT_MAX_OCTETS), None, None),
            "enum" => (Some(24), None, None),
            "set" => (Some(20), None, None),
            "decimal" => (None, args.first().copied(), args.get(1).copied()),
            "bit" => (None, args.first().copied(), None),
            _ => (None, None, None),
        };
        SourceColumn {
            name: name.to_owned(),
            data_type: data_type.to_owned(),
            column_type: column_type.to_owned(),
            nullable: true,
            octet_length: octets,
            numeric_precision: precision,
            numeric_scale: scale,
            datetime_precision: None,
            json_checked: false,
        }
    }

    fn map(data_type: &str, column_type: &str) -> Result<ColumnType> {
        map_column_type(
            &zoo(),
            &src("c", data_type, column_type),
            &SchemaOptions::default(),
        )
    }

    fn text(max_octets: u64, source: TextSource) -> ColumnType {
        ColumnType::Text { max_octets, source }
    }

    #[test]
    fn every_mysql_type_maps_as_design_section_4_says() {
        use ColumnType as T;
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let cases: Vec<(&str, &str, ColumnType, DataType, &str, &str)> = vec![
            (
                "tinyint",
                "tinyint(1)",
                T::Boolean {
                    source: BooleanSource::TinyInt,
                },
                DataType::Boolean,
                "BOOLEAN",
                "boolean",
            ),
            (
                "tinyint",
                "tinyint(4)",
                T::Int16,
                DataType::Int16,
                "SMALLINT",
                "smallint",
            ),
            (
                "tinyint",
                "tinyint(3) unsigned",
                T::Int16,
                DataType::Int16,
                "SMALLINT",
                "smallint",
            ),
            (
                "tinyint",
                "tinyint unsigned",
                T::Int16,
                DataType::Int16,
                "SMALLINT",
                "smallint",
            ),
            (
                "smallint",
                "smallint(6)",
                T::Int16,
                DataType::Int16,
                "SMALLINT",
                "smallint",
            ),
            (
                "smallint",
                "smallint(5) unsigned",
                T::Int32,
                DataType::Int32,
                "INTEGER",
                "integer",
            ),
            (
                "mediumint",
                "mediumint(9)",
                T::Int32,
                DataType::Int32,
                "INTEGER",
                "integer",
            ),
            (
                "mediumint",
                "mediumint(8) unsigned",
                T::Int32,
                DataType::Int32,
                "INTEGER",
                "integer",
            ),
            (
                "int",
                "int(11)",
                T::Int32,
                DataType::Int32,
                "INTEGER",
                "integer",
            ),
            (
                "int",
                "int",
                T::Int32,
                DataType::Int32,
                "INTEGER",
                "integer",
            ),
            (
                "int",
                "int(10) unsigned",
                T::Int64,
                DataType::Int64,
                "BIGINT",
                "bigint",
            ),
            (
                "int",
                "int(10) unsigned zerofill",
                T::Int64,
                DataType::Int64,
                "BIGINT",
                "bigint",
            ),
            (
                "bigint",
                "bigint(20)",
                T::Int64,
                DataType::Int64,
                "BIGINT",
                "bigint",
            ),
            (
                "bigint",
                "bigint(20) unsigned",
                T::Decimal {
                    precision: 20,
                    scale: 0,
                },
                DataType::Decimal128(20, 0),
                "DECIMAL(20, 0)",
                "numeric(20, 0)",
            ),
            (
                "decimal",
                "decimal(38,10)",
                T::Decimal {
                    precision: 38,
                    scale: 10,
                },
                DataType::Decimal128(38, 10),
                "DECIMAL(38, 10)",
                "numeric(38, 10)",
            ),
            (
                "decimal",
                "decimal(10,0) unsigned",
                T::Decimal {
                    precision: 10,
                    scale: 0,
                },
                DataType::Decimal128(10, 0),
                "DECIMAL(10, 0)",
                "numeric(10, 0)",
            ),
            (
                "float",
                "float",
                T::Float32,
                DataType::Float32,
                "REAL",
                "real",
            ),
            (
                "float",
                "float(10,2)",
                T::Float32,
                DataType::Float32,
                "REAL",
                "real",
            ),
            (
                "double",
                "double",
                T::Float64,
                DataType::Float64,
                "DOUBLE PRECISION",
                "double precision",
            ),
            (
                "bit",
                "bit(1)",
                T::Boolean {
                    source: BooleanSource::Bit,
                },
                DataType::Boolean,
                "BOOLEAN",
                "boolean",
            ),
            (
                "bit",
                "bit(10)",
                T::Bits { width: 10 },
                DataType::Int64,
                "BIGINT",
                "bigint",
            ),
            (
                "bit",
                "bit(63)",
                T::Bits { width: 63 },
                DataType::Int64,
                "BIGINT",
                "bigint",
            ),
            (
                "bit",
                "bit(64)",
                T::Bits { width: 64 },
                DataType::Decimal128(20, 0),
                "DECIMAL(20, 0)",
                "numeric(20, 0)",
            ),
            (
                "year",
                "year(4)",
                T::Int16,
                DataType::Int16,
                "SMALLINT",
                "smallint",
            ),
            ("date", "date", T::Date, DataType::Date32, "DATE", "date"),
            (
                "datetime",
                "datetime(6)",
                T::Timestamp,
                DataType::Timestamp(TimeUnit::Microsecond, None),
                "TIMESTAMP",
                "timestamp",
            ),
            (
                "datetime",
                "datetime",
                T::Timestamp,
                DataType::Timestamp(TimeUnit::Microsecond, None),
                "TIMESTAMP",
                "timestamp",
            ),
            (
                "timestamp",
                "timestamp(3)",
                T::TimestampTz,
                utc.clone(),
                "TIMESTAMPTZ",
                "timestamptz",
            ),
            (
                "time",
                "time(6)",
                text(17, TextSource::Time),
                DataType::Utf8,
                "VARCHAR(17)",
                "text",
            ),
            (
                "char",
                "char(10)",
                text(40, TextSource::Char),
                DataType::Utf8,
                "VARCHAR(40)",
                "text",
            ),
            (
                "char",
                "char(0)",
                text(0, TextSource::Char),
                DataType::Utf8,
                "VARCHAR(1)",
                "text",
            ),
            (
                "varchar",
                "varchar(255)",
                text(1020, TextSource::Varchar),
                DataType::Utf8,
                "VARCHAR(1020)",
                "text",
            ),
            (
                "varchar",
                "varchar(16383)",
                text(65_532, TextSource::Varchar),
                DataType::Utf8,
                "VARCHAR(65532)",
                "text",
            ),
            (
                "varchar",
                "varchar(20000)",
                text(80_000, TextSource::Varchar),
                DataType::Utf8,
                "VARCHAR(65535)",
                "text",
            ),
            (
                "tinytext",
                "tinytext",
                text(255, TextSource::Text),
                DataType::Utf8,
                "VARCHAR(255)",
                "text",
            ),
            (
                "text",
                "text",
                text(65_535, TextSource::Text),
                DataType::Utf8,
                "VARCHAR(65535)",
                "text",
            ),
            (
                "mediumtext",
                "mediumtext",
                text(16_777_215, TextSource::Text),
                DataType::Utf8,
                "VARCHAR(65535)",
                "text",
            ),
            (
                "longtext",
                "longtext",
                text(LONGTEXT_MAX_OCTETS, TextSource::Text),
                DataType::Utf8,
                "VARCHAR(65535)",
                "text",
            ),
            (
                "enum",
                "enum('a','b')",
                text(24, TextSource::Enum),
                DataType::Utf8,
                "VARCHAR(24)",
                "text",
            ),
            (
                "set",
                "set('a','b')",
                text(20, TextSource::Set),
                DataType::Utf8,
                "VARCHAR(20)",
                "text",
            ),
            ("json", "json", T::Json, DataType::Utf8, "SUPER", "jsonb"),
            (
                "binary",
                "binary(16)",
                T::Binary { max_octets: 16 },
                DataType::Binary,
                "VARBYTE(16)",
                "bytea",
            ),
            (
                "varbinary",
                "varbinary(255)",
                T::Binary { max_octets: 255 },
                DataType::Binary,
                "VARBYTE(255)",
                "bytea",
            ),
            (
                "tinyblob",
                "tinyblob",
                T::Binary { max_octets: 255 },
                DataType::Binary,
                "VARBYTE(255)",
                "bytea",
            ),
            (
                "blob",
                "blob",
                T::Binary { max_octets: 65_535 },
                DataType::Binary,
                "VARBYTE(65535)",
                "bytea",
            ),
            (
                "mediumblob",
                "mediumblob",
                T::Binary {
                    max_octets: 16_777_215,
                },
                DataType::Binary,
                "VARBYTE(16777215)",
                "bytea",
            ),
            (
                "longblob",
                "longblob",
                T::Binary {
                    max_octets: LONGTEXT_MAX_OCTETS,
                },
                DataType::Binary,
                "VARBYTE(16777216)",
                "bytea",
            ),
        ];
        for (data_type, column_type, ty, arrow, redshift, postgres) in cases {
            let mapped = map(data_type, column_type).unwrap();
            assert_eq!(mapped, ty, "{column_type}");
            assert_eq!(mapped.arrow_type(), arrow, "{column_type}");
            assert_eq!(
                mapped.redshift_type(JsonTarget::Super),
                redshift,
                "{column_type}"
            );
            assert_eq!(mapped.postgres_type(), postgres, "{column_type}");
        }
    }

    #[test]
    fn json_in_redshift_can_be_varchar() {
        assert_eq!(
            ColumnType::Json.redshift_type(JsonTarget::Varchar),
            "VARCHAR(65535)"
        );
    }

    #[test]
    fn mariadb_json_is_longtext_with_a_json_valid_check() {
        let mut column = src("doc", "longtext", "longtext");
        column.json_checked = true;
        let ty = map_column_type(&zoo(), &column, &SchemaOptions::default()).unwrap();
        assert_eq!(ty, ColumnType::Json);
        assert!(is_json_valid_check("json_valid(`doc`)", "doc"));
        assert!(is_json_valid_check(" JSON_VALID( `doc` ) ", "doc"));
        assert!(!is_json_valid_check("json_valid(`other`)", "doc"));
        assert!(!is_json_valid_check(
            "json_valid(`doc`) and `doc` <> ''",
            "doc"
        ));
        assert!(is_json_valid_check("json_valid(`we``ird`)", "we`ird"));
    }

    #[test]
    fn tinyint1_can_stay_an_integer() {
        let options = SchemaOptions {
            tinyint1_as_boolean: false,
            ..SchemaOptions::default()
        };
        let ty = map_column_type(&zoo(), &src("flag", "tinyint", "tinyint(1)"), &options).unwrap();
        assert_eq!(ty, ColumnType::Int16);
    }

    #[test]
    fn wide_decimals_are_an_error_that_names_the_fix_unless_forced_to_text() {
        let err = map("decimal", "decimal(65,30)").unwrap_err().to_string();
        for needle in [
            "`c`",
            "`shop.zoo`",
            "decimal(65,30)",
            "as: text",
            "exclude: [c]",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
        let options = SchemaOptions {
            as_text: BTreeSet::from(["C".to_owned()]),
            ..SchemaOptions::default()
        };
        let ty = map_column_type(&zoo(), &src("c", "decimal", "decimal(65,30)"), &options).unwrap();
        assert_eq!(ty, text(67, TextSource::Decimal));
    }

    #[test]
    fn spatial_and_unknown_types_are_errors_unless_forced_to_text() {
        for (data_type, column_type) in [
            ("geometry", "geometry"),
            ("point", "point"),
            ("uuid", "uuid"),
        ] {
            let err = map(data_type, column_type).unwrap_err();
            assert!(matches!(err, Error::Schema(_)));
            let err = err.to_string();
            assert!(
                err.contains(column_type) && err.contains("as: text"),
                "{err}"
            );
        }
        let options = SchemaOptions {
            as_text: BTreeSet::from(["shape".to_owned(), "id".to_owned()]),
            ..SchemaOptions::default()
        };
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("shape", "geometry", "geometry"),
                src("id", "uuid", "uuid"),
            ],
            vec![],
            &options,
        )
        .unwrap();
        assert_eq!(
            schema.columns[0].ty,
            text(LONGTEXT_MAX_OCTETS, TextSource::Spatial)
        );
        assert_eq!(
            schema.mysql_select_list(),
            "ST_AsText(`shape`), CAST(`id` AS CHAR)"
        );
    }

    #[test]
    fn forced_text_reads_every_type_through_mysql_text() {
        let options = SchemaOptions {
            as_text: ["n", "bin", "b", "ts", "d", "j", "t", "v"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            ..SchemaOptions::default()
        };
        let mut json = src("j", "longtext", "longtext");
        json.json_checked = true;
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("n", "bigint", "bigint(20) unsigned"),
                src("bin", "varbinary", "varbinary(8)"),
                src("b", "bit", "bit(10)"),
                src("ts", "timestamp", "timestamp(6)"),
                src("d", "double", "double"),
                json,
                src("t", "time", "time"),
                src("v", "varchar", "varchar(3)"),
            ],
            vec![],
            &options,
        )
        .unwrap();
        let types: Vec<ColumnType> = schema.columns.iter().map(|c| c.ty.clone()).collect();
        assert_eq!(
            types,
            vec![
                text(20, TextSource::Other),
                text(16, TextSource::Other),
                text(20, TextSource::Other),
                text(26, TextSource::Other),
                text(32, TextSource::Other),
                text(LONGTEXT_MAX_OCTETS, TextSource::Json),
                text(17, TextSource::Time),
                text(12, TextSource::Varchar),
            ]
        );
        assert_eq!(
            schema.mysql_select_list(),
            "CAST(`n` AS CHAR), HEX(`bin`), CAST(`b` + 0 AS CHAR), CAST(`ts` AS CHAR), \
             CAST(`d` AS CHAR), `j`, CAST(`t` AS CHAR), `v`"
        );
    }

    fn orders() -> TableSchema {
        let mut id = src("Id", "bigint", "bigint(20) unsigned");
        id.nullable = false;
        let mut created = src("created_at", "datetime", "datetime(6)");
        created.nullable = false;
        let mut amount = src("amount", "decimal", "decimal(12,2)");
        amount.nullable = false;
        TableSchema::from_source_columns(
            &TableId::parse("shop.orders").unwrap(),
            vec![
                id,
                src("Customer Name", "varchar", "varchar(100)"),
                amount,
                created,
                src("doc", "json", "json"),
                src("photo", "blob", "blob"),
            ],
            vec!["id".to_owned()],
            &SchemaOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn names_fold_for_the_warehouse_and_keep_their_source_spelling() {
        let schema = orders();
        assert_eq!(
            schema.column_names(),
            [
                "Id",
                "Customer Name",
                "amount",
                "created_at",
                "doc",
                "photo"
            ]
        );
        assert_eq!(
            schema.target_column_names(),
            [
                "id",
                "customer name",
                "amount",
                "created_at",
                "doc",
                "photo"
            ]
        );
        assert_eq!(schema.primary_key, ["Id"]);
        assert_eq!(
            schema.column("CUSTOMER name").unwrap().name,
            "Customer Name"
        );
    }

    #[test]
    fn zero_dates_make_temporal_columns_nullable_outside_the_primary_key() {
        let schema = orders();
        let nullable: Vec<bool> = schema.columns.iter().map(|c| c.nullable).collect();
        assert_eq!(nullable, [false, true, false, true, true, true]);
        let mut key = src("day", "date", "date");
        key.nullable = false;
        let keyed = TableSchema::from_source_columns(
            &zoo(),
            vec![key],
            vec!["day".to_owned()],
            &SchemaOptions::default(),
        )
        .unwrap();
        assert!(!keyed.columns[0].nullable);
        let arrow = schema.arrow_schema();
        assert_eq!(arrow.field(0).name(), "id");
        assert!(!arrow.field(0).is_nullable());
        assert_eq!(arrow.field(0).data_type(), &DataType::Decimal128(20, 0));
        assert!(arrow.field(3).is_nullable());
    }

    #[test]
    fn only_types_whose_values_can_outgrow_redshift_have_a_limit_to_enforce() {
        let limit = |data_type: &str, column_type: &str| {
            let ty = map(data_type, column_type).unwrap();
            (ty.redshift_max_value_octets(), ty.may_outgrow_redshift())
        };
        assert_eq!(limit("varchar", "varchar(100)"), (Some(400), false));
        assert_eq!(limit("text", "text"), (Some(65_535), false));
        assert_eq!(limit("varchar", "varchar(16384)"), (Some(65_535), true));
        assert_eq!(limit("mediumtext", "mediumtext"), (Some(65_535), true));
        assert_eq!(limit("json", "json"), (Some(65_535), true));
        assert_eq!(limit("mediumblob", "mediumblob"), (Some(16_777_215), false));
        assert_eq!(limit("longblob", "longblob"), (Some(16_777_216), true));
        assert_eq!(limit("int", "int(11)"), (None, false));
    }

    #[test]
    fn oversize_policies_that_write_null_make_those_columns_nullable_outside_the_key() {
        let not_null = |name: &str, data_type: &str| {
            let mut column = src(name, data_type, data_type);
            column.nullable = false;
            column
        };
        let nullable_with = |policy: OversizePolicy| {
            let schema = TableSchema::from_source_columns(
                &zoo(),
                vec![
                    not_null("k", "mediumtext"),
                    not_null("body", "longtext"),
                    not_null("doc", "json"),
                    not_null("note", "text"),
                    not_null("raw", "longblob"),
                ],
                vec!["k".to_owned()],
                &SchemaOptions {
                    oversize_in_redshift: policy,
                    ..SchemaOptions::default()
                },
            )
            .unwrap();
            schema
                .columns
                .iter()
                .map(|c| c.nullable)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            nullable_with(OversizePolicy::Fail),
            [false, false, false, false, false]
        );
        assert_eq!(
            nullable_with(OversizePolicy::Truncate),
            [false, false, true, false, false],
            "a JSON document is never cut, it becomes NULL"
        );
        assert_eq!(
            nullable_with(OversizePolicy::Null),
            [false, true, true, false, true]
        );
    }

    #[test]
    fn redshift_ddl_sizes_in_bytes_and_places_table_attributes() {
        let dist = RedshiftTableOptions {
            diststyle: None,
            distkey: Some("ID".to_owned()),
            sortkey: vec!["created_at".to_owned(), "id".to_owned()],
        };
        let ddl = orders().redshift_ddl("Analytics", "orders", &dist).unwrap();
        assert_eq!(
            ddl,
            "CREATE TABLE IF NOT EXISTS \"analytics\".\"orders\" (\n    \
             \"id\" DECIMAL(20, 0) NOT NULL,\n    \
             \"customer name\" VARCHAR(400),\n    \
             \"amount\" DECIMAL(12, 2) NOT NULL,\n    \
             \"created_at\" TIMESTAMP,\n    \
             \"doc\" SUPER,\n    \
             \"photo\" VARBYTE(65535),\n    \
             PRIMARY KEY (\"id\")\n)\n\
             DISTSTYLE KEY\nDISTKEY (\"id\")\n\
             SORTKEY (\"created_at\", \"id\")\n\
             ENCODE AUTO"
        );
        let even = RedshiftTableOptions {
            diststyle: Some(DistStyle::Even),
            ..RedshiftTableOptions::default()
        };
        let ddl = orders().redshift_ddl("a", "o", &even).unwrap();
        assert!(ddl.ends_with(")\nDISTSTYLE EVEN\nENCODE AUTO"), "{ddl}");
        let plain = orders()
            .redshift_ddl("a", "o", &RedshiftTableOptions::default())
            .unwrap();
        assert!(
            plain.ends_with("PRIMARY KEY (\"id\")\n)\nENCODE AUTO"),
            "{plain}"
        );
    }

    #[test]
    fn redshift_table_options_are_validated() {
        let bad = [
            RedshiftTableOptions {
                distkey: Some("nope".to_owned()),
                ..Default::default()
            },
            RedshiftTableOptions {
                sortkey: vec!["id".to_owned(), "nope".to_owned()],
                ..Default::default()
            },
            RedshiftTableOptions {
                sortkey: vec!["id".to_owned(), "Id".to_owned()],
                ..Default::default()
            },
            RedshiftTableOptions {
                diststyle: Some(DistStyle::Key),
                ..Default::default()
            },
            RedshiftTableOptions {
                diststyle: Some(DistStyle::All),
                distkey: Some("id".to_owned()),
                ..Default::default()
            },
            RedshiftTableOptions {
                distkey: Some("doc".to_owned()),
                ..Default::default()
            },
            RedshiftTableOptions {
                sortkey: vec!["doc".to_owned()],
                ..Default::default()
            },
        ];
        for dist in bad {
            let err = orders().redshift_ddl("a", "o", &dist);
            assert!(matches!(err, Err(Error::Schema(_))), "{dist:?} → {err:?}");
        }
        let err = orders()
            .redshift_ddl("a", "o", &bad_distkey())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`nope`") && err.contains("created_at"),
            "{err}"
        );
        let mut varchar_json = orders();
        varchar_json.json_in_redshift = JsonTarget::Varchar;
        let sort_on_json = RedshiftTableOptions {
            sortkey: vec!["doc".to_owned()],
            ..Default::default()
        };
        let ddl = varchar_json.redshift_ddl("a", "o", &sort_on_json).unwrap();
        assert!(ddl.contains("\"doc\" VARCHAR(65535),"), "{ddl}");
    }

    fn bad_distkey() -> RedshiftTableOptions {
        RedshiftTableOptions {
            distkey: Some("nope".to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn postgres_ddl_uses_postgres_types_and_checks_name_lengths() {
        let ddl = orders().postgres_ddl("analytics", "orders").unwrap();
        assert_eq!(
            ddl,
            "CREATE TABLE IF NOT EXISTS \"analytics\".\"orders\" (\n    \
             \"id\" numeric(20, 0) NOT NULL,\n    \
             \"customer name\" text,\n    \
             \"amount\" numeric(12, 2) NOT NULL,\n    \
             \"created_at\" timestamp,\n    \
             \"doc\" jsonb,\n    \
             \"photo\" bytea,\n    \
             PRIMARY KEY (\"id\")\n)"
        );
        assert!(orders().postgres_ddl("analytics", &"t".repeat(64)).is_err());
        let long = TableSchema::from_source_columns(
            &zoo(),
            vec![src(&"c".repeat(64), "int", "int(11)")],
            vec![],
            &SchemaOptions::default(),
        )
        .unwrap();
        // Names the column, the fix, and how to drop runs committed with it.
        let refused = long.postgres_ddl("a", "b").unwrap_err().to_string();
        assert!(
            refused.contains(&format!("column `{}`", "c".repeat(64)))
                && refused.contains("exclude")
                && refused.contains("--drop-pending"),
            "{refused}"
        );
        assert!(long
            .redshift_ddl("a", "b", &RedshiftTableOptions::default())
            .is_ok());
    }

    #[test]
    fn a_table_without_a_primary_key_has_no_key_clause() {
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![src("a", "int", "int(11)")],
            vec![],
            &SchemaOptions::default(),
        )
        .unwrap();
        assert!(schema.primary_key.is_empty());
        let ddl = schema.postgres_ddl("s", "t").unwrap();
        assert_eq!(
            ddl,
            "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\n    \"a\" integer\n)"
        );
    }

    #[test]
    fn include_exclude_and_overrides_must_name_real_columns() {
        let columns = || {
            vec![
                src("id", "int", "int(11)"),
                src("Email", "varchar", "varchar(10)"),
                src("secret", "varchar", "varchar(10)"),
            ]
        };
        let build = |options: SchemaOptions| {
            TableSchema::from_source_columns(&zoo(), columns(), vec!["id".to_owned()], &options)
        };
        let included = build(SchemaOptions {
            include: Some(vec!["id".to_owned(), "email".to_owned()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(included.column_names(), ["id", "Email"]);
        let excluded = build(SchemaOptions {
            exclude: vec!["SECRET".to_owned()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(excluded.column_names(), ["id", "Email"]);

        let err = build(SchemaOptions {
            include: Some(vec!["id".to_owned(), "emial".to_owned()]),
            exclude: vec!["nope".to_owned()],
            as_text: BTreeSet::from(["ghost".to_owned()]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        for needle in ["`emial`", "`nope`", "`ghost`", "id, Email, secret"] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
        let err = build(SchemaOptions {
            include: Some(vec!["id".to_owned(), "secret".to_owned()]),
            exclude: vec!["secret".to_owned()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("both included and excluded"),
            "{err}"
        );
        let err = build(SchemaOptions {
            exclude: vec!["id".to_owned()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("primary key column `id`"), "{err}");
    }

    #[test]
    fn names_that_fold_together_are_an_error_naming_both() {
        // U+212A KELVIN SIGN lowercases to a plain `k`.
        let err = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("k", "int", "int(11)"),
                src("\u{212a}", "int", "int(11)"),
            ],
            vec![],
            &SchemaOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`k`") && err.contains("`\u{212a}`"), "{err}");
    }

    #[test]
    fn every_unsupported_column_is_reported_at_once() {
        let err = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("shape", "geometry", "geometry"),
                src("ok", "int", "int(11)"),
                src("big", "decimal", "decimal(50,2)"),
            ],
            vec![],
            &SchemaOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`shape`") && err.contains("`big`"), "{err}");
    }

    #[test]
    fn an_empty_column_list_means_the_table_was_not_found() {
        let err =
            TableSchema::from_source_columns(&zoo(), vec![], vec![], &SchemaOptions::default())
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("table `shop.zoo` not found in the source"),
            "{err}"
        );
        assert!(err.contains("SELECT"), "{err}");
    }

    #[test]
    fn the_fingerprint_is_stable_and_sensitive() {
        let schema = orders();
        // Pinned: a change here means every stored fingerprint changes too.
        assert_eq!(schema.fingerprint(), "1b2539f8ed9f2950");
        assert_eq!(schema.fingerprint(), orders().fingerprint());
        let mut other = orders();
        other.columns[1].nullable = false;
        assert_ne!(other.fingerprint(), schema.fingerprint());
        let mut other = orders();
        other.columns[2].ty = ColumnType::Decimal {
            precision: 12,
            scale: 3,
        };
        assert_ne!(other.fingerprint(), schema.fingerprint());
        let mut other = orders();
        other.columns[5].target_name = "picture".to_owned();
        assert_ne!(other.fingerprint(), schema.fingerprint());
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_schema_round_trips_through_json() {
        let schema = orders();
        let json = serde_json::to_string(&schema).unwrap();
        assert!(json.contains("\"table\":\"shop.orders\""), "{json}");
        let back: TableSchema = serde_json::from_str(&json).unwrap();
        assert_eq!(back, schema);
    }

    fn target(
        name: &str,
        data_type: &str,
        length: Option<i64>,
        precision: Option<i64>,
        scale: Option<i64>,
    ) -> TargetColumn {
        TargetColumn {
            name: name.to_owned(),
            data_type: data_type.to_owned(),
            character_maximum_length: length,
            numeric_precision: precision,
            numeric_scale: scale,
            nullable: true,
            primary_key: None,
        }
    }

    /// `column`, part of PRIMARY KEY `constraint`.
    fn in_key(constraint: &str, column: TargetColumn) -> TargetColumn {
        TargetColumn {
            primary_key: Some(constraint.to_owned()),
            ..column
        }
    }

    /// `orders()` as SVV_COLUMNS reports the table created by `redshift_ddl`.
    fn redshift_orders() -> Vec<TargetColumn> {
        vec![
            in_key(
                "orders_pkey",
                target("id", "numeric", None, Some(20), Some(0)),
            ),
            target("customer name", "character varying", Some(400), None, None),
            target("amount", "numeric", None, Some(12), Some(2)),
            target(
                "created_at",
                "timestamp without time zone",
                None,
                None,
                None,
            ),
            target("doc", "super", None, None, None),
            target("photo", "binary varying", Some(65_535), None, None),
        ]
    }

    /// `orders()` as PostgreSQL's information_schema reports the table created by `postgres_ddl`.
    fn postgres_orders() -> Vec<TargetColumn> {
        vec![
            target("id", "numeric", None, Some(20), Some(0)),
            target("customer name", "text", None, None, None),
            target("amount", "numeric", None, Some(12), Some(2)),
            target(
                "created_at",
                "timestamp without time zone",
                None,
                None,
                None,
            ),
            target("doc", "jsonb", None, None, None),
            target("photo", "bytea", None, None, None),
        ]
    }

    #[test]
    fn a_table_created_from_the_schema_has_no_drift() {
        assert_eq!(
            orders().drift(&redshift_orders(), Warehouse::Redshift),
            vec![]
        );
        assert_eq!(
            orders().drift(&postgres_orders(), Warehouse::Postgres),
            vec![]
        );
    }

    #[test]
    fn wider_targets_are_not_drift() {
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("small", "smallint", "smallint(6)"),
                src("f", "float", "float"),
                src("d", "decimal", "decimal(10,2)"),
                src("v", "varchar", "varchar(10)"),
                src("bits", "bit", "bit(64)"),
            ],
            vec![],
            &SchemaOptions::default(),
        )
        .unwrap();
        let existing = vec![
            target("small", "integer", None, Some(32), Some(0)),
            target("f", "double precision", None, Some(53), None),
            target("d", "numeric", None, Some(18), Some(4)),
            target("v", "character varying", Some(1000), None, None),
            target("bits", "numeric", None, Some(38), Some(0)),
        ];
        assert_eq!(schema.drift(&existing, Warehouse::Redshift), vec![]);
        let unconstrained = vec![
            target("small", "numeric", None, None, None),
            target("f", "real", None, Some(24), None),
            target("d", "numeric", None, None, None),
            target("v", "character varying", None, None, None),
            target("bits", "numeric", None, None, None),
        ];
        assert_eq!(schema.drift(&unconstrained, Warehouse::Postgres), vec![]);
    }

    #[test]
    fn a_widened_redshift_key_varchar_drops_and_declares_its_key_again() {
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("code", "varchar", "varchar(40)"),
                src("region", "varchar", "varchar(10)"),
            ],
            vec!["code".to_owned(), "region".to_owned()],
            &SchemaOptions::default(),
        )
        .unwrap();
        let keyed = |name: &str, length: i64| {
            in_key(
                "b_pkey",
                target(name, "character varying", Some(length), None, None),
            )
        };
        // r_ALTER_TABLE: ALTER COLUMN TYPE cannot change a PRIMARY KEY column.
        let widened = schema.drift(
            &[keyed("code", 80), keyed("region", 40)],
            Warehouse::Redshift,
        );
        assert_eq!(
            drift_ddl("a", "b", &widened, Warehouse::Redshift).unwrap(),
            [
                "ALTER TABLE \"a\".\"b\" DROP CONSTRAINT \"b_pkey\"",
                "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"code\" TYPE VARCHAR(160)",
                "ALTER TABLE \"a\".\"b\" ADD CONSTRAINT \"b_pkey\" PRIMARY KEY (\"code\", \"region\")",
            ]
        );
        // Interrupted after the drop: the next run widens without it and declares the key again.
        let unkeyed = |t: TargetColumn| TargetColumn {
            primary_key: None,
            ..t
        };
        let resumed = schema.drift(
            &[unkeyed(keyed("code", 80)), unkeyed(keyed("region", 40))],
            Warehouse::Redshift,
        );
        assert_eq!(
            drift_ddl("a", "b", &resumed, Warehouse::Redshift).unwrap(),
            [
                "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"code\" TYPE VARCHAR(160)",
                "ALTER TABLE \"a\".\"b\" ADD PRIMARY KEY (\"code\", \"region\")",
            ]
        );
        // An append table declares no key, and gets none; PostgreSQL widens a key in place.
        let append = schema.declaring_key(&[]);
        let plain = [unkeyed(keyed("code", 160)), unkeyed(keyed("region", 40))];
        assert!(append.drift(&plain, Warehouse::Redshift).is_empty());
        assert_eq!(
            drift_ddl(
                "a",
                "b",
                &schema.drift(
                    &[keyed("code", 80), keyed("region", 40)],
                    Warehouse::Postgres
                ),
                Warehouse::Postgres
            )
            .unwrap(),
            ["ALTER TABLE \"a\".\"b\" ALTER COLUMN \"code\" TYPE text"]
        );
    }

    #[test]
    fn a_widening_is_retyped_and_an_interrupted_redshift_retype_resumes() {
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("id", "bigint", "bigint(20)"),
                src("qty", "bigint", "bigint(20)"),
                src("price", "decimal", "decimal(16,4)"),
            ],
            vec!["id".to_owned()],
            &SchemaOptions::default(),
        )
        .unwrap();
        let id = in_key("b_pkey", target("id", "bigint", None, Some(64), Some(0)));
        let qty = target("qty", "integer", None, Some(32), Some(0));
        let price = target("price", "numeric", None, Some(12), Some(2));
        let fresh = schema.drift(
            &[id.clone(), qty.clone(), price.clone()],
            Warehouse::Redshift,
        );
        assert_eq!(
            drift_ddl("a", "b", &fresh, Warehouse::Redshift).unwrap(),
            [
                "ALTER TABLE \"a\".\"b\" ADD COLUMN \"tidemark_retype_qty\" BIGINT",
                "UPDATE \"a\".\"b\" SET \"tidemark_retype_qty\" = \"qty\"",
                "ALTER TABLE \"a\".\"b\" DROP COLUMN \"qty\"",
                "ALTER TABLE \"a\".\"b\" RENAME COLUMN \"tidemark_retype_qty\" TO \"qty\"",
                "ALTER TABLE \"a\".\"b\" ADD COLUMN \"tidemark_retype_price\" DECIMAL(16, 4)",
                "UPDATE \"a\".\"b\" SET \"tidemark_retype_price\" = \"price\"",
                "ALTER TABLE \"a\".\"b\" DROP COLUMN \"price\"",
                "ALTER TABLE \"a\".\"b\" RENAME COLUMN \"tidemark_retype_price\" TO \"price\"",
            ]
        );
        assert_eq!(
            drift_ddl(
                "a",
                "b",
                &schema.drift(
                    &[id.clone(), qty.clone(), price.clone()],
                    Warehouse::Postgres
                ),
                Warehouse::Postgres
            )
            .unwrap(),
            [
                "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"qty\" TYPE bigint",
                "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"price\" TYPE numeric(16, 4)",
            ]
        );
        // Crashed after ADD COLUMN: the temporary column is reused, not added again, and is no
        // column "missing in the source".
        let mut temporary = target("tidemark_retype_qty", "bigint", None, Some(64), Some(0));
        let added = schema.drift(
            &[id.clone(), qty, temporary.clone(), price.clone()],
            Warehouse::Redshift,
        );
        let ddl = drift_ddl("a", "b", &added, Warehouse::Redshift).unwrap();
        assert_eq!(
            ddl[0],
            "UPDATE \"a\".\"b\" SET \"tidemark_retype_qty\" = \"qty\""
        );
        assert!(
            !added
                .iter()
                .any(|d| matches!(d, Drift::MissingInSource { .. })),
            "{added:?}"
        );
        // Crashed after DROP COLUMN: only the rename is left.
        temporary.name = "tidemark_retype_qty".to_owned();
        let dropped = schema.drift(&[id, temporary, price], Warehouse::Redshift);
        let ddl = drift_ddl("a", "b", &dropped, Warehouse::Redshift).unwrap();
        assert_eq!(
            ddl[0],
            "ALTER TABLE \"a\".\"b\" RENAME COLUMN \"tidemark_retype_qty\" TO \"qty\""
        );
    }

    #[test]
    fn drift_is_classified_column_by_column() {
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                src("id", "bigint", "bigint(20)"),
                src("name", "varchar", "varchar(200)"),
                src("price", "decimal", "decimal(12,4)"),
                src("flag", "tinyint", "tinyint(1)"),
                src("added", "date", "date"),
                src("at", "timestamp", "timestamp(6)"),
            ],
            vec!["id".to_owned()],
            &SchemaOptions::default(),
        )
        .unwrap();
        let existing = vec![
            in_key("b_pkey", target("id", "integer", None, Some(32), Some(0))),
            target("name", "character varying", Some(100), None, None),
            target("price", "numeric", None, Some(12), Some(2)),
            target("flag", "smallint", None, Some(16), Some(0)),
            target("at", "timestamp without time zone", None, None, None),
            target("gone", "integer", None, Some(32), Some(0)),
        ];
        let drifts = schema.drift(&existing, Warehouse::Redshift);
        assert_eq!(drifts.len(), 7, "{drifts:#?}");
        assert!(
            matches!(&drifts[0], Drift::Incompatible { column, target_type, source_type, hint }
                if column == "id"
                    && target_type == "integer"
                    && source_type == "bigint(20)"
                    && hint.contains("BIGINT"))
        );
        assert_eq!(
            drifts[1],
            Drift::WidenVarchar {
                column: "name".to_owned(),
                from: 100,
                to: 800
            }
        );
        assert!(
            matches!(&drifts[2], Drift::Incompatible { column, target_type, .. }
            if column == "price" && target_type == "numeric(12,2)")
        );
        assert!(
            matches!(&drifts[3], Drift::Incompatible { column, hint, .. }
            if column == "flag" && hint.contains("tinyint1_as_boolean: false"))
        );
        assert_eq!(
            drifts[4],
            Drift::AddColumn {
                column: "added".to_owned(),
                ddl_type: "DATE".to_owned()
            }
        );
        assert!(matches!(&drifts[5], Drift::Incompatible { column, .. } if column == "at"));
        assert_eq!(
            drifts[6],
            Drift::MissingInSource {
                column: "gone".to_owned()
            }
        );

        let error = drift_error("shop.zoo", &drifts).unwrap();
        assert_eq!(error.kind(), crate::ErrorKind::SchemaDrift);
        let message = error.to_string();
        for needle in [
            "`id`",
            "`price`",
            "`flag`",
            "`at`",
            "exclude: [price]",
            "reload",
        ] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
        // A key column cannot be left out: its fix is a reload, never `exclude`.
        assert!(!message.contains("exclude: [id]"), "{message}");
        assert!(
            !message.contains("`name`") && !message.contains("`gone`"),
            "{message}"
        );
        assert!(drift_error("shop.zoo", &drifts[4..5]).is_none());
        assert!(matches!(
            drift_ddl("a", "b", &drifts, Warehouse::Redshift),
            Err(Error::SchemaDrift { .. })
        ));
    }

    #[test]
    fn json_drift_follows_json_in_redshift() {
        let mut schema = orders();
        let mut existing = redshift_orders();
        existing[4] = target("doc", "character varying", Some(65_535), None, None);
        let drifts = schema.drift(&existing, Warehouse::Redshift);
        assert!(
            matches!(&drifts[..], [Drift::Incompatible { column, hint, .. }]
            if column == "doc" && hint.contains("json_in_redshift")),
            "{drifts:?}"
        );
        schema.json_in_redshift = JsonTarget::Varchar;
        assert_eq!(schema.drift(&existing, Warehouse::Redshift), vec![]);
        existing[4].character_maximum_length = Some(1000);
        assert_eq!(
            schema.drift(&existing, Warehouse::Redshift),
            vec![Drift::WidenVarchar {
                column: "doc".to_owned(),
                from: 1000,
                to: 65_535
            }]
        );
    }

    #[test]
    fn narrower_varbyte_is_incompatible_because_redshift_cannot_widen_it() {
        let mut existing = redshift_orders();
        existing[5].character_maximum_length = Some(100);
        let drifts = orders().drift(&existing, Warehouse::Redshift);
        assert!(matches!(&drifts[..], [Drift::Incompatible { column, .. }] if column == "photo"));
    }

    #[test]
    fn drift_ddl_adds_and_widens() {
        let drifts = vec![
            Drift::AddColumn {
                column: "new col".to_owned(),
                ddl_type: "VARCHAR(40)".to_owned(),
            },
            Drift::WidenVarchar {
                column: "name".to_owned(),
                from: 100,
                to: 800,
            },
            Drift::MissingInSource {
                column: "gone".to_owned(),
            },
        ];
        assert_eq!(
            drift_ddl("Analytics", "orders", &drifts, Warehouse::Redshift).unwrap(),
            [
                "ALTER TABLE \"analytics\".\"orders\" ADD COLUMN \"new col\" VARCHAR(40)",
                "ALTER TABLE \"analytics\".\"orders\" ALTER COLUMN \"name\" TYPE VARCHAR(800)",
            ]
        );
        assert_eq!(
            drift_ddl("analytics", "orders", &drifts[1..], Warehouse::Postgres).unwrap(),
            ["ALTER TABLE \"analytics\".\"orders\" ALTER COLUMN \"name\" TYPE text"]
        );
    }

    #[test]
    fn type_arguments_parse_only_numbers() {
        assert_eq!(type_arguments("decimal(38,10)"), [38, 10]);
        assert_eq!(type_arguments("tinyint(1) unsigned"), [1]);
        assert_eq!(type_arguments("int"), Vec::<u64>::new());
        assert_eq!(type_arguments("enum('1')"), Vec::<u64>::new());
        assert_eq!(base_type("INT(10) unsigned zerofill"), "int");
    }
}
