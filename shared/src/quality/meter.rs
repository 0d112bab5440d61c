//! Checks evaluated on the Arrow batches extraction writes: per check, the rows it read, how
//! many failed and the keys of the first few, and for `unique` the digest of every row's value
//! (kept for the commit, which compares the rows of all chunks).

use std::collections::HashSet;
use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use super::digest::{Digest64, UniqueDigest};
use super::spec::{Check, CheckKind, Decimal};
use super::{CheckCount, EXAMPLES_PER_CHECK};
use crate::error::{Error, Result};
use crate::schema::TableSchema;

/// A check bound to the columns of the batches it reads.
#[derive(Debug)]
enum Bound {
    NotNull(Vec<usize>),
    Unique {
        columns: Vec<usize>,
        digest: UniqueDigest,
    },
    Range {
        column: usize,
        min: Option<Decimal>,
        max: Option<Decimal>,
    },
    AcceptedValues {
        column: usize,
        values: Accepted,
    },
    Pattern {
        column: usize,
        regex: regex::Regex,
    },
    /// Evaluated at commit on the whole run (`row_count`, `freshness`).
    RunLevel,
}

/// The values an `accepted_values` check allows: a short list is scanned (faster than hashing
/// for the handful of values such a check usually has), a long one hashed.
#[derive(Debug)]
enum Accepted {
    Few(Vec<String>),
    Many(HashSet<String>),
}

impl Accepted {
    fn of(values: &[String]) -> Self {
        match values.len() {
            0..=16 => Accepted::Few(values.to_vec()),
            _ => Accepted::Many(values.iter().cloned().collect()),
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            Accepted::Few(list) => list.iter().any(|v| v == value),
            Accepted::Many(set) => set.contains(value),
        }
    }
}

/// Every check of a table over the batches of one extraction invocation.
#[derive(Debug)]
pub struct QualityMeter {
    checks: Vec<Bound>,
    keys: Vec<usize>,
    /// One count per check, in configuration order.
    pub counts: Vec<CheckCount>,
    /// Rows seen before the current batch, for the examples of a table without a key.
    rows_before: u64,
}

/// The index of `name` among the schema's columns, or why it is not there.
fn column_index(schema: &TableSchema, name: &str) -> std::result::Result<usize, String> {
    schema
        .columns
        .iter()
        .position(|column| column.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "`{name}` is not an extracted column of `{}` (they are: {})",
                schema.table,
                schema.column_names().join(", ")
            )
        })
}

/// Each check's problems against `schema` (an unknown column, a type it cannot read), by the
/// check's position in the list.
pub fn problems(checks: &[Check], schema: &TableSchema) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, check) in checks.iter().enumerate() {
        for name in check.columns() {
            match column_index(schema, name) {
                Err(message) => found.push((index, message)),
                Ok(column) => {
                    if let Some(why) = check.refuses_type(&schema.columns[column].ty) {
                        found.push((
                            index,
                            format!(
                                "{why}; `{name}` is `{}`",
                                schema.columns[column].column_type
                            ),
                        ));
                    }
                }
            }
        }
    }
    found
}

impl QualityMeter {
    /// The meter of `checks` over batches of `schema`, naming failing rows by `key_columns`.
    /// Fails, naming the check, when a check does not fit the schema.
    pub fn new(checks: &[Check], schema: &TableSchema, key_columns: &[String]) -> Result<Self> {
        if let Some((index, message)) = problems(checks, schema).into_iter().next() {
            return Err(Error::config(
                format!("checks of `{}`", schema.table),
                format!(
                    "check {} `{}`: {message}; fix `checks` in the configuration (`tidemark config check --source` finds these before a run)",
                    index + 1,
                    checks[index].name()
                ),
            ));
        }
        let index = |name: &str| column_index(schema, name).map_err(Error::internal);
        let mut bound = Vec::with_capacity(checks.len());
        for check in checks {
            bound.push(match &check.kind {
                CheckKind::NotNull(columns) => {
                    Bound::NotNull(columns.iter().map(|c| index(c)).collect::<Result<_>>()?)
                }
                CheckKind::Unique(columns) => Bound::Unique {
                    columns: columns.iter().map(|c| index(c)).collect::<Result<_>>()?,
                    digest: UniqueDigest::default(),
                },
                CheckKind::Range { column, min, max } => Bound::Range {
                    column: index(column)?,
                    min: *min,
                    max: *max,
                },
                CheckKind::AcceptedValues { column, values } => Bound::AcceptedValues {
                    column: index(column)?,
                    values: Accepted::of(values),
                },
                CheckKind::Pattern { column, regex } => Bound::Pattern {
                    column: index(column)?,
                    regex: regex.clone(),
                },
                CheckKind::RowCount { .. } | CheckKind::Freshness { .. } => Bound::RunLevel,
            });
        }
        let keys = key_columns
            .iter()
            .map(|k| index(k))
            .collect::<Result<Vec<_>>>()?;
        Ok(QualityMeter {
            counts: checks
                .iter()
                .map(|check| CheckCount::new(check.name()))
                .collect(),
            checks: bound,
            keys,
            rows_before: 0,
        })
    }

    /// Whether there is anything to evaluate per batch.
    pub fn is_idle(&self) -> bool {
        self.checks.iter().all(|b| matches!(b, Bound::RunLevel))
    }

    /// The digests of the `unique` checks, by the check's position, leaving them empty.
    pub fn take_digests(&mut self) -> Vec<(usize, UniqueDigest)> {
        self.checks
            .iter_mut()
            .enumerate()
            .filter_map(|(index, check)| match check {
                Bound::Unique { digest, .. } => Some((index, std::mem::take(digest))),
                _ => None,
            })
            .collect()
    }

    /// The most rows any `unique` check's digest holds now.
    pub fn digest_rows(&self) -> usize {
        self.checks
            .iter()
            .map(|check| match check {
                Bound::Unique { digest, .. } => digest.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Evaluates every row-level check on `batch`.
    pub fn observe(&mut self, batch: &RecordBatch) {
        let rows = batch.num_rows();
        let QualityMeter {
            checks,
            keys,
            counts,
            rows_before,
        } = self;
        for (check, count) in checks.iter_mut().zip(counts.iter_mut()) {
            let mut failed = Vec::new();
            match check {
                Bound::RunLevel => continue,
                Bound::NotNull(columns) => {
                    for &column in columns.iter() {
                        let array = batch.column(column);
                        if array.null_count() > 0 {
                            failed.extend((0..rows).filter(|&row| array.is_null(row)));
                        }
                    }
                    failed.sort_unstable();
                    failed.dedup();
                }
                Bound::Range { column, min, max } => {
                    range_failures(batch.column(*column).as_ref(), *min, *max, &mut failed);
                }
                Bound::AcceptedValues { column, values } => {
                    let array = batch.column(*column);
                    let mut text = String::new();
                    for row in (0..rows).filter(|&row| array.is_valid(row)) {
                        text.clear();
                        match array.data_type() {
                            DataType::Utf8 => {
                                if !values.contains(array.as_string::<i32>().value(row)) {
                                    failed.push(row);
                                }
                                continue;
                            }
                            _ => write_value(array.as_ref(), row, &mut text),
                        }
                        if !values.contains(&text) {
                            failed.push(row);
                        }
                    }
                }
                Bound::Pattern { column, regex } => {
                    let array = batch.column(*column).as_string::<i32>();
                    for row in (0..rows).filter(|&row| array.is_valid(row)) {
                        if !regex.is_match(array.value(row)) {
                            failed.push(row);
                        }
                    }
                }
                Bound::Unique { columns, digest } => {
                    let mut key = String::new();
                    'rows: for row in 0..rows {
                        let mut hash = Digest64::new();
                        for &column in columns.iter() {
                            let array = batch.column(column);
                            if array.is_null(row) {
                                continue 'rows;
                            }
                            hash_value(array.as_ref(), row, &mut hash);
                        }
                        key.clear();
                        write_key(batch, keys, row, *rows_before, &mut key);
                        digest.push(hash.finish(), &key);
                    }
                    count.rows_checked += rows as u64;
                    continue;
                }
            }
            count.rows_checked += rows as u64;
            count.failures += failed.len() as u64;
            for &row in failed
                .iter()
                .take(EXAMPLES_PER_CHECK.saturating_sub(count.examples.len()))
            {
                let mut key = String::new();
                write_key(batch, keys, row, *rows_before, &mut key);
                count.examples.push(key);
            }
        }
        *rows_before += rows as u64;
    }
}

fn range_failures(
    array: &dyn Array,
    min: Option<Decimal>,
    max: Option<Decimal>,
    failed: &mut Vec<usize>,
) {
    let rows = array.len();
    // The bounds as integers at the values' scale, once per batch: each value is then compared
    // as an integer.
    let exact =
        |values: &mut dyn Iterator<Item = (usize, i128)>, scale: u32, failed: &mut Vec<usize>| {
            let low = min.map(|m| at_scale(m, scale, true));
            let high = max.map(|m| at_scale(m, scale, false));
            failed.extend(values.filter_map(|(row, v)| {
                (low.is_some_and(|l| v < l) || high.is_some_and(|h| v > h)).then_some(row)
            }));
        };
    let valid = |row: &usize| array.is_valid(*row);
    match array.data_type() {
        DataType::Int16 => {
            let values = array.as_primitive::<Int16Type>();
            exact(
                &mut (0..rows).filter(valid).map(|r| (r, values.value(r).into())),
                0,
                failed,
            );
        }
        DataType::Int32 => {
            let values = array.as_primitive::<Int32Type>();
            exact(
                &mut (0..rows).filter(valid).map(|r| (r, values.value(r).into())),
                0,
                failed,
            );
        }
        DataType::Int64 => {
            let values = array.as_primitive::<Int64Type>();
            exact(
                &mut (0..rows).filter(valid).map(|r| (r, values.value(r).into())),
                0,
                failed,
            );
        }
        DataType::Decimal128(_, scale) => {
            let values = array.as_primitive::<Decimal128Type>();
            let scale = u32::try_from(*scale).unwrap_or(0);
            exact(
                &mut (0..rows).filter(valid).map(|r| (r, values.value(r))),
                scale,
                failed,
            );
        }
        DataType::Float32 | DataType::Float64 => {
            let (low, high) = (min.map(|m| m.as_f64()), max.map(|m| m.as_f64()));
            // NaN lies within no bounds.
            let outside = |v: f64| !(low.is_none_or(|l| v >= l) && high.is_none_or(|h| v <= h));
            if let DataType::Float32 = array.data_type() {
                let values = array.as_primitive::<Float32Type>();
                failed
                    .extend((0..rows).filter(|r| valid(r) && outside(f64::from(values.value(*r)))));
            } else {
                let values = array.as_primitive::<Float64Type>();
                failed.extend((0..rows).filter(|r| valid(r) && outside(values.value(*r))));
            }
        }
        _ => {}
    }
}

/// `bound` as an integer count of `10^-scale`: for a lower bound the smallest at or above it,
/// for an upper bound the largest at or below it (a bound beyond 38 digits saturates, as no
/// value reaches it).
fn at_scale(bound: Decimal, scale: u32, lower: bool) -> i128 {
    if bound.scale <= scale {
        let factor = 10i128.checked_pow(scale - bound.scale);
        return match factor.and_then(|f| bound.mantissa.checked_mul(f)) {
            Some(value) => value,
            None if bound.mantissa < 0 => i128::MIN,
            None => i128::MAX,
        };
    }
    let factor = 10i128.checked_pow(bound.scale - scale).unwrap_or(i128::MAX);
    let (quotient, remainder) = (bound.mantissa / factor, bound.mantissa % factor);
    match (lower, remainder) {
        (true, r) if r > 0 => quotient + 1,
        (false, r) if r < 0 => quotient - 1,
        _ => quotient,
    }
}

/// Feeds one value's bytes ([`Digest64::write`] mixes in their length, so `("ab", "c")` differs
/// from `("a", "bc")`).
fn hash_value(array: &dyn Array, row: usize, hash: &mut Digest64) {
    match array.data_type() {
        DataType::Utf8 => {
            let value = array.as_string::<i32>().value(row);
            hash.write(value.as_bytes());
        }
        DataType::Binary => {
            let value = array.as_binary::<i32>().value(row);
            hash.write(value);
        }
        DataType::Int64 => hash.write(&array.as_primitive::<Int64Type>().value(row).to_le_bytes()),
        DataType::Int32 => hash.write(&array.as_primitive::<Int32Type>().value(row).to_le_bytes()),
        _ => {
            let mut text = String::new();
            write_value(array, row, &mut text);
            hash.write(text.as_bytes());
        }
    }
}

/// The row's key values (`42`, or `(7, 'x')` for several columns), or for a table without a key
/// its number in this invocation's read.
fn write_key(batch: &RecordBatch, keys: &[usize], row: usize, rows_before: u64, out: &mut String) {
    match keys {
        [] => {
            let _ = write!(out, "row #{}", rows_before + row as u64 + 1);
        }
        [only] => write_value(batch.column(*only).as_ref(), row, out),
        several => {
            out.push('(');
            for (i, &key) in several.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(batch.column(key).as_ref(), row, out);
            }
            out.push(')');
        }
    }
}

/// An integer's digits, without the formatting machinery (a key is written for every row a
/// `unique` check reads).
fn write_integer(value: i64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push('-');
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// A value's text as an operator would type it in a WHERE clause.
fn write_value(array: &dyn Array, row: usize, out: &mut String) {
    if array.is_null(row) {
        out.push_str("NULL");
        return;
    }
    let _ = match array.data_type() {
        DataType::Int64 => {
            write_integer(array.as_primitive::<Int64Type>().value(row), out);
            Ok(())
        }
        DataType::Int32 => {
            write_integer(array.as_primitive::<Int32Type>().value(row).into(), out);
            Ok(())
        }
        DataType::Boolean => write!(out, "{}", array.as_boolean().value(row)),
        DataType::Int16 => write!(out, "{}", array.as_primitive::<Int16Type>().value(row)),
        DataType::Float32 => write!(out, "{}", array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => write!(out, "{}", array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => write!(
            out,
            "{}",
            Decimal {
                mantissa: array.as_primitive::<Decimal128Type>().value(row),
                scale: u32::try_from(*scale).unwrap_or(0),
            }
        ),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            match chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
                Some(date) => write!(out, "{date}"),
                None => write!(out, "{days}"),
            }
        }
        DataType::Timestamp(..) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            match chrono::DateTime::from_timestamp_micros(micros) {
                Some(at) => write!(out, "{}", at.naive_utc().format("%Y-%m-%d %H:%M:%S%.f")),
                None => write!(out, "{micros}"),
            }
        }
        DataType::Utf8 => write!(out, "{}", array.as_string::<i32>().value(row)),
        DataType::Binary => {
            out.push_str("0x");
            for byte in array.as_binary::<i32>().value(row) {
                let _ = write!(out, "{byte:02x}");
            }
            Ok(())
        }
        other => write!(out, "<{other}>"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn integers_are_written_as_their_digits() {
        for value in [0, 7, -7, 10, 1_234_567, i64::MAX, i64::MIN] {
            let mut out = String::new();
            write_integer(value, &mut out);
            assert_eq!(out, value.to_string());
        }
    }

    #[test]
    fn bounds_round_inwards_at_the_values_scale() {
        assert_eq!(at_scale(decimal("0.5"), 0, true), 1);
        assert_eq!(at_scale(decimal("-0.5"), 0, true), 0);
        assert_eq!(at_scale(decimal("2.5"), 0, false), 2);
        assert_eq!(at_scale(decimal("-2.5"), 0, false), -3);
        assert_eq!(at_scale(decimal("7"), 0, false), 7);
        assert_eq!(at_scale(decimal("7"), 2, false), 700);
        assert_eq!(at_scale(decimal("0.125"), 2, true), 13);
        assert_eq!(at_scale(decimal("0.125"), 2, false), 12);
        assert_eq!(at_scale(decimal("1e30"), 20, false), i128::MAX);
        assert_eq!(at_scale(decimal("-1e30"), 20, true), i128::MIN);
    }
}
