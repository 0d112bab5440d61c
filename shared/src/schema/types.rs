//! The type table: every MySQL column type, what it becomes in Arrow, Redshift and PostgreSQL
//! ([`ColumnType`]), and how a column's `information_schema` row maps to one
//! ([`map_column_type`]).

use arrow_schema::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::TableId;

use super::{contains_name, JsonTarget, SchemaOptions, SourceColumn, Warehouse};

/// Redshift VARCHAR lengths are bytes, at most this many.
pub(super) const REDSHIFT_VARCHAR_MAX_OCTETS: u64 = 65_535;
/// Redshift VARBYTE lengths are bytes, at most this many (16 MiB).
pub(super) const REDSHIFT_VARBYTE_MAX_OCTETS: u64 = 16_777_216;
/// Arrow Decimal128 and Redshift DECIMAL both stop at 38 digits.
pub(super) const MAX_DECIMAL_PRECISION: u64 = 38;
/// `bigint unsigned` and `bit(64)` hold up to 18446744073709551615: 20 digits.
pub(super) const UNSIGNED_64_DIGITS: u8 = 20;
/// The longest TIME as text: `-838:59:59.000000`.
pub(super) const TIME_TEXT_MAX_OCTETS: u64 = 17;
/// LONGTEXT / LONGBLOB / JSON: what a column without a reported length may hold.
pub(super) const LONGTEXT_MAX_OCTETS: u64 = 4_294_967_295;
/// The most an integer, bit or year forced to text can print: `-9223372036854775808`.
pub(super) const INTEGER_TEXT_MAX_OCTETS: u64 = 20;
/// The most a float or double forced to text can print (`-1.7976931348623157e308` is 23).
pub(super) const FLOAT_TEXT_MAX_OCTETS: u64 = 32;
/// `9999-12-31 23:59:59.999999`.
pub(super) const DATETIME_TEXT_MAX_OCTETS: u64 = 26;
/// Source types that `as: text` can rescue but that have no mapping of their own.
pub(super) const SPATIAL_TYPES: &[&str] = &[
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
pub(super) const BINARY_TYPES: &[&str] = &[
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
];
pub(super) const TEXT_TYPES: &[&str] = &["tinytext", "text", "mediumtext", "longtext"];
pub(super) const INTEGER_TYPES: &[&str] = &[
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "integer",
    "bigint",
];

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
    pub(super) fn fingerprint_key(&self) -> String {
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

    pub(super) fn is_temporal(&self) -> bool {
        matches!(
            self,
            ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
        )
    }
}

pub(super) fn text_source_key(source: TextSource) -> &'static str {
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

pub(super) fn redshift_varchar_length(max_octets: u64) -> u64 {
    max_octets.clamp(1, REDSHIFT_VARCHAR_MAX_OCTETS)
}

pub(super) fn redshift_varbyte_length(max_octets: u64) -> u64 {
    max_octets.clamp(1, REDSHIFT_VARBYTE_MAX_OCTETS)
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
pub(super) fn forced_text_type(
    data_type: &str,
    column: &SourceColumn,
    is_json: bool,
) -> ColumnType {
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

pub(super) fn unsupported(table: &TableId, column: &SourceColumn, why: &str) -> Error {
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
pub(super) fn type_arguments(column_type: &str) -> Vec<u64> {
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
pub(super) fn is_tinyint1(column_type: &str) -> bool {
    base_type(column_type) == "tinyint" && type_arguments(&column_type.to_ascii_lowercase()) == [1]
}

/// `int(10) unsigned zerofill` → `int`.
pub(super) fn base_type(column_type: &str) -> String {
    column_type
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub(super) fn decimal_arguments(column: &SourceColumn) -> (u64, u64) {
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

pub(super) fn bit_width(column: &SourceColumn) -> u8 {
    let width = type_arguments(&column.column_type.to_ascii_lowercase())
        .first()
        .copied()
        .or(column.numeric_precision)
        .unwrap_or(1);
    u8::try_from(width).unwrap_or(u8::MAX)
}
