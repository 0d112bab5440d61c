//! Slowly changing dimensions in the config: `table_type`, `scd_type` and the names and choices
//! of a type-2 table's history columns (the old tool's keys), with the checks `config check`
//! makes of them.

use serde::{Deserialize, Serialize};

use super::table::RawTableConfig;
use super::{CdcStrategy, LoadMode};

/// What a table is to the warehouse's model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableType {
    /// Rows as the source holds them (the default).
    #[default]
    Fact,
    /// A dimension: loaded as a slowly changing dimension of `scd_type`.
    Dimension,
}

/// How a dimension keeps changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScdType {
    /// One row per key, overwritten by each change: `load: merge`.
    #[default]
    #[serde(rename = "type_1")]
    Type1,
    /// One row per version of a key, with its validity; a change of a tracked column closes the
    /// current version and inserts the new one.
    #[serde(rename = "type_2")]
    Type2,
}

/// When a version begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScdEffective {
    /// The row's own cursor value: when the source changed it.
    #[default]
    Cursor,
    /// When the run that read it began (UTC): for strategies without a timestamp cursor.
    LoadedAt,
}

/// The history columns of a type-2 table (`scd:`), and when a version begins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScdNames {
    /// When the version began. Default `valid_from`.
    #[serde(default = "default_valid_from")]
    pub valid_from: String,
    /// When the next version began (or the key was deleted); NULL while current. Default
    /// `valid_to`.
    #[serde(default = "default_valid_to")]
    pub valid_to: String,
    /// True for each key's current version. Default `is_current`.
    #[serde(default = "default_current_flag")]
    pub current_flag: String,
    /// Where `valid_from` comes from. Default `cursor`.
    #[serde(default)]
    pub effective: ScdEffective,
}

impl Default for ScdNames {
    fn default() -> Self {
        ScdNames {
            valid_from: default_valid_from(),
            valid_to: default_valid_to(),
            current_flag: default_current_flag(),
            effective: ScdEffective::default(),
        }
    }
}

fn default_valid_from() -> String {
    "valid_from".to_owned()
}

fn default_valid_to() -> String {
    "valid_to".to_owned()
}

fn default_current_flag() -> String {
    "is_current".to_owned()
}

impl RawTableConfig {
    /// The problems of the table's SCD keys, each with the key it is found at.
    pub(super) fn scd_problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let type_2 = self.scd_type == Some(ScdType::Type2);
        if self.scd_type.is_some() && self.table_type != TableType::Dimension {
            problems.push((
                "scd_type",
                "`scd_type` is for dimension tables: add `table_type: dimension`".to_owned(),
            ));
        }
        if self.table_type == TableType::Dimension {
            match self.load_mode() {
                LoadMode::Merge => {}
                other => problems.push((
                    "load",
                    format!(
                        "a dimension is loaded by key (`load: merge`, type 1, or `scd_type: type_2`), not `load: {other}`{}",
                        if self.cdc_strategy == CdcStrategy::FullSync { " (the default of `full_sync`: set `load: merge`)" } else { "" }
                    ),
                )),
            }
        }
        if !type_2 {
            for (key, given) in [
                ("scd_columns", self.scd_columns.is_some()),
                ("surrogate_key", self.surrogate_key.is_some()),
                ("scd", self.scd != ScdNames::default()),
            ] {
                if given {
                    problems.push((
                        key,
                        format!("`{key}` describes the history of `scd_type: type_2`; this table keeps none (type 1 overwrites): set `scd_type: type_2`, or remove `{key}`"),
                    ));
                }
            }
            return problems;
        }
        if self.scd.effective == ScdEffective::Cursor
            && matches!(
                self.cdc_strategy,
                CdcStrategy::IdOnly | CdcStrategy::FullSync
            )
        {
            problems.push((
                if self.scd == ScdNames::default() { "scd_type" } else { "scd" },
                format!(
                    "`effective: cursor` dates each version by the row's timestamp cursor, and `cdc_strategy: {}` has none: set `scd: {{ effective: loaded_at }}`, or a `hybrid` or `timestamp_only` strategy",
                    self.cdc_strategy
                ),
            ));
        }
        if let (Some(business), Some(keys)) = (&self.business_key, &self.key_columns) {
            if business != keys {
                problems.push((
                    "business_key",
                    "`business_key` and `key_columns` name different columns; a dimension's key is its business key: give one of them".to_owned(),
                ));
            }
        }
        if self.scd_columns.as_ref().is_some_and(Vec::is_empty) {
            problems.push((
                "scd_columns",
                "no tracked columns: no change would ever make a version; list them, or leave `scd_columns` out to track every column outside the key".to_owned(),
            ));
        }
        let mut names: Vec<&str> = vec![
            &self.scd.valid_from,
            &self.scd.valid_to,
            &self.scd.current_flag,
        ];
        names.extend(self.surrogate_key.as_deref());
        let names_at = match self.scd == ScdNames::default() {
            true => "surrogate_key",
            false => "scd",
        };
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                problems.push((
                    names_at,
                    format!("`{name}` names two history columns: give each its own name"),
                ));
            }
            if name.starts_with(crate::naming::RESERVED_COLUMN_PREFIX) || name.is_empty() {
                problems.push((
                    names_at,
                    format!(
                        "`{name}` cannot name a history column: empty, or tidemark's own prefix `{}`",
                        crate::naming::RESERVED_COLUMN_PREFIX
                    ),
                ));
            }
        }
        problems
    }
}
