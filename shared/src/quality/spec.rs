//! The `checks:` of a table as the file writes them ([`RawCheck`]: one key per check, the old
//! tool's names accepted) and checked ([`Check`]: one [`CheckKind`] with its columns and bounds,
//! a compiled pattern), and which column types each kind applies to.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;
use crate::schema::ColumnType;

/// One check as the file writes it: exactly one of the check keys, and `severity`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Columns that must not be NULL. The old tool's `null_check` is the same.
    #[serde(default, alias = "null_check", skip_serializing_if = "Option::is_none")]
    pub not_null: Option<Vec<String>>,
    /// Columns whose values (together) no two rows of one run share, NULLs aside. The old tool's
    /// `duplicate_check` is the same.
    #[serde(
        default,
        alias = "duplicate_check",
        skip_serializing_if = "Option::is_none"
    )]
    pub unique: Option<Vec<String>>,
    /// `{ column, min, max }`: a numeric column within bounds (inclusive). The old tool's
    /// `range_check` is the same.
    #[serde(
        default,
        alias = "range_check",
        skip_serializing_if = "Option::is_none"
    )]
    pub range: Option<RangeCheck>,
    /// `{ column, values }`: a text or integer column holds one of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_values: Option<AcceptedValuesCheck>,
    /// `{ column, regex }`: a text column matches the regular expression (Rust `regex` syntax;
    /// anchor it with `^…$` to match the whole value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<PatternCheck>,
    /// `{ min, max }`: how many rows one run may extract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<RowCountCheck>,
    /// `{ max_age }`: the newest cursor value extracted is at most this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessCheck>,
    /// `fail` (default: the run is quarantined) or `warn` (counted, logged and measured only).
    #[serde(default)]
    pub severity: Severity,
}

/// `range`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeCheck {
    /// The column.
    pub column: String,
    /// Smallest value allowed; a number, or a string for more digits than a float holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    /// Largest value allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
}

/// A range bound as written: a YAML number or a decimal string.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Bound {
    /// `0`, `-12`.
    Integer(i64),
    /// `0.5`.
    Float(f64),
    /// `"12345678901234567890.25"`.
    Text(String),
}

/// `accepted_values`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedValuesCheck {
    /// The column.
    pub column: String,
    /// The values allowed, compared with the value's text (integers as digits).
    pub values: Vec<Scalar>,
}

/// A listed value: a string, an integer or a boolean.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    /// `paid`.
    Text(String),
    /// `3`.
    Integer(i64),
    /// `true`.
    Boolean(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(text) => text.clone(),
            Scalar::Integer(number) => number.to_string(),
            Scalar::Boolean(flag) => flag.to_string(),
        }
    }
}

/// `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatternCheck {
    /// The column.
    pub column: String,
    /// The regular expression.
    pub regex: String,
}

/// `row_count`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RowCountCheck {
    /// Fewest rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// Most rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// `freshness`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessCheck {
    /// The newest cursor value may be at most this much older than the source's clock.
    pub max_age: HumanDuration,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The run is quarantined: committed to S3 but not loaded until an operator acts.
    #[default]
    Fail,
    /// Counted, logged and measured; the run loads.
    Warn,
}

/// A checked check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What it checks.
    pub kind: CheckKind,
    /// What a failure does.
    pub severity: Severity,
}

/// One kind of check with what it needs.
#[derive(Debug, Clone)]
pub enum CheckKind {
    /// No NULL in these columns.
    NotNull(Vec<String>),
    /// No two rows share these columns' values.
    Unique(Vec<String>),
    /// Values within bounds.
    Range {
        /// The column.
        column: String,
        /// Inclusive lower bound.
        min: Option<Decimal>,
        /// Inclusive upper bound.
        max: Option<Decimal>,
    },
    /// Values from a list.
    AcceptedValues {
        /// The column.
        column: String,
        /// The allowed values' text.
        values: Vec<String>,
    },
    /// Values match a regex.
    Pattern {
        /// The column.
        column: String,
        /// The compiled expression.
        regex: regex::Regex,
    },
    /// Rows in one run.
    RowCount {
        /// Fewest.
        min: Option<u64>,
        /// Most.
        max: Option<u64>,
    },
    /// Age of the newest cursor value.
    Freshness {
        /// At most this.
        max_age: HumanDuration,
    },
}

/// An exact decimal: `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits.
    pub mantissa: i128,
    /// Digits after the point.
    pub scale: u32,
}

impl Decimal {
    /// Parses `-12.50`, `7`, `1e6` and `2.5E-3`.
    pub fn parse(text: &str) -> std::result::Result<Decimal, String> {
        let invalid = || format!("`{text}` is not a number");
        let text = text.trim();
        let (digits, exponent) = match text.find(['e', 'E']) {
            Some(at) => (
                &text[..at],
                text[at + 1..].parse::<i32>().map_err(|_| invalid())?,
            ),
            None => (text, 0),
        };
        let (negative, digits) = match digits.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, digits.strip_prefix('+').unwrap_or(digits)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole
                .chars()
                .chain(fraction.chars())
                .all(|c| c.is_ascii_digit())
        {
            return Err(invalid());
        }
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(digit - b'0')))
                .ok_or_else(|| format!("`{text}` has more than 38 digits"))?;
        }
        let mut scale = fraction.len() as i64 - i64::from(exponent);
        while scale < 0 {
            mantissa = mantissa
                .checked_mul(10)
                .ok_or_else(|| format!("`{text}` has more than 38 digits"))?;
            scale += 1;
        }
        let scale = u32::try_from(scale).map_err(|_| invalid())?;
        if scale > 38 {
            return Err(format!("`{text}` has more than 38 digits after the point"));
        }
        Ok(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    /// Compares `value × 10^-value_scale` with this decimal, exactly when both fit 38 digits at
    /// the larger scale, else through floats.
    pub fn compare_scaled(&self, value: i128, value_scale: u32) -> std::cmp::Ordering {
        let scale = self.scale.max(value_scale);
        let widen = |mantissa: i128, from: u32| {
            10i128
                .checked_pow(scale - from)
                .and_then(|factor| mantissa.checked_mul(factor))
        };
        match (widen(value, value_scale), widen(self.mantissa, self.scale)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => {
                let a = value as f64 / 10f64.powi(value_scale as i32);
                a.total_cmp(&self.as_f64())
            }
        }
    }

    /// The nearest float.
    pub fn as_f64(&self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        write!(f, "{sign}{whole}.{fraction}")
    }
}

impl Bound {
    fn decimal(&self) -> std::result::Result<Decimal, String> {
        match self {
            Bound::Integer(n) => Ok(Decimal {
                mantissa: i128::from(*n),
                scale: 0,
            }),
            Bound::Float(x) if x.is_finite() => Decimal::parse(&x.to_string()),
            Bound::Float(x) => Err(format!("`{x}` is not a finite number")),
            Bound::Text(text) => Decimal::parse(text),
        }
    }

    fn of(decimal: Decimal) -> Bound {
        match (decimal.scale, i64::try_from(decimal.mantissa)) {
            (0, Ok(n)) => Bound::Integer(n),
            _ => Bound::Text(decimal.to_string()),
        }
    }
}

/// The check keys, canonical names first (the order in which a problem names them).
const CHECK_KEYS: &str =
    "`not_null`, `unique`, `range`, `accepted_values`, `pattern`, `row_count` or `freshness`";

impl RawCheck {
    /// The checked check, or each problem with the key it belongs to (`""` for the item).
    pub fn check(&self) -> std::result::Result<Check, Vec<(&'static str, String)>> {
        let mut kinds: Vec<(&'static str, std::result::Result<CheckKind, String>)> = Vec::new();
        let columns = |list: &Vec<String>| match list.is_empty() {
            true => Err("name at least one column".to_owned()),
            false => Ok(list.clone()),
        };
        if let Some(list) = &self.not_null {
            kinds.push(("not_null", columns(list).map(CheckKind::NotNull)));
        }
        if let Some(list) = &self.unique {
            kinds.push(("unique", columns(list).map(CheckKind::Unique)));
        }
        if let Some(range) = &self.range {
            kinds.push(("range", range_kind(range)));
        }
        if let Some(accepted) = &self.accepted_values {
            kinds.push((
                "accepted_values",
                match accepted.values.is_empty() {
                    true => Err("list at least one value".to_owned()),
                    false => Ok(CheckKind::AcceptedValues {
                        column: accepted.column.clone(),
                        values: accepted.values.iter().map(Scalar::text).collect(),
                    }),
                },
            ));
        }
        if let Some(pattern) = &self.pattern {
            kinds.push((
                "pattern",
                regex::Regex::new(&pattern.regex)
                    .map(|regex| CheckKind::Pattern {
                        column: pattern.column.clone(),
                        regex,
                    })
                    .map_err(|err| {
                        format!(
                            "`{}` is not a valid regular expression: {}",
                            pattern.regex,
                            err.to_string().replace('\n', " ")
                        )
                    }),
            ));
        }
        if let Some(count) = &self.row_count {
            kinds.push((
                "row_count",
                match (count.min, count.max) {
                    (None, None) => Err("give `min`, `max` or both".to_owned()),
                    (Some(min), Some(max)) if min > max => {
                        Err(format!("`min` ({min}) is greater than `max` ({max})"))
                    }
                    (min, max) => Ok(CheckKind::RowCount { min, max }),
                },
            ));
        }
        if let Some(freshness) = &self.freshness {
            kinds.push((
                "freshness",
                match freshness.max_age.0.is_zero() {
                    true => Err("`max_age` must be longer than `0s`".to_owned()),
                    false => Ok(CheckKind::Freshness {
                        max_age: freshness.max_age,
                    }),
                },
            ));
        }
        match kinds.len() {
            0 => Err(vec![("", format!("a check needs one of {CHECK_KEYS}"))]),
            1 => {
                let (key, kind) = kinds.remove(0);
                kind.map(|kind| Check {
                    kind,
                    severity: self.severity,
                })
                .map_err(|message| vec![(key, message)])
            }
            _ => Err(vec![(
                "",
                format!(
                    "one check per list item: this item has {}; write each as its own `- …` item",
                    kinds
                        .iter()
                        .map(|(key, _)| format!("`{key}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )]),
        }
    }
}

fn range_kind(range: &RangeCheck) -> std::result::Result<CheckKind, String> {
    let min = range.min.as_ref().map(Bound::decimal).transpose()?;
    let max = range.max.as_ref().map(Bound::decimal).transpose()?;
    match (min, max) {
        (None, None) => Err("give `min`, `max` or both".to_owned()),
        (Some(low), Some(high)) if high.compare_scaled(low.mantissa, low.scale).is_gt() => {
            Err(format!("`min` ({low}) is greater than `max` ({high})"))
        }
        (min, max) => Ok(CheckKind::Range {
            column: range.column.clone(),
            min,
            max,
        }),
    }
}

impl From<&Check> for RawCheck {
    fn from(check: &Check) -> RawCheck {
        let mut raw = RawCheck {
            severity: check.severity,
            ..RawCheck::default()
        };
        match &check.kind {
            CheckKind::NotNull(columns) => raw.not_null = Some(columns.clone()),
            CheckKind::Unique(columns) => raw.unique = Some(columns.clone()),
            CheckKind::Range { column, min, max } => {
                raw.range = Some(RangeCheck {
                    column: column.clone(),
                    min: min.map(Bound::of),
                    max: max.map(Bound::of),
                })
            }
            CheckKind::AcceptedValues { column, values } => {
                raw.accepted_values = Some(AcceptedValuesCheck {
                    column: column.clone(),
                    values: values.iter().cloned().map(Scalar::Text).collect(),
                })
            }
            CheckKind::Pattern { column, regex } => {
                raw.pattern = Some(PatternCheck {
                    column: column.clone(),
                    regex: regex.as_str().to_owned(),
                })
            }
            CheckKind::RowCount { min, max } => {
                raw.row_count = Some(RowCountCheck {
                    min: *min,
                    max: *max,
                })
            }
            CheckKind::Freshness { max_age } => {
                raw.freshness = Some(FreshnessCheck { max_age: *max_age })
            }
        }
        raw
    }
}

impl Check {
    /// The check as reports name it: `not_null(id, email)`, `range(amount)`, `row_count`.
    pub fn name(&self) -> String {
        match &self.kind {
            CheckKind::NotNull(columns) => format!("not_null({})", columns.join(", ")),
            CheckKind::Unique(columns) => format!("unique({})", columns.join(", ")),
            CheckKind::Range { column, .. } => format!("range({column})"),
            CheckKind::AcceptedValues { column, .. } => format!("accepted_values({column})"),
            CheckKind::Pattern { column, .. } => format!("pattern({column})"),
            CheckKind::RowCount { .. } => "row_count".to_owned(),
            CheckKind::Freshness { .. } => "freshness".to_owned(),
        }
    }

    /// The source columns the check reads.
    pub fn columns(&self) -> Vec<&str> {
        match &self.kind {
            CheckKind::NotNull(columns) | CheckKind::Unique(columns) => {
                columns.iter().map(String::as_str).collect()
            }
            CheckKind::Range { column, .. }
            | CheckKind::AcceptedValues { column, .. }
            | CheckKind::Pattern { column, .. } => vec![column.as_str()],
            CheckKind::RowCount { .. } | CheckKind::Freshness { .. } => Vec::new(),
        }
    }

    /// Why the check cannot read a column of type `column_type`, if it cannot.
    pub fn refuses_type(&self, column_type: &ColumnType) -> Option<String> {
        let numeric = matches!(
            column_type,
            ColumnType::Int16
                | ColumnType::Int32
                | ColumnType::Int64
                | ColumnType::Decimal { .. }
                | ColumnType::Bits { .. }
                | ColumnType::Float32
                | ColumnType::Float64
        );
        let integer = matches!(
            column_type,
            ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64
        );
        let text = matches!(column_type, ColumnType::Text { .. });
        let kind = match &self.kind {
            CheckKind::Range { .. } if !numeric => "`range` compares numbers: integer, DECIMAL, FLOAT, DOUBLE or BIT columns",
            CheckKind::AcceptedValues { .. } if !(text || integer) => {
                "`accepted_values` compares text and integers: CHAR, VARCHAR, TEXT, ENUM, SET or integer columns"
            }
            CheckKind::Pattern { .. } if !text => {
                "`pattern` matches text: CHAR, VARCHAR, TEXT, ENUM or SET columns"
            }
            _ => return None,
        };
        Some(kind.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> std::result::Result<Check, Vec<(&'static str, String)>> {
        serde_yaml::from_str::<RawCheck>(yaml)
            .map_err(|err| vec![("yaml", err.to_string())])?
            .check()
    }

    #[test]
    fn decimals_parse_exactly_and_print_back() {
        for (text, mantissa, scale, shown) in [
            ("-12.50", -1250, 2, "-12.50"),
            ("7", 7, 0, "7"),
            ("1e6", 1_000_000, 0, "1000000"),
            ("2.5E-3", 25, 4, "0.0025"),
            ("+0.1", 1, 1, "0.1"),
        ] {
            let decimal = Decimal::parse(text).unwrap();
            assert_eq!(
                (decimal.mantissa, decimal.scale),
                (mantissa, scale),
                "{text}"
            );
            assert_eq!(decimal.to_string(), shown);
        }
        for bad in [
            "",
            "-",
            "1.2.3",
            "abc",
            "1e",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scaled_comparisons_are_exact_at_any_scale() {
        let bound = Decimal::parse("10.05").unwrap();
        assert!(bound.compare_scaled(1005, 2).is_eq());
        assert!(bound.compare_scaled(10050, 3).is_eq());
        assert!(bound.compare_scaled(10, 0).is_lt());
        assert!(bound.compare_scaled(11, 0).is_gt());
        assert!(bound.compare_scaled(i128::MAX, 0).is_gt());
    }

    #[test]
    fn the_old_tool_s_names_are_the_same_checks() {
        assert_eq!(parsed("null_check: [a]").unwrap().name(), "not_null(a)");
        assert_eq!(
            parsed("duplicate_check: [a, b]").unwrap().name(),
            "unique(a, b)"
        );
        let range = parsed("range_check: { column: x, min: 0, max: 1.5 }").unwrap();
        assert_eq!(range.name(), "range(x)");
        assert_eq!(range.severity, Severity::Fail);
        assert_eq!(
            parsed("{ not_null: [a], severity: warn }")
                .unwrap()
                .severity,
            Severity::Warn
        );
    }

    #[test]
    fn each_mistake_is_named_with_its_key() {
        let problem = |yaml: &str| parsed(yaml).unwrap_err().remove(0);
        assert_eq!(problem("severity: warn").0, "");
        assert!(problem("{ not_null: [a], unique: [a] }")
            .1
            .contains("one check per list item"));
        assert_eq!(problem("not_null: []").0, "not_null");
        let (key, message) = problem("range: { column: x, min: 2, max: 1.5 }");
        assert_eq!(key, "range");
        assert!(
            message.contains("`min` (2) is greater than `max` (1.5)"),
            "{message}"
        );
        assert!(problem("pattern: { column: x, regex: '[' }")
            .1
            .contains("not a valid regular expression"));
        assert!(problem("row_count: { min: 3, max: 2 }")
            .1
            .contains("greater"));
        assert!(problem("freshness: { max_age: 0s }")
            .1
            .contains("longer than"));
        assert!(problem("accepted_values: { column: s, values: [] }")
            .1
            .contains("at least one"));
    }

    #[test]
    fn a_check_round_trips_through_its_written_form() {
        for yaml in [
            "not_null: [a]",
            "range: { column: x, min: -3, max: \"12345678901234567890.25\" }",
            "accepted_values: { column: s, values: [a, 2, true] }",
            "pattern: { column: e, regex: '^x$' }",
            "row_count: { min: 1 }",
            "{ freshness: { max_age: 2h }, severity: warn }",
        ] {
            let check = parsed(yaml).unwrap();
            let written = serde_yaml::to_string(&RawCheck::from(&check)).unwrap();
            let again = parsed(&written).unwrap();
            assert_eq!(again.name(), check.name(), "{yaml} → {written}");
            assert_eq!(again.severity, check.severity);
            assert_eq!(format!("{:?}", again.kind), format!("{:?}", check.kind));
        }
    }
}
