//! The row fingerprint each engine computes for itself: every column turned into one canonical
//! text that MySQL, PostgreSQL and Redshift all print the same way for the same loaded value,
//! MD5 over a row's texts, and the segment and row queries built on them. Only functions the
//! engines document are used; for Redshift: `MD5`, `SUBSTRING`, `STRTOL`, `TO_CHAR`, `LOG`,
//! `POWER`, `ROUND`, `FLOOR`, `ABS`, `FROM_VARBYTE`, `COALESCE`, `||` (Amazon Redshift Database
//! Developer Guide, "SQL functions reference").
//!
//! The canonical text of a value, by the column's mapped type:
//!
//! | type | text |
//! |---|---|
//! | integers, decimals, bits | the number's digits (decimals at the column's scale) |
//! | boolean | `1` / `0` |
//! | float, double | `<mantissa>e<exponent>`: 6 (float) or 15 (double) significant digits, `0` for zero and for magnitudes below 1e-300 |
//! | date | `YYYY-MM-DD` |
//! | datetime, timestamp | `YYYY-MM-DD HH:MM:SS.ffffff` (timestamps in UTC) |
//! | text (and TIME, ENUM, SET, forced text) | the UTF-8 text after the table's `nul_in_text` policy, as `<bytes>:<text>` for columns of at most 1 KiB (up to 16 KiB of them per row), else its MD5 |
//! | binary | MD5 of the lowercase hex of its first 32,767 bytes, `:`, its length in bytes (a Redshift VARCHAR holds at most 65,535 bytes, so no engine hexes more) |
//! | JSON in `jsonb` or `SUPER` | `j`: only NULL or not is compared (each engine reorders and respaces documents its own way) |
//!
//! NULL is `N`; a row's text joins its columns' texts with `|`. Only an inline text can hold a
//! `|`, and its byte count says where it ends, so one row text never reads as another.

use crate::naming;
use crate::schema::{Column, ColumnType, JsonTarget, NulPolicy, TableSchema, Warehouse};

/// Where a fingerprint is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The MySQL/MariaDB source.
    Mysql,
    /// A PostgreSQL target.
    Postgres,
    /// A Redshift target.
    Redshift,
}

impl From<Warehouse> for Engine {
    fn from(warehouse: Warehouse) -> Self {
        match warehouse {
            Warehouse::Postgres => Engine::Postgres,
            Warehouse::Redshift => Engine::Redshift,
        }
    }
}

/// Hex digits of a key's MD5 added at each level of segmentation: 4096 segments per level.
pub const SEGMENT_DIGITS: usize = 3;

/// How one table's rows are fingerprinted on both sides.
#[derive(Debug, Clone)]
pub struct Fingerprint<'s> {
    columns: Vec<&'s Column>,
    key: Vec<&'s Column>,
    nul_in_text: NulPolicy,
    json_as_text: bool,
    /// Text columns written into the row text whole (`<bytes>:<text>`) instead of as their MD5:
    /// short ones, while the row text stays far below a Redshift VARCHAR's 65,535 bytes.
    inline: Vec<String>,
    target: Engine,
}

impl<'s> Fingerprint<'s> {
    /// The fingerprint of `schema`'s columns, rows identified by `key` (source names, each an
    /// extracted column), loaded into `target` with the table's `nul_in_text` policy.
    pub fn new(
        schema: &'s TableSchema,
        key: &[String],
        nul_in_text: NulPolicy,
        target: Warehouse,
    ) -> Option<Self> {
        let key = key
            .iter()
            .map(|name| schema.column(name))
            .collect::<Option<Vec<_>>>()?;
        let mut budget = INLINE_TEXT_BUDGET;
        let inline = schema
            .columns
            .iter()
            .filter_map(|column| match column.ty {
                ColumnType::Text { max_octets, .. }
                    if max_octets <= INLINE_TEXT_OCTETS && max_octets <= budget =>
                {
                    budget -= max_octets;
                    Some(column.name.clone())
                }
                _ => None,
            })
            .collect();
        Some(Fingerprint {
            columns: schema.columns.iter().collect(),
            key,
            inline,
            nul_in_text,
            json_as_text: target == Warehouse::Redshift
                && schema.json_in_redshift == JsonTarget::Varchar,
            target: target.into(),
        })
    }

    /// The columns compared, in order.
    pub fn columns(&self) -> &[&'s Column] {
        &self.columns
    }

    /// Counts and checksums per segment: `segment, rows, checksum` for every non-empty segment
    /// of `depth` levels (`depth * SEGMENT_DIGITS` hex digits of the key's MD5), only within
    /// the `within` segments of the level above when given.
    pub fn segments_query(
        &self,
        engine: Engine,
        table: &str,
        depth: usize,
        within: Option<&[String]>,
    ) -> String {
        let digits = depth * SEGMENT_DIGITS;
        let filter = within
            .map(|segments| {
                format!(
                    "\nWHERE SUBSTRING(tm_key_hash, 1, {}) IN ({})",
                    digits - SEGMENT_DIGITS,
                    literals(engine, segments)
                )
            })
            .unwrap_or_default();
        format!(
            "SELECT SUBSTRING(tm_key_hash, 1, {digits}) AS tm_segment, COUNT(*) AS tm_rows, {} AS tm_checksum\nFROM (\n    SELECT {} AS tm_key_hash, {} AS tm_row_hash\n    FROM {table}\n) AS tm_hashed{filter}\nGROUP BY 1",
            checksum(engine),
            self.key_hash(engine),
            self.row_hash(engine),
        )
    }

    /// The rows of the given segments (`depth` levels deep): each key column's canonical text,
    /// the row's MD5, and the `cursor` expression when given (the source's cursor, as text).
    pub fn rows_query(
        &self,
        engine: Engine,
        table: &str,
        depth: usize,
        segments: &[String],
        cursor: Option<&str>,
    ) -> String {
        let cursor = cursor
            .map(|expression| format!(", {expression} AS tm_cursor"))
            .unwrap_or_default();
        format!(
            "SELECT * FROM (\n    SELECT {}, {} AS tm_key_hash, {} AS tm_row_hash{cursor}\n    FROM {table}\n) AS tm_hashed\nWHERE SUBSTRING(tm_key_hash, 1, {}) IN ({})",
            self.key_list(engine),
            self.key_hash(engine),
            self.row_hash(engine),
            depth * SEGMENT_DIGITS,
            literals(engine, segments),
        )
    }

    /// Every column's canonical text for the rows whose key texts are `keys` (each as
    /// [`Fingerprint::rows_query`] returns them): the key texts first, then one text per column.
    pub fn columns_query(&self, engine: Engine, table: &str, keys: &[Vec<String>]) -> String {
        let key_texts: Vec<String> = keys.iter().map(|key| key.join("|")).collect();
        let fields: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| format!("{} AS tm_c{i}", self.field(engine, column)))
            .collect();
        format!(
            "SELECT {}, {}\nFROM {table}\nWHERE {} IN ({})",
            self.key_list(engine),
            fields.join(", "),
            self.joined_key_text(engine),
            literals(engine, &key_texts),
        )
    }

    /// Each key column's canonical text, as `tm_k0, tm_k1, …`: how rows name their key.
    fn key_list(&self, engine: Engine) -> String {
        let keys: Vec<String> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, column)| format!("{} AS tm_k{i}", self.key_text(engine, column)))
            .collect();
        keys.join(", ")
    }

    /// A row's key as one text ([`key_identity`]), for the rows of the table in scope: how a
    /// deletion run names the target rows it removes.
    pub fn key_identity_sql(&self, engine: Engine) -> String {
        match self.key.as_slice() {
            [only] => self.key_text(engine, only),
            composite => {
                let parts: Vec<String> = composite
                    .iter()
                    .map(|column| {
                        let text = self.key_text(engine, column);
                        join_plain(
                            engine,
                            &[octet_length(engine, &text), "':'".to_owned(), text],
                        )
                    })
                    .collect();
                join(engine, &parts)
            }
        }
    }

    /// MD5 of the row's column texts joined by `|`.
    fn row_hash(&self, engine: Engine) -> String {
        let fields: Vec<String> = self
            .columns
            .iter()
            .map(|column| self.field(engine, column))
            .collect();
        format!("MD5({})", join(engine, &fields))
    }

    /// MD5 of the key columns' texts joined by `|`: segments follow it.
    fn key_hash(&self, engine: Engine) -> String {
        format!("MD5({})", self.joined_key_text(engine))
    }

    fn joined_key_text(&self, engine: Engine) -> String {
        let keys: Vec<String> = self
            .key
            .iter()
            .map(|column| self.key_text(engine, column))
            .collect();
        join(engine, &keys)
    }

    /// A key column's canonical text, readable (text keys as themselves, not hashed); `N` for
    /// NULL.
    fn key_text(&self, engine: Engine, column: &Column) -> String {
        format!("COALESCE({}, 'N')", self.canonical(engine, column))
    }

    /// A column's part of the row text: its canonical text (hashed for text, binary and JSON
    /// text), `N` for NULL.
    fn field(&self, engine: Engine, column: &Column) -> String {
        let text = self.canonical(engine, column);
        if let ColumnType::Binary { .. } = column.ty {
            let length = octet_length(engine, &reference(engine, column));
            let parts = [format!("MD5({text})"), "':'".to_owned(), length];
            format!("COALESCE({}, 'N')", join_plain(engine, &parts))
        } else if self.inline.contains(&column.name) {
            let parts = [octet_length(engine, &text), "':'".to_owned(), text];
            format!("COALESCE({}, 'N')", join_plain(engine, &parts))
        } else if self.hashed(column) {
            format!("COALESCE(MD5({text}), 'N')")
        } else {
            format!("COALESCE({text}, 'N')")
        }
    }

    fn hashed(&self, column: &Column) -> bool {
        match column.ty {
            ColumnType::Text { .. } => true,
            ColumnType::Json => self.json_as_text,
            _ => false,
        }
    }

    /// The column's canonical text, NULL where the loaded value is NULL.
    fn canonical(&self, engine: Engine, column: &Column) -> String {
        match engine {
            Engine::Mysql => self.mysql_text(column),
            Engine::Postgres | Engine::Redshift => self.warehouse_text(engine, column),
        }
    }

    fn mysql_text(&self, column: &Column) -> String {
        let c = reference(Engine::Mysql, column);
        let base = column
            .column_type
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match &column.ty {
            ColumnType::Boolean { .. } => {
                format!("CASE WHEN {c} IS NULL THEN NULL WHEN {c} <> 0 THEN '1' ELSE '0' END")
            }
            ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64 if base == "year" => {
                format!("CAST({c} + 0 AS CHAR)")
            }
            ColumnType::Int16
            | ColumnType::Int32
            | ColumnType::Int64
            | ColumnType::Decimal { .. } => format!("CAST({c} AS CHAR)"),
            ColumnType::Bits { .. } => format!("CAST({c} + 0 AS CHAR)"),
            ColumnType::Float32 => float_text(Engine::Mysql, &c, FLOAT32_DIGITS),
            ColumnType::Float64 => float_text(Engine::Mysql, &c, FLOAT64_DIGITS),
            ColumnType::Date => mysql_date(&c, "%Y-%m-%d"),
            ColumnType::Timestamp | ColumnType::TimestampTz => {
                // The session is in UTC (`source::connect`), as extraction reads TIMESTAMP.
                mysql_date(&c, "%Y-%m-%d %H:%i:%s.%f")
            }
            ColumnType::Text { .. } => {
                // As extraction reads it: TIME, spatial and other forced text through MySQL's
                // own conversion.
                let read = column.mysql_select_expr();
                let text = format!("CONVERT({read} USING utf8mb4) COLLATE utf8mb4_bin");
                match self.nul_in_text {
                    NulPolicy::Fail => text,
                    NulPolicy::Strip => format!("REPLACE({text}, CHAR(0 USING utf8mb4), '')"),
                    NulPolicy::Replace => {
                        format!("REPLACE({text}, CHAR(0 USING utf8mb4), _utf8mb4 X'EFBFBD')")
                    }
                }
            }
            ColumnType::Json if self.json_as_text => {
                format!("CONVERT({c} USING utf8mb4) COLLATE utf8mb4_bin")
            }
            ColumnType::Json => format!("CASE WHEN {c} IS NULL THEN NULL ELSE 'j' END"),
            ColumnType::Binary { .. } => {
                format!("LOWER(HEX(SUBSTRING({c}, 1, {BINARY_PREFIX_BYTES})))")
            }
        }
    }

    fn warehouse_text(&self, engine: Engine, column: &Column) -> String {
        let c = reference(engine, column);
        match &column.ty {
            ColumnType::Boolean { .. } => {
                format!("CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN '1' ELSE '0' END")
            }
            ColumnType::Int16
            | ColumnType::Int32
            | ColumnType::Int64
            | ColumnType::Decimal { .. }
            | ColumnType::Bits { .. } => format!("CAST({c} AS VARCHAR)"),
            ColumnType::Float32 => float_text(engine, &c, FLOAT32_DIGITS),
            ColumnType::Float64 => float_text(engine, &c, FLOAT64_DIGITS),
            ColumnType::Date => format!("TO_CHAR({c}, 'YYYY-MM-DD')"),
            ColumnType::Timestamp => format!("TO_CHAR({c}, 'YYYY-MM-DD HH24:MI:SS.US')"),
            ColumnType::TimestampTz => {
                format!("TO_CHAR({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            ColumnType::Text { .. } => c,
            ColumnType::Json if self.json_as_text => c,
            ColumnType::Json => format!("CASE WHEN {c} IS NULL THEN NULL ELSE 'j' END"),
            ColumnType::Binary { .. } => {
                let prefix = format!("SUBSTRING({c}, 1, {BINARY_PREFIX_BYTES})");
                match engine {
                    Engine::Redshift => format!("FROM_VARBYTE({prefix}, 'hex')"),
                    _ => format!("ENCODE({prefix}, 'hex')"),
                }
            }
        }
    }

    /// The target engine.
    pub fn target(&self) -> Engine {
        self.target
    }
}

/// A key as one text, from its columns' canonical texts (as [`Fingerprint::rows_query`] returns
/// them): the text itself for a one-column key; for a composite key each text as
/// `<bytes>:<text>`, joined by `|`, so that no two keys give one text whatever they hold.
/// [`Fingerprint::key_identity_sql`] computes the same text in the warehouse.
pub fn key_identity(parts: &[String]) -> String {
    match parts {
        [only] => only.clone(),
        composite => composite
            .iter()
            .map(|text| format!("{}:{text}", text.len()))
            .collect::<Vec<_>>()
            .join("|"),
    }
}

/// Text columns of at most this many bytes are written into the row text whole, not hashed on
/// their own: an MD5 per value is most of a fingerprint's cost in MariaDB.
const INLINE_TEXT_OCTETS: u64 = 1_024;
/// At most this many bytes of inline text per row.
const INLINE_TEXT_BUDGET: u64 = 16 * 1_024;

/// Bytes of a binary value whose hex is hashed: the hex of more would not fit a Redshift VARCHAR
/// (65,535 bytes, "Character types", https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html).
const BINARY_PREFIX_BYTES: usize = 32_767;

/// Significant digits compared of a `float` (single precision holds 6 to 9).
const FLOAT32_DIGITS: i32 = 6;
/// Significant digits compared of a `double` (double precision holds 15 to 17).
const FLOAT64_DIGITS: i32 = 15;

/// `<mantissa>e<exponent>` with `digits` significant digits: the same integer arithmetic on the
/// same IEEE double in every engine.
fn float_text(engine: Engine, c: &str, digits: i32) -> String {
    let log = match engine {
        Engine::Mysql => "LOG10",
        // PostgreSQL's and Redshift's one-argument LOG is base 10.
        Engine::Postgres | Engine::Redshift => "LOG",
    };
    let (integer, text) = match engine {
        Engine::Mysql => ("SIGNED", "CHAR"),
        Engine::Postgres | Engine::Redshift => ("BIGINT", "VARCHAR"),
    };
    let exponent = format!("FLOOR({log}(ABS({c})))");
    let mantissa = format!(
        "CAST(CAST(ROUND({c} / POWER(10, {exponent} - {})) AS {integer}) AS {text})",
        digits - 1
    );
    let exponent_text = format!("CAST(CAST({exponent} AS {integer}) AS {text})");
    format!(
        "CASE WHEN {c} IS NULL THEN NULL WHEN ABS({c}) < 1e-300 THEN '0' ELSE {} END",
        join_plain(engine, &[mantissa, "'e'".to_owned(), exponent_text])
    )
}

/// The column as `engine` names it: the source name in MySQL, the warehouse name elsewhere.
fn reference(engine: Engine, column: &Column) -> String {
    match engine {
        Engine::Mysql => naming::quote_mysql(&column.name),
        Engine::Postgres | Engine::Redshift => naming::quote_warehouse(&column.target_name),
    }
}

/// The byte length of `expression`, as text.
fn octet_length(engine: Engine, expression: &str) -> String {
    match engine {
        Engine::Mysql => format!("CAST(LENGTH({expression}) AS CHAR)"),
        Engine::Postgres | Engine::Redshift => {
            format!("CAST(OCTET_LENGTH({expression}) AS VARCHAR)")
        }
    }
}

/// A MySQL date or time printed by `format`; NULL for a zero month or day, which extraction
/// loads as NULL.
fn mysql_date(c: &str, format: &str) -> String {
    format!(
        "CASE WHEN {c} IS NULL OR MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0 THEN NULL ELSE DATE_FORMAT({c}, '{format}') END"
    )
}

/// `parts` joined with `|` between them.
fn join(engine: Engine, parts: &[String]) -> String {
    let mut with_bars = Vec::with_capacity(parts.len() * 2);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            with_bars.push("'|'".to_owned());
        }
        with_bars.push(part.clone());
    }
    join_plain(engine, &with_bars)
}

/// `parts` concatenated: MySQL's `CONCAT`, else `||`.
fn join_plain(engine: Engine, parts: &[String]) -> String {
    match (engine, parts) {
        (_, [only]) => only.clone(),
        (Engine::Mysql, _) => format!("CONCAT({})", parts.join(", ")),
        _ => format!("({})", parts.join(" || ")),
    }
}

/// The sum of the row hashes' last 15 hex digits (60 bits), exact: MySQL sums into DECIMAL,
/// PostgreSQL's `sum(bigint)` is `numeric`, Redshift's is cast to DECIMAL(38, 0) first.
fn checksum(engine: Engine) -> &'static str {
    match engine {
        Engine::Mysql => "SUM(CAST(CONV(SUBSTRING(tm_row_hash, 18, 15), 16, 10) AS UNSIGNED))",
        Engine::Postgres => "SUM(('x' || SUBSTRING(tm_row_hash, 18, 15))::BIT(60)::BIGINT)",
        Engine::Redshift => {
            "SUM(CAST(STRTOL(SUBSTRING(tm_row_hash, 18, 15), 16) AS DECIMAL(38, 0)))"
        }
    }
}

/// SQL string literals, comma-separated: quotes doubled, and for MySQL (whose strings take
/// backslash escapes) backslashes too; PostgreSQL's and Redshift's standard strings take none.
fn literals(engine: Engine, values: &[String]) -> String {
    values
        .iter()
        .map(|value| {
            let quoted = value.replace('\'', "''");
            match engine {
                Engine::Mysql => format!("'{}'", quoted.replace('\\', "\\\\")),
                Engine::Postgres | Engine::Redshift => format!("'{quoted}'"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
