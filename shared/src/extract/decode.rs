//! Binary-protocol MySQL values → Arrow arrays, one column type at a time, and the exact text of
//! cursor values.
//!
//! Follows the type table of [`crate::schema::map_column_type`] and nothing else: every decision
//! here is "how does the value MySQL sends for this `ColumnType` become that Arrow value". Exact
//! on purpose: decimals are parsed from MySQL's own digits (never through a float), timestamps
//! keep their microseconds, unsigned 64-bit values keep every digit. Zero dates (and dates MySQL
//! stores with a zero or impossible month or day) have no Arrow value: they become NULL and are
//! counted, never silently. For a Redshift target, a value longer than its column holds is
//! refused, cut at a character boundary or made NULL, as the table's `oversize_in_redshift`
//! says — counted too — so that a run never commits a file Redshift cannot load.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use mysql_async::Value;

use crate::cursor::{epoch_days, hex, Cursor, CursorTimestamp};
use crate::error::{Error, Result};
use crate::parquet_sink::AlteredValues;
use crate::schema::{Column, ColumnType, NulPolicy, OversizePolicy, TableSchema};

/// Parses MySQL's decimal text (`-123.4500`) into the unscaled integer of `Decimal128(_, scale)`.
/// Fails rather than round when the text has more fraction digits than `scale`.
pub(crate) fn parse_decimal(text: &[u8], scale: i8) -> std::result::Result<i128, String> {
    let shown = || String::from_utf8_lossy(text).into_owned();
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    let scale = usize::try_from(scale).map_err(|_| format!("negative scale for `{}`", shown()))?;
    if whole.is_empty() && fraction.is_empty() || fraction.len() > scale {
        return Err(format!("`{}` is not a decimal of scale {scale}", shown()));
    }
    let mut value: i128 = 0;
    let padding = scale - fraction.len();
    for &b in whole.iter().chain(fraction) {
        if !b.is_ascii_digit() {
            return Err(format!("`{}` is not a decimal", shown()));
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(b - b'0')))
            .ok_or_else(|| format!("`{}` does not fit 38 digits", shown()))?;
    }
    for _ in 0..padding {
        value = value
            .checked_mul(10)
            .ok_or_else(|| format!("`{}` does not fit 38 digits", shown()))?;
    }
    Ok(if negative { -value } else { value })
}

/// An unsigned big-endian number (how the binary protocol sends BIT(n)).
fn bits_value(bytes: &[u8]) -> std::result::Result<u64, String> {
    if bytes.len() > 8 {
        return Err(format!("a BIT value of {} bytes", bytes.len()));
    }
    Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// MySQL's text form of a TIME value: `[-]HH:MM:SS[.ffffff]`, hours beyond 24 allowed.
fn time_text(
    negative: bool,
    days: u32,
    hours: u8,
    minutes: u8,
    seconds: u8,
    micros: u32,
    decimals: usize,
) -> String {
    let hours = u64::from(days) * 24 + u64::from(hours);
    let sign = if negative { "-" } else { "" };
    let mut text = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
    if decimals > 0 {
        let fraction = format!("{micros:06}");
        text.push('.');
        text.push_str(&fraction[..decimals.min(6)]);
    }
    text
}

/// The fraction digits a `time(n)` / `datetime(n)` column type declares.
fn declared_fraction_digits(column_type: &str) -> usize {
    column_type
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(inside, _)| inside.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

/// One cursor value of a key column, comparable the way the key orders for integer keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KeyValue {
    /// Every integer-valued key (ints, unsigned, bits).
    Int(i128),
    /// Every other key, as its exact cursor text.
    Text(String),
}

impl KeyValue {
    fn text(&self) -> String {
        match self {
            KeyValue::Int(v) => v.to_string(),
            KeyValue::Text(t) => t.clone(),
        }
    }
}

/// Where a row sits in cursor order: its timestamp cursor value and key values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct RowPosition {
    pub ts: Option<CursorTimestamp>,
    pub key: Vec<KeyValue>,
}

impl RowPosition {
    /// The manifest form: exact text.
    pub fn to_cursor(&self) -> Cursor {
        Cursor {
            timestamp: self.ts.map(|ts| ts.to_string()),
            key: self.key.iter().map(KeyValue::text).collect(),
        }
    }
}

/// The cursor form of a MySQL DATE/DATETIME/TIMESTAMP value, field for field as the binary
/// protocol sends it.
pub(crate) fn timestamp(
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    micro: u32,
) -> CursorTimestamp {
    CursorTimestamp {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micro,
    }
}

/// A row's timestamp cursor value.
pub(crate) fn cursor_timestamp(column: &Column, value: Option<&Value>) -> Result<CursorTimestamp> {
    match value {
        Some(Value::Date(y, mo, d, h, mi, s, us)) => Ok(timestamp(*y, *mo, *d, *h, *mi, *s, *us)),
        Some(Value::NULL) | None => Err(Error::InvalidRequest(format!(
            "cursor column `{}` returned NULL: such rows cannot be paged by it",
            column.name
        ))),
        Some(other) => Err(Error::Schema(format!(
            "cursor column `{}` must be DATETIME, TIMESTAMP or DATE, but MySQL sent {other:?}",
            column.name
        ))),
    }
}

/// A row's key cursor value.
pub(crate) fn cursor_key(column: &Column, value: Option<&Value>) -> Result<KeyValue> {
    let bad = |what: String| Error::Schema(format!("key column `{}`: {what}", column.name));
    Ok(match value {
        Some(Value::Int(v)) => KeyValue::Int(i128::from(*v)),
        Some(Value::UInt(v)) => KeyValue::Int(i128::from(*v)),
        Some(Value::Bytes(bytes)) => match &column.ty {
            ColumnType::Bits { .. } | ColumnType::Boolean { .. } => {
                KeyValue::Int(i128::from(bits_value(bytes).map_err(bad)?))
            }
            ColumnType::Binary { .. } => KeyValue::Text(hex(bytes)),
            _ => KeyValue::Text(
                String::from_utf8(bytes.clone())
                    .map_err(|_| bad("a value that is not UTF-8".to_owned()))?,
            ),
        },
        Some(Value::Date(y, mo, d, h, mi, s, us)) => {
            let at = timestamp(*y, *mo, *d, *h, *mi, *s, *us);
            KeyValue::Text(match column.ty {
                ColumnType::Date => at.date_text(),
                _ => at.to_string(),
            })
        }
        Some(Value::Double(v)) => KeyValue::Text(v.to_string()),
        Some(Value::Float(v)) => KeyValue::Text(v.to_string()),
        Some(Value::Time(..)) => return Err(bad("TIME keys are not supported".to_owned())),
        Some(Value::NULL) | None => {
            return Err(bad(
                "a row has NULL in it; rows are paged and merged by the key, so it cannot be NULL"
                    .to_owned(),
            ))
        }
    })
}

/// The longest prefix of `text` of at most `max_octets` bytes that ends on a character boundary:
/// a multi-byte character is never split.
pub(crate) fn truncate_at_char_boundary(text: &str, max_octets: usize) -> &str {
    if text.len() <= max_octets {
        return text;
    }
    let mut end = max_octets;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

enum Builder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

/// How one column holds its values to what its Redshift column can take.
#[derive(Debug, Clone, Copy)]
struct OversizeRule {
    /// The most bytes one value may have.
    max_octets: usize,
    /// What becomes of a longer value.
    policy: OversizePolicy,
    /// A key column: its values are never cut or nulled (two keys could become one).
    key: bool,
}

struct ColumnDecoder {
    name: String,
    ty: ColumnType,
    nullable: bool,
    fraction_digits: usize,
    oversize: Option<OversizeRule>,
    /// For text columns (where a NUL byte cannot go): what becomes of one.
    nul: Option<NulPolicy>,
    builder: Builder,
}

/// How values that the warehouse cannot hold as they are get written: longer than their
/// Redshift column (`oversize`, for a Redshift target) or holding a NUL byte (`nul`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueRules {
    /// The table's `oversize_in_redshift` when the target is Redshift.
    pub oversize: Option<OversizePolicy>,
    /// The table's `nul_in_text`.
    pub nul: NulPolicy,
}

/// Builds one RecordBatch at a time from rows, in the schema's column order.
pub(crate) struct BatchBuilder {
    table: String,
    /// The table's `oversize_in_redshift` for whole rows: `Some` when the target is Redshift,
    /// whose COPY reads rows of at most [`MAX_COPY_ROW_BYTES`].
    row_policy: Option<OversizePolicy>,
    schema: SchemaRef,
    columns: Vec<ColumnDecoder>,
    rows: usize,
    value_bytes: usize,
    altered: AlteredValues,
}

impl BatchBuilder {
    /// Builders for every column of `schema`, each with room for `capacity` rows. With
    /// `oversize` (the target is Redshift), every value is held to its Redshift column's length
    /// ([`ColumnType::redshift_max_value_octets`]) by that policy, except that values of
    /// `key_columns` (source names) are never cut or nulled.
    pub fn new(
        schema: &TableSchema,
        capacity: usize,
        rules: ValueRules,
        key_columns: &[String],
    ) -> Result<Self> {
        let mut columns = Vec::with_capacity(schema.columns.len());
        for column in &schema.columns {
            let key = key_columns
                .iter()
                .any(|k| schema.column(k).is_some_and(|c| c.name == column.name));
            let rule = rules.oversize.zip(column.ty.redshift_max_value_octets());
            let builder = new_builder(&column.ty, capacity)?;
            columns.push(ColumnDecoder {
                name: column.name.clone(),
                ty: column.ty.clone(),
                nullable: column.nullable,
                fraction_digits: declared_fraction_digits(&column.column_type),
                oversize: rule.map(|(policy, max_octets)| OversizeRule {
                    max_octets: usize::try_from(max_octets).unwrap_or(usize::MAX),
                    policy: if key { OversizePolicy::Fail } else { policy },
                    key,
                }),
                // A key value is never changed (two keys could become one).
                nul: matches!(builder, Builder::Utf8(_)).then_some(if key {
                    NulPolicy::Fail
                } else {
                    rules.nul
                }),
                builder,
            });
        }
        Ok(BatchBuilder {
            table: schema.table.to_string(),
            row_policy: rules.oversize,
            schema: schema.arrow_schema(),
            columns,
            rows: 0,
            value_bytes: 0,
            altered: AlteredValues::default(),
        })
    }

    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of variable-length values appended since the last finish.
    pub fn value_bytes(&self) -> usize {
        self.value_bytes
    }

    /// Appends one row; `values[i]` is the value of schema column `i`. `row` describes the row
    /// (its key or cursor) for the error that refuses a value too long for Redshift.
    pub fn append(
        &mut self,
        mut values: Vec<Option<Value>>,
        row: impl FnOnce() -> String,
    ) -> Result<()> {
        if values.len() != self.columns.len() {
            return Err(Error::Schema(format!(
                "the query returned {} columns, the schema has {}",
                values.len(),
                self.columns.len()
            )));
        }
        if let Some(policy) = self.row_policy.filter(|p| *p != OversizePolicy::Fail) {
            self.hold_row_to_copy_limit(&mut values, policy);
        }
        // Each value is checked against its column first (so that one too long is named), then
        // the row against COPY's limit.
        let mut row_bytes = 0;
        for (decoder, value) in self.columns.iter_mut().zip(values) {
            let outcome = decoder.append(value.unwrap_or(Value::NULL));
            match outcome {
                Ok(Appended::Value(bytes)) => row_bytes += bytes,
                Ok(Appended::ZeroDate) => self.altered.zero_dates += 1,
                Ok(Appended::Truncated(bytes)) => {
                    row_bytes += bytes;
                    self.altered.oversize_truncated += 1;
                }
                Ok(Appended::OversizeNulled) => self.altered.oversize_nulled += 1,
                Ok(Appended::NulAltered(bytes)) => {
                    row_bytes += bytes;
                    self.altered.nul_altered += 1;
                }
                Err(Refusal::Nul) => {
                    return Err(Error::Schema(format!(
                        "`{}`: column `{}` holds a NUL byte (U+0000) at {}, which PostgreSQL refuses in text and Redshift's COPY treats as a terminator; set `nul_in_text: strip` (remove it) or `nul_in_text: replace` (U+FFFD) in the table's config, or clean the value in the source; nothing was committed",
                        self.table,
                        decoder.name,
                        row()
                    )))
                }
                Err(Refusal::Invalid(reason)) => {
                    return Err(Error::Schema(format!(
                        "column `{}`: {reason}",
                        decoder.name
                    )))
                }
                Err(Refusal::Oversize { octets, rule }) => {
                    return Err(oversize_error(&self.table, decoder, octets, rule, row()))
                }
            }
        }
        self.value_bytes += row_bytes;
        if let Some(octets) = Some(row_bytes)
            .filter(|&octets| self.row_policy.is_some() && octets > MAX_COPY_ROW_BYTES)
        {
            let fix = if self.row_policy == Some(OversizePolicy::Fail) {
                "set `oversize_in_redshift: null` or `truncate` in the table's config (the row's largest values outside the key then become NULL until it fits), or leave its largest columns out with `columns: { exclude: [...] }`"
            } else {
                "its key and NOT NULL columns alone are larger: leave some of them out with `columns: { exclude: [...] }`"
            };
            return Err(Error::Schema(format!(
                "`{}`: the row with {} is {octets} bytes, and Redshift's COPY reads rows of at most {MAX_COPY_ROW_BYTES} bytes (4 MB), so the run stops before anything is committed or loaded; {fix}, then sync again",
                self.table,
                row()
            )));
        }
        self.rows += 1;
        Ok(())
    }

    /// Holds a row to COPY's 4 MB under `null` or `truncate`: its largest values outside the key
    /// (of nullable columns) become NULL, largest first, until it fits; each is counted as
    /// nulled. A row that still does not fit (its key and NOT NULL columns alone are larger)
    /// fails [`BatchBuilder::append`]'s check of the row.
    fn hold_row_to_copy_limit(&mut self, values: &mut [Option<Value>], policy: OversizePolicy) {
        // A value's size once its column's own limit applied it.
        let sizes: Vec<usize> = values
            .iter()
            .zip(&self.columns)
            .map(|(value, column)| {
                let size = value_size(value);
                match column.oversize {
                    Some(rule) if size > rule.max_octets && policy == OversizePolicy::Null => 0,
                    Some(rule) => size.min(rule.max_octets),
                    None => size,
                }
            })
            .collect();
        let mut total: usize = sizes.iter().sum();
        if total <= MAX_COPY_ROW_BYTES {
            return;
        }
        let mut candidates: Vec<usize> = (0..values.len())
            .filter(|&i| {
                let column = &self.columns[i];
                column.nullable && !column.oversize.is_some_and(|rule| rule.key)
            })
            .collect();
        candidates.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        for i in candidates {
            if total <= MAX_COPY_ROW_BYTES {
                break;
            }
            total -= sizes[i];
            values[i] = None;
            self.altered.oversize_nulled += 1;
        }
    }

    /// The batch of every row appended since the last finish, and the values altered in it.
    /// The builders are ready for the next batch.
    pub fn finish(&mut self) -> Result<(RecordBatch, AlteredValues)> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| c.builder.finish())
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|err| Error::Schema(format!("building a record batch: {err}")))?;
        let altered = std::mem::take(&mut self.altered);
        self.rows = 0;
        self.value_bytes = 0;
        Ok((batch, altered))
    }
}

/// The largest row Redshift's COPY reads: "The maximum size of a single input row from any source
/// is 4 MB" (COPY usage notes, https://docs.aws.amazon.com/redshift/latest/dg/r_COPY_usage_notes.html).
/// A row's size is the sum of its values' sizes (text and binary bytes, 8 for any other value).
pub(crate) const MAX_COPY_ROW_BYTES: usize = 4 * 1024 * 1024;

/// A value's size toward [`MAX_COPY_ROW_BYTES`].
fn value_size(value: &Option<Value>) -> usize {
    match value {
        Some(Value::Bytes(bytes)) => bytes.len(),
        Some(Value::NULL) | None => 0,
        Some(_) => 8,
    }
}

/// The error that stops a run at a value its Redshift column cannot hold, with the fix.
fn oversize_error(
    table: &str,
    column: &ColumnDecoder,
    octets: usize,
    rule: OversizeRule,
    row: String,
) -> Error {
    let name = &column.name;
    let fix = if rule.key {
        "it is a key column, whose values are never cut or made NULL (two keys could become \
         one): shorten the value in the source, or choose other `key_columns`"
            .to_owned()
    } else {
        format!(
            "set `oversize_in_redshift: truncate` (cut at a character boundary) or \
             `oversize_in_redshift: null` in the table's config, or leave the column out with \
             `columns: {{ exclude: [{name}] }}`, then sync again"
        )
    };
    Error::Schema(format!(
        "`{table}`: the value of column `{name}` in the row with {row} is {octets} bytes, but \
         Redshift holds at most {} bytes in that column, so the run stops before anything is \
         committed or loaded; {fix}",
        rule.max_octets
    ))
}

fn new_builder(ty: &ColumnType, capacity: usize) -> Result<Builder> {
    let decimal = |precision: u8, scale: i8| {
        Decimal128Builder::with_capacity(capacity)
            .with_precision_and_scale(precision, scale)
            .map(Builder::Decimal)
            .map_err(|err| Error::Schema(format!("decimal({precision}, {scale}): {err}")))
    };
    Ok(match ty {
        ColumnType::Boolean { .. } => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
        ColumnType::Int16 => Builder::Int16(Int16Builder::with_capacity(capacity)),
        ColumnType::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
        ColumnType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
        ColumnType::Bits { width } if *width < 64 => {
            Builder::Int64(Int64Builder::with_capacity(capacity))
        }
        ColumnType::Bits { .. } => decimal(20, 0)?,
        ColumnType::Decimal { precision, scale } => decimal(*precision, *scale)?,
        ColumnType::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
        ColumnType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
        ColumnType::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
        ColumnType::Timestamp => {
            Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
        }
        ColumnType::TimestampTz => Builder::Timestamp(
            TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
        ),
        ColumnType::Text { .. } | ColumnType::Json => {
            Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
        }
        ColumnType::Binary { .. } => {
            Builder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16))
        }
    })
}

impl Builder {
    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Boolean(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
        }
    }
}

/// What appending one value did.
enum Appended {
    /// A value (or NULL); the variable-length bytes it added.
    Value(usize),
    /// A zero date, written as NULL.
    ZeroDate,
    /// A value too long for Redshift, cut to fit; the bytes it added.
    Truncated(usize),
    /// A value too long for Redshift, written as NULL.
    OversizeNulled,
    /// A text value whose NUL bytes were stripped or replaced; the bytes it added.
    NulAltered(usize),
}

/// Why a value was not appended.
enum Refusal {
    /// A value MySQL should not send for the column (or NULL in a NOT NULL column).
    Invalid(String),
    /// A value longer than its Redshift column, under `fail` or in a key column.
    Oversize { octets: usize, rule: OversizeRule },
    /// A text value with a NUL byte, under `nul_in_text: fail` or in a key column.
    Nul,
}

fn integer(value: &Value) -> std::result::Result<i128, String> {
    match value {
        Value::Int(v) => Ok(i128::from(*v)),
        Value::UInt(v) => Ok(i128::from(*v)),
        other => Err(format!("expected an integer, MySQL sent {other:?}")),
    }
}

fn narrow<T: TryFrom<i128>>(value: i128, type_name: &str) -> std::result::Result<T, String> {
    T::try_from(value).map_err(|_| format!("{value} does not fit {type_name}"))
}

impl ColumnDecoder {
    fn append(&mut self, value: Value) -> std::result::Result<Appended, Refusal> {
        let (value, nul_altered) = match (self.nul, value) {
            (Some(policy), Value::Bytes(raw)) if raw.contains(&0) => match policy {
                NulPolicy::Fail => return Err(Refusal::Nul),
                NulPolicy::Strip => (
                    Value::Bytes(raw.into_iter().filter(|&b| b != 0).collect()),
                    true,
                ),
                NulPolicy::Replace => {
                    let mut replaced = Vec::with_capacity(raw.len() + 8);
                    for byte in raw {
                        match byte {
                            0 => replaced.extend_from_slice("\u{FFFD}".as_bytes()),
                            other => replaced.push(other),
                        }
                    }
                    (Value::Bytes(replaced), true)
                }
            },
            (_, value) => (value, false),
        };
        let appended = self.append_sized(value)?;
        match appended {
            Appended::Value(bytes) if nul_altered => Ok(Appended::NulAltered(bytes)),
            other => Ok(other),
        }
    }

    /// Appends a value, held to its Redshift column's length when the rule says so.
    fn append_sized(&mut self, value: Value) -> std::result::Result<Appended, Refusal> {
        match (self.oversize, value) {
            (Some(rule), Value::Bytes(raw)) if raw.len() > rule.max_octets => {
                self.append_oversize(raw, rule)
            }
            (_, value) => self.append_value(value).map_err(Refusal::Invalid),
        }
    }

    /// A value longer than its Redshift column: refused, cut, or NULL, as the rule says. Text
    /// is cut at a character boundary and binary at the byte; a JSON document becomes NULL
    /// rather than cut, which would leave text that is not JSON.
    fn append_oversize(
        &mut self,
        mut raw: Vec<u8>,
        rule: OversizeRule,
    ) -> std::result::Result<Appended, Refusal> {
        let octets = raw.len();
        match rule.policy {
            OversizePolicy::Fail => Err(Refusal::Oversize { octets, rule }),
            OversizePolicy::Truncate if self.ty != ColumnType::Json => {
                let kept = match &self.builder {
                    Builder::Utf8(_) => std::str::from_utf8(&raw)
                        .map(|text| truncate_at_char_boundary(text, rule.max_octets).len())
                        .map_err(|_| {
                            Refusal::Invalid("a value that is not valid UTF-8".to_owned())
                        })?,
                    _ => rule.max_octets,
                };
                raw.truncate(kept);
                self.append_value(Value::Bytes(raw))
                    .map_err(Refusal::Invalid)?;
                Ok(Appended::Truncated(kept))
            }
            OversizePolicy::Truncate | OversizePolicy::Null => {
                self.append_value(Value::NULL).map_err(Refusal::Invalid)?;
                Ok(Appended::OversizeNulled)
            }
        }
    }

    fn append_value(&mut self, value: Value) -> std::result::Result<Appended, String> {
        if matches!(value, Value::NULL) {
            if !self.nullable {
                return Err(
                    "NULL in a NOT NULL column: the table changed since the run began".to_owned(),
                );
            }
            self.builder.append_null();
            return Ok(Appended::Value(0));
        }
        let mut bytes = 0;
        match (&mut self.builder, &self.ty) {
            (Builder::Boolean(b), _) => b.append_value(match &value {
                Value::Bytes(bits) => bits.iter().any(|&x| x != 0),
                other => integer(other)? != 0,
            }),
            (Builder::Int16(b), _) => b.append_value(narrow(integer(&value)?, "Int16")?),
            (Builder::Int32(b), _) => b.append_value(narrow(integer(&value)?, "Int32")?),
            (Builder::Int64(b), _) => b.append_value(match &value {
                Value::Bytes(bits) => narrow(i128::from(bits_value(bits)?), "Int64")?,
                other => narrow(integer(other)?, "Int64")?,
            }),
            (Builder::Decimal(b), ty) => {
                let scale = match ty {
                    ColumnType::Decimal { scale, .. } => *scale,
                    _ => 0,
                };
                let unscaled = match (&value, ty) {
                    (Value::Bytes(bits), ColumnType::Bits { .. }) => i128::from(bits_value(bits)?),
                    (Value::Bytes(text), _) => parse_decimal(text, scale)?,
                    (other, _) => {
                        let whole = integer(other)?;
                        let factor = 10i128.pow(u32::try_from(scale).unwrap_or(0));
                        whole
                            .checked_mul(factor)
                            .ok_or_else(|| format!("{whole} does not fit 38 digits"))?
                    }
                };
                b.append_value(unscaled)
            }
            (Builder::Float32(b), _) => match value {
                Value::Float(v) => b.append_value(v),
                other => return Err(format!("expected a FLOAT, MySQL sent {other:?}")),
            },
            (Builder::Float64(b), _) => match value {
                Value::Double(v) => b.append_value(v),
                Value::Float(v) => b.append_value(f64::from(v)),
                other => return Err(format!("expected a DOUBLE, MySQL sent {other:?}")),
            },
            (Builder::Date(b), _) => match value {
                Value::Date(y, mo, d, ..) => match epoch_days(y, mo, d) {
                    Some(days) => b.append_value(days),
                    None => return self.zero_date(),
                },
                other => return Err(format!("expected a DATE, MySQL sent {other:?}")),
            },
            (Builder::Timestamp(b), _) => match value {
                Value::Date(y, mo, d, h, mi, s, us) => {
                    match timestamp(y, mo, d, h, mi, s, us).epoch_micros() {
                        Some(micros) => b.append_value(micros),
                        None => return self.zero_date(),
                    }
                }
                other => return Err(format!("expected a DATETIME, MySQL sent {other:?}")),
            },
            (Builder::Utf8(b), _) => match value {
                Value::Bytes(raw) => {
                    bytes = raw.len();
                    let text = std::str::from_utf8(&raw)
                        .map_err(|_| "a value that is not valid UTF-8".to_owned())?;
                    b.append_value(text);
                }
                Value::Time(negative, days, h, mi, s, us) => b.append_value(time_text(
                    negative,
                    days,
                    h,
                    mi,
                    s,
                    us,
                    self.fraction_digits,
                )),
                Value::Date(y, mo, d, h, mi, s, us) => {
                    let full = timestamp(y, mo, d, h, mi, s, us).to_string();
                    let shown = match self.fraction_digits {
                        0 if (h, mi, s) == (0, 0, 0) => full[..10].to_owned(),
                        0 => full[..19].to_owned(),
                        digits => full[..20 + digits.min(6)].to_owned(),
                    };
                    b.append_value(shown)
                }
                Value::Int(v) => b.append_value(v.to_string()),
                Value::UInt(v) => b.append_value(v.to_string()),
                Value::Float(v) => b.append_value(v.to_string()),
                Value::Double(v) => b.append_value(v.to_string()),
                Value::NULL => b.append_null(),
            },
            (Builder::Binary(b), _) => match value {
                Value::Bytes(raw) => {
                    bytes = raw.len();
                    b.append_value(raw);
                }
                other => return Err(format!("expected bytes, MySQL sent {other:?}")),
            },
        }
        Ok(Appended::Value(bytes))
    }

    fn zero_date(&mut self) -> std::result::Result<Appended, String> {
        if !self.nullable {
            return Err(
                "a zero date (`0000-00-00`) in a primary key column has no Arrow value".to_owned(),
            );
        }
        self.builder.append_null();
        Ok(Appended::ZeroDate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_or_fail() {
        assert_eq!(parse_decimal(b"-9999999999.99", 2), Ok(-999_999_999_999));
        assert_eq!(parse_decimal(b"12.5", 3), Ok(12_500));
        assert_eq!(parse_decimal(b"7", 2), Ok(700));
        assert_eq!(
            parse_decimal(b"9999999999999999999999999999.9999999999", 10),
            Ok(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(
            parse_decimal(b"18446744073709551615", 0),
            Ok(18_446_744_073_709_551_615)
        );
        assert!(parse_decimal(b"1.234", 2).is_err(), "no silent rounding");
        assert!(parse_decimal(b"1e5", 2).is_err());
        assert!(parse_decimal(b"", 2).is_err());
    }

    #[test]
    fn time_text_matches_mysql() {
        assert_eq!(time_text(true, 34, 22, 59, 59, 0, 0), "-838:59:59");
        assert_eq!(time_text(false, 0, 0, 0, 0, 0, 0), "00:00:00");
        assert_eq!(time_text(false, 0, 1, 2, 3, 450_000, 6), "01:02:03.450000");
        assert_eq!(time_text(false, 0, 1, 2, 3, 450_000, 2), "01:02:03.45");
    }

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate_at_char_boundary("abc", 3), "abc");
        assert_eq!(truncate_at_char_boundary("abc", 2), "ab");
        // `é` is 2 bytes, `🚀` is 4.
        assert_eq!(truncate_at_char_boundary("aé", 2), "a");
        assert_eq!(truncate_at_char_boundary("aé", 3), "aé");
        for max in 1..=4 {
            assert_eq!(truncate_at_char_boundary("a🚀b", max), "a", "{max}");
        }
        assert_eq!(truncate_at_char_boundary("a🚀b", 5), "a🚀");
        assert_eq!(truncate_at_char_boundary("🚀", 3), "");
        let straddling = format!("{}é", "a".repeat(65_534));
        assert_eq!(straddling.len(), 65_536);
        assert_eq!(
            truncate_at_char_boundary(&straddling, 65_535),
            "a".repeat(65_534)
        );
    }

    const REDSHIFT_VARCHAR: usize = 65_535;
    const REDSHIFT_VARBYTE: usize = 16 * 1024 * 1024;

    /// `id int` (the key), `body mediumtext NOT NULL`, `doc json`, `raw longblob`, `note text`.
    fn wide_schema(policy: OversizePolicy) -> TableSchema {
        let column = |name: &str, data_type: &str, octets: Option<u64>, nullable: bool| {
            crate::schema::SourceColumn {
                name: name.to_owned(),
                data_type: data_type.to_owned(),
                column_type: data_type.to_owned(),
                nullable,
                octet_length: octets,
                ..crate::schema::SourceColumn::default()
            }
        };
        TableSchema::from_source_columns(
            &crate::naming::TableId::parse("shop.docs").unwrap(),
            vec![
                column("id", "int", None, false),
                column("body", "mediumtext", Some(16_777_215), false),
                column("doc", "json", None, true),
                column("raw", "longblob", Some(4_294_967_295), true),
                column("note", "text", Some(65_535), true),
            ],
            vec!["id".to_owned()],
            &crate::schema::SchemaOptions {
                oversize_in_redshift: policy,
                ..crate::schema::SchemaOptions::default()
            },
        )
        .unwrap()
    }

    /// One row with every wide column too long for Redshift: a body whose `🚀` straddles the
    /// limit, a JSON document, a blob one byte over 16 MiB, and a `text` at its full 65535 bytes.
    fn oversize_row() -> Vec<Option<Value>> {
        let body = format!("{}🚀tail", "a".repeat(REDSHIFT_VARCHAR - 2));
        let doc = format!("{{\"k\": \"{}\"}}", "x".repeat(REDSHIFT_VARCHAR));
        vec![
            Some(Value::Int(7)),
            Some(Value::Bytes(body.into_bytes())),
            Some(Value::Bytes(doc.into_bytes())),
            Some(Value::Bytes(vec![0xAB; REDSHIFT_VARBYTE + 1])),
            Some(Value::Bytes(vec![b'n'; REDSHIFT_VARCHAR])),
        ]
    }

    fn decoded(
        target_policy: Option<OversizePolicy>,
        schema_policy: OversizePolicy,
    ) -> Result<(RecordBatch, AlteredValues)> {
        let schema = wide_schema(schema_policy);
        let rules = ValueRules {
            oversize: target_policy,
            nul: NulPolicy::Fail,
        };
        let mut builder = BatchBuilder::new(&schema, 1, rules, &["id".to_owned()])?;
        builder.append(oversize_row(), || "key `id` = `7`".to_owned())?;
        builder.finish()
    }

    fn lengths(batch: &RecordBatch) -> Vec<Option<usize>> {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let body = batch.column(1).as_string::<i32>();
        let doc = batch.column(2).as_string::<i32>();
        let raw = batch.column(3).as_binary::<i32>();
        let note = batch.column(4).as_string::<i32>();
        let length = |valid: bool, len: usize| valid.then_some(len);
        vec![
            length(body.is_valid(0), body.value(0).len()),
            length(doc.is_valid(0), doc.value(0).len()),
            length(raw.is_valid(0), raw.value(0).len()),
            length(note.is_valid(0), note.value(0).len()),
        ]
    }

    #[test]
    fn fail_refuses_the_row_naming_table_column_row_length_and_setting() {
        let err = decoded(Some(OversizePolicy::Fail), OversizePolicy::Fail)
            .unwrap_err()
            .to_string();
        for needle in [
            "`shop.docs`",
            "column `body`",
            "key `id` = `7`",
            "65541 bytes",
            "at most 65535 bytes",
            "oversize_in_redshift: truncate",
            "oversize_in_redshift: null",
            "exclude: [body]",
        ] {
            assert!(err.contains(needle), "`{needle}` missing from: {err}");
        }
    }

    #[test]
    fn truncate_cuts_text_at_a_character_boundary_and_binary_at_the_byte() {
        let (batch, altered) =
            decoded(Some(OversizePolicy::Truncate), OversizePolicy::Truncate).unwrap();
        assert_eq!(
            lengths(&batch),
            [Some(REDSHIFT_VARCHAR - 2), None, None, Some(REDSHIFT_VARCHAR)],
            "the 🚀 that straddles the limit goes whole; JSON becomes NULL; the blob, cut to 16 MiB, \
             would still make the row larger than COPY's 4 MB: NULL"
        );
        use arrow_array::cast::AsArray;
        assert!(batch.column(1).as_string::<i32>().value(0).ends_with('a'));
        assert_eq!(
            altered,
            AlteredValues {
                zero_dates: 0,
                oversize_truncated: 1,
                oversize_nulled: 2,
                nul_altered: 0,
            }
        );
    }

    #[test]
    fn a_row_over_copy_s_4_mb_fails_or_loses_its_largest_values() {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        // Two 3 MB values: each fits its VARBYTE, the row does not fit COPY's 4 MB.
        let row = || {
            vec![
                Some(Value::Int(7)),
                Some(Value::Bytes(b"body".to_vec())),
                Some(Value::Bytes(b"{}".to_vec())),
                Some(Value::Bytes(vec![1; 3 * 1024 * 1024 + 1])),
                Some(Value::Bytes(vec![b'n'; 3 * 1024 * 1024])),
            ]
        };
        let decode = |policy: OversizePolicy| {
            let mut schema = wide_schema(policy);
            // `note` as a second blob, whose 3 MB fit its VARBYTE.
            schema.columns[4].ty = ColumnType::Binary {
                max_octets: 16_777_215,
            };
            let rules = ValueRules {
                oversize: Some(policy),
                nul: NulPolicy::Fail,
            };
            let mut builder = BatchBuilder::new(&schema, 1, rules, &["id".to_owned()])?;
            builder.append(row(), || "key `id` = `7`".to_owned())?;
            builder.finish()
        };
        let err = decode(OversizePolicy::Fail).unwrap_err().to_string();
        assert!(
            err.contains("key `id` = `7`")
                && err.contains("at most 4194304 bytes")
                && err.contains("oversize_in_redshift: null"),
            "{err}"
        );
        let (batch, altered) = decode(OversizePolicy::Null).unwrap();
        assert!(batch.column(3).is_null(0), "the largest value goes");
        assert_eq!(
            batch.column(4).as_binary::<i32>().value(0).len(),
            3 * 1024 * 1024
        );
        assert_eq!(altered.oversize_nulled, 1);
    }

    #[test]
    fn nul_bytes_in_text_fail_or_are_stripped_or_replaced_but_never_in_a_key() {
        use arrow_array::cast::AsArray;
        let schema = wide_schema(OversizePolicy::Fail);
        let row = || {
            vec![
                Some(Value::Int(7)),
                Some(Value::Bytes(b"a\0b\0".to_vec())),
                Some(Value::Bytes(b"{}".to_vec())),
                Some(Value::Bytes(vec![0, 1])),
                Some(Value::Bytes(b"n".to_vec())),
            ]
        };
        let decode = |nul: NulPolicy, keys: &[String]| {
            let rules = ValueRules {
                oversize: None,
                nul,
            };
            let mut builder = BatchBuilder::new(&schema, 1, rules, keys)?;
            builder.append(row(), || "key `id` = `7`".to_owned())?;
            builder.finish()
        };
        let err = decode(NulPolicy::Fail, &["id".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column `body`")
                && err.contains("key `id` = `7`")
                && err.contains("nul_in_text: strip"),
            "{err}"
        );
        let (batch, altered) = decode(NulPolicy::Strip, &["id".to_owned()]).unwrap();
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "ab");
        assert_eq!(altered.nul_altered, 1);
        assert_eq!(
            batch.column(3).as_binary::<i32>().value(0),
            &[0, 1],
            "binary keeps NUL"
        );
        let (batch, _) = decode(NulPolicy::Replace, &["id".to_owned()]).unwrap();
        assert_eq!(
            batch.column(1).as_string::<i32>().value(0),
            "a\u{FFFD}b\u{FFFD}"
        );
        assert!(
            decode(NulPolicy::Strip, &["body".to_owned()]).is_err(),
            "a key is never changed"
        );
    }

    #[test]
    fn null_writes_null_for_every_value_too_long() {
        let (batch, altered) = decoded(Some(OversizePolicy::Null), OversizePolicy::Null).unwrap();
        assert_eq!(lengths(&batch), [None, None, None, Some(REDSHIFT_VARCHAR)]);
        assert_eq!(altered.oversize_nulled, 3);
        assert_eq!(altered.oversize_truncated, 0);
    }

    #[test]
    fn without_a_redshift_target_every_value_stays_whole() {
        let (batch, altered) = decoded(None, OversizePolicy::Null).unwrap();
        assert_eq!(
            lengths(&batch),
            [
                Some(REDSHIFT_VARCHAR + 6),
                Some(REDSHIFT_VARCHAR + 9),
                Some(REDSHIFT_VARBYTE + 1),
                Some(REDSHIFT_VARCHAR)
            ]
        );
        assert_eq!(altered, AlteredValues::default());
    }

    #[test]
    fn a_key_column_is_never_cut() {
        let schema = wide_schema(OversizePolicy::Truncate);
        let rules = ValueRules {
            oversize: Some(OversizePolicy::Truncate),
            nul: NulPolicy::Fail,
        };
        let mut builder = BatchBuilder::new(&schema, 1, rules, &["BODY".to_owned()]).unwrap();
        let err = builder
            .append(oversize_row(), || {
                "cursor `updated_at` = `2025-01-01`".to_owned()
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `body`"), "{err}");
        assert!(err.contains("key column"), "{err}");
        assert!(err.contains("key_columns"), "{err}");
    }
}
