//! The one type authority (being written by the schema engineer; config.rs uses the four types
//! below, which need these serde derives: keep them).

use std::collections::BTreeSet;

/// How a table's columns are mapped.
#[derive(Debug, Clone, Default)]
pub struct SchemaOptions {
    pub tinyint1_as_boolean: bool,
    pub json_in_redshift: JsonTarget,
    pub include: Option<Vec<String>>,
    pub exclude: Vec<String>,
    pub as_text: BTreeSet<String>,
}

/// JSON columns in Redshift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonTarget {
    #[default]
    Super,
    Varchar,
}

/// Redshift distribution style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DistStyle {
    Auto,
    Even,
    All,
    Key,
}

/// Redshift table layout.
#[derive(Debug, Clone, Default)]
pub struct RedshiftTableOptions {
    pub diststyle: Option<DistStyle>,
    pub distkey: Option<String>,
    pub sortkey: Vec<String>,
}
