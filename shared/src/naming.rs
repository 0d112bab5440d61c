//! The one authority on names: table ids, target names, S3 keys and identifier quoting.
//!
//! No other module builds an S3 key or quotes an SQL identifier. Names that cannot be quoted or
//! placed in a key safely are rejected here, with the reason, before any SQL or key exists.

use chrono::{DateTime, Utc};
use std::fmt;

use crate::error::{Error, Result};

/// Longest MySQL identifier, in characters.
const MYSQL_IDENTIFIER_MAX_CHARS: usize = 64;
/// The longest identifier Redshift takes, in bytes.
pub const REDSHIFT_IDENTIFIER_MAX_BYTES: usize = 127;
/// The longest identifier PostgreSQL keeps whole (it silently cuts longer ones).
pub const POSTGRES_IDENTIFIER_MAX_BYTES: usize = 63;

/// A source table, `database.table`, as written in a pipeline's `tables`; in payloads and
/// stored records it is that text, checked when read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    database: String,
    table: String,
}

impl serde::Serialize for TableId {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TableId {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        TableId::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl TableId {
    /// Parses `database.table`. Exactly one dot; both parts valid MySQL identifiers.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.split('.');
        let (Some(database), Some(table), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::invalid_name(
                text,
                "a table must be written `database.table`, with exactly one dot",
            ));
        };
        Ok(TableId {
            database: validate_source_identifier(database)?.to_owned(),
            table: validate_source_identifier(table)?.to_owned(),
        })
    }

    /// The MySQL database (schema) name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The MySQL table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `` `database`.`table` `` for MySQL statements.
    pub fn mysql_quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_mysql(&self.database),
            quote_mysql(&self.table)
        )
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Checks that a MySQL identifier can be quoted and used in an S3 key.
pub fn validate_source_identifier(name: &str) -> Result<&str> {
    if name.is_empty() {
        return Err(Error::invalid_name(name, "the name is empty"));
    }
    if name.chars().count() > MYSQL_IDENTIFIER_MAX_CHARS {
        return Err(Error::invalid_name(
            name,
            format!("MySQL names are at most {MYSQL_IDENTIFIER_MAX_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid_name(
            name,
            "control characters are not allowed",
        ));
    }
    if name.contains('/') {
        return Err(Error::invalid_name(
            name,
            "`/` is not allowed: it would break the S3 key layout",
        ));
    }
    if name.ends_with(' ') {
        return Err(Error::invalid_name(
            name,
            "MySQL names cannot end with a space",
        ));
    }
    Ok(name)
}

/// Checks a pipeline name: it is an S3 key segment and a Step Functions value.
pub fn validate_pipeline_name(name: &str) -> Result<&str> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(Error::invalid_name(
            name,
            "pipeline names are 1 to 64 of `A-Z a-z 0-9 _ -`",
        ));
    }
    Ok(name)
}

/// Target table names with this prefix are tidemark's own (the load ledger, the load's staging
/// tables): a source table may not load into one.
pub const RESERVED_TARGET_PREFIX: &str = "tidemark_";

/// Target column names with this prefix are tidemark's own (the staging table's run and rank
/// columns): a source column may not carry one.
pub const RESERVED_COLUMN_PREFIX: &str = "_tidemark_";

/// A warehouse identifier (table or column): folded to lowercase, as Redshift does even for quoted
/// names, and checked against the limits of both warehouses.
pub fn target_identifier(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::invalid_name(name, "the name is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid_name(
            name,
            "control characters are not allowed",
        ));
    }
    let folded = name.to_lowercase();
    if folded.len() > REDSHIFT_IDENTIFIER_MAX_BYTES {
        return Err(Error::invalid_name(
            name,
            format!("warehouse names are at most {REDSHIFT_IDENTIFIER_MAX_BYTES} bytes"),
        ));
    }
    Ok(folded)
}

/// Checks that a folded identifier also fits PostgreSQL, which would silently truncate it.
pub fn check_postgres_identifier(name: &str) -> Result<()> {
    if name.len() > POSTGRES_IDENTIFIER_MAX_BYTES {
        return Err(Error::invalid_name(
            name,
            format!(
                "PostgreSQL names are at most {POSTGRES_IDENTIFIER_MAX_BYTES} bytes; set a shorter `target_name`"
            ),
        ));
    }
    Ok(())
}

/// Quotes a MySQL identifier with backticks, doubling any backtick inside.
pub fn quote_mysql(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a Redshift or PostgreSQL identifier with double quotes, doubling any quote inside.
pub fn quote_warehouse(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"` for the warehouse.
pub fn quote_warehouse_qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_warehouse(schema), quote_warehouse(table))
}

/// Where a pipeline keeps its objects: `s3://{bucket}/{prefix}/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLayout {
    prefix: String,
}

impl StorageLayout {
    /// A layout under `prefix` (leading and trailing slashes are ignored; may be empty).
    pub fn new(prefix: &str) -> Self {
        StorageLayout {
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    fn key(&self, rest: String) -> String {
        if self.prefix.is_empty() {
            rest
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// `{prefix}/data/{pipeline}/{db}/{table}/` — every data file of the table, and nothing else
    /// (the trailing slash keeps `orders/` from matching `orders_old/`).
    pub fn table_data_prefix(&self, pipeline: &str, table: &TableId) -> String {
        self.key(format!(
            "data/{pipeline}/{}/{}/",
            table.database, table.table
        ))
    }

    /// `{prefix}/data/{pipeline}/{db}/{table}/{run_id}/` — the data files of one run.
    pub fn run_data_prefix(&self, pipeline: &str, table: &TableId, run_id: &RunId) -> String {
        format!("{}{run_id}/", self.table_data_prefix(pipeline, table))
    }

    /// One Parquet part of a run.
    pub fn data_file_key(
        &self,
        pipeline: &str,
        table: &TableId,
        run_id: &RunId,
        chunk: u32,
        seq: u32,
    ) -> String {
        format!(
            "{}part-{chunk:05}-{seq:05}.parquet",
            self.run_data_prefix(pipeline, table, run_id)
        )
    }

    /// `{prefix}/lineage/{pipeline}/{db}/{table}/{run_id}-{event}.json`: a run's OpenLineage
    /// event (`start`, `complete`, `fail`).
    pub fn lineage_event_key(
        &self,
        pipeline: &str,
        table: &TableId,
        run_id: &RunId,
        event: &str,
    ) -> String {
        self.key(format!(
            "lineage/{pipeline}/{}/{}/{run_id}-{event}.json",
            table.database, table.table
        ))
    }

    /// `{prefix}/runs/{pipeline}/{db}/{table}/` — the table's run manifests.
    pub fn table_runs_prefix(&self, pipeline: &str, table: &TableId) -> String {
        self.key(format!(
            "runs/{pipeline}/{}/{}/",
            table.database, table.table
        ))
    }

    /// The committed manifest of a run.
    pub fn run_manifest_key(&self, pipeline: &str, table: &TableId, run_id: &RunId) -> String {
        format!("{}{run_id}.json", self.table_runs_prefix(pipeline, table))
    }

    /// The manifest one chunk of a run writes when it is fully extracted.
    pub fn chunk_manifest_key(
        &self,
        pipeline: &str,
        table: &TableId,
        run_id: &RunId,
        chunk: u32,
    ) -> String {
        format!(
            "{}{run_id}/chunk-{chunk:05}.json",
            self.table_runs_prefix(pipeline, table)
        )
    }

    /// What an unfinished chunk has written so far, as of the continuation whose next file is
    /// `next_seq`: one object per continuation, never overwritten by a later one, so a retried
    /// invocation reads exactly the progress its input names.
    pub fn chunk_progress_key(
        &self,
        pipeline: &str,
        table: &TableId,
        run_id: &RunId,
        chunk: u32,
        next_seq: u32,
    ) -> String {
        format!(
            "{}{run_id}/progress/chunk-{chunk:05}-{next_seq:05}.json",
            self.table_runs_prefix(pipeline, table)
        )
    }

    /// The sorted digests of one `unique` check (`check`, its place in the table's `checks`)
    /// over part `part` of the rows of the extraction invocation of `chunk` that began at file
    /// `first_seq`: a retried invocation rewrites the same objects. The commit merges them (see
    /// `quality::digest`).
    pub fn quality_digest_key(
        &self,
        pipeline: &str,
        table: &TableId,
        run_id: &RunId,
        place: (u32, u32, u32),
        check: usize,
    ) -> String {
        let (chunk, first_seq, part) = place;
        format!(
            "{}{run_id}/quality/chunk-{chunk:05}-{first_seq:05}-{part:03}-check-{check:03}.digest",
            self.table_runs_prefix(pipeline, table)
        )
    }

    /// The source schema a run began with, written by `begin` and embedded in the run manifest.
    pub fn run_schema_key(&self, pipeline: &str, table: &TableId, run_id: &RunId) -> String {
        format!(
            "{}{run_id}/schema.json",
            self.table_runs_prefix(pipeline, table)
        )
    }

    /// `{prefix}/copy/{pipeline}/{db}/{table}/` — the table's Redshift COPY manifests.
    pub fn table_copy_prefix(&self, pipeline: &str, table: &TableId) -> String {
        self.key(format!(
            "copy/{pipeline}/{}/{}/",
            table.database, table.table
        ))
    }

    /// The Redshift COPY manifest of a run.
    pub fn copy_manifest_key(&self, pipeline: &str, table: &TableId, run_id: &RunId) -> String {
        format!(
            "{}{run_id}.manifest",
            self.table_copy_prefix(pipeline, table)
        )
    }

    /// `{prefix}/watermarks/{pipeline}/` — every watermark of a pipeline.
    pub fn pipeline_watermarks_prefix(&self, pipeline: &str) -> String {
        self.key(format!("watermarks/{pipeline}/"))
    }

    /// The table's watermark object.
    pub fn watermark_key(&self, pipeline: &str, table: &TableId) -> String {
        format!(
            "{}{}/{}.json",
            self.pipeline_watermarks_prefix(pipeline),
            table.database,
            table.table
        )
    }

    /// Where earlier versions of the table's watermark are kept.
    pub fn watermark_history_prefix(&self, pipeline: &str, table: &TableId) -> String {
        self.key(format!(
            "watermarks/_history/{pipeline}/{}/{}/",
            table.database, table.table
        ))
    }

    /// `{prefix}/audit/{pipeline}/{db}/{table}/` — the table's record of operator edits, which
    /// nothing in tidemark deletes and no role may delete.
    pub fn audit_prefix(&self, pipeline: &str, table: &TableId) -> String {
        self.key(format!(
            "audit/{pipeline}/{}/{}/",
            table.database, table.table
        ))
    }

    /// One entry of the audit record: `{ts}-{edit_id}-{phase}.json`, sortable by time; the
    /// request and its outcome share the edit id.
    pub fn audit_key(
        &self,
        pipeline: &str,
        table: &TableId,
        at: DateTime<Utc>,
        edit_id: &str,
        phase: &str,
    ) -> String {
        format!(
            "{}{}-{edit_id}-{phase}.json",
            self.audit_prefix(pipeline, table),
            at.format("%Y%m%dT%H%M%S%6fZ")
        )
    }

    /// `{prefix}/repair/{pipeline}/{database}/{table}/{at}.json` — the keys a repair run of the
    /// table re-extracts, listed by the verify that found them at `at`.
    pub fn repair_keys_key(&self, pipeline: &str, table: &TableId, at: DateTime<Utc>) -> String {
        self.key(format!(
            "repair/{pipeline}/{}/{}/{}.json",
            table.database,
            table.table,
            at.format("%Y%m%dT%H%M%S%6fZ")
        ))
    }

    /// `{prefix}/verify/{pipeline}/{database}/{table}.json` — the table's latest verify report.
    pub fn verify_report_key(&self, pipeline: &str, table: &TableId) -> String {
        self.key(format!(
            "verify/{pipeline}/{}/{}.json",
            table.database, table.table
        ))
    }

    /// `{prefix}/executions/{pipeline}/{execution}/` — what one sync execution recorded: each
    /// table's outcome and the summary. `execution` is the execution's name (the last part of
    /// its id or ARN).
    pub fn execution_prefix(&self, pipeline: &str, execution: &str) -> String {
        let name = execution.rsplit(':').next().unwrap_or(execution);
        self.key(format!("executions/{pipeline}/{name}/"))
    }

    /// One table's outcome in `execution`.
    pub fn execution_outcome_key(
        &self,
        pipeline: &str,
        execution: &str,
        table: &TableId,
    ) -> String {
        format!(
            "{}{}/{}.json",
            self.execution_prefix(pipeline, execution),
            table.database,
            table.table
        )
    }

    /// The summary of `execution`, every table's outcome included.
    pub fn execution_summary_key(&self, pipeline: &str, execution: &str) -> String {
        format!("{}summary.json", self.execution_prefix(pipeline, execution))
    }

    /// One kept version: `{ts}-{run_id}.json`, sortable by time.
    pub fn watermark_history_key(
        &self,
        pipeline: &str,
        table: &TableId,
        version_stamp: &str,
        run_id: &RunId,
    ) -> String {
        format!(
            "{}{version_stamp}-{run_id}.json",
            self.watermark_history_prefix(pipeline, table)
        )
    }
}

/// A run's id: UTC time to the millisecond, then random hex — sortable by start time and unique.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `now`, with `entropy` as its random part.
    pub fn new(now: chrono::DateTime<chrono::Utc>, entropy: u64) -> Self {
        RunId(format!(
            "{}-{:012x}",
            now.format("%Y%m%dT%H%M%S%3fZ"),
            entropy & 0xffff_ffff_ffff
        ))
    }

    /// When the run began (UTC), for an id made by [`RunId::new`].
    pub fn started_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0
            .get(..19)
            .and_then(|time| chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%3fZ").ok())
            .map(|time| time.and_utc())
    }

    /// A new id that sorts after this one: at `now`, or one millisecond after this id's time
    /// when the clock says no later (a run committed with another that must load right after).
    pub fn next_after(&self, now: chrono::DateTime<chrono::Utc>, entropy: u64) -> Self {
        let candidate = RunId::new(now, entropy);
        if candidate > *self {
            return candidate;
        }
        match self.started_at() {
            Some(time) => RunId::new(time + chrono::Duration::milliseconds(1), entropy),
            // An id from outside, not made by `new`: a suffix sorts after it.
            None => RunId(format!("{}-{:012x}", self.0, entropy & 0xffff_ffff_ffff)),
        }
    }

    /// Accepts an id that came from outside (a payload, the CLI): only `0-9 A-Z a-z - _` survive
    /// into S3 keys.
    pub fn parse(text: &str) -> Result<Self> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(RunId(text.to_owned()))
        } else {
            Err(Error::invalid_name(
                text,
                "run ids are 1 to 64 of `A-Z a-z 0-9 - _`",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        RunId::parse(&text)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_run_id_sorts_after_its_predecessor_whatever_the_clock() {
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let first = RunId::new(at("2026-12-05T10:00:00.500Z"), 0xffff_ffff_ffff);
        let later = first.next_after(at("2026-12-05T10:00:01Z"), 1);
        assert!(later > first);
        assert!(later.as_str().starts_with("20261205T100001000Z"));
        // A clock behind the first id's: one millisecond after it, not before.
        let behind = first.next_after(at("2026-12-05T09:59:59Z"), 1);
        assert!(behind > first);
        assert!(
            behind.as_str().starts_with("20261205T100000501Z"),
            "{behind}"
        );
    }

    fn orders() -> TableId {
        TableId::parse("shop.orders").unwrap()
    }

    #[test]
    fn table_ids_need_exactly_one_dot() {
        assert_eq!(orders().database(), "shop");
        assert_eq!(orders().table(), "orders");
        for bad in ["orders", "a.b.c", ".orders", "shop.", ""] {
            assert!(TableId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn unsafe_names_are_rejected_with_the_reason() {
        let err = TableId::parse("shop.or/ders").unwrap_err().to_string();
        assert!(err.contains("S3 key"), "{err}");
        assert!(TableId::parse("shop.a\nb").is_err());
        assert!(TableId::parse(&format!("shop.{}", "x".repeat(65))).is_err());
        assert!(TableId::parse("shop.trailing ").is_err());
    }

    #[test]
    fn awkward_but_legal_names_are_quoted_not_rejected() {
        let table = TableId::parse("shop.we`ird; drop \"x\"").unwrap();
        assert_eq!(table.mysql_quoted(), "`shop`.`we``ird; drop \"x\"`");
        assert_eq!(quote_warehouse("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_warehouse_qualified("analytics", "ordérs"),
            "\"analytics\".\"ordérs\""
        );
    }

    #[test]
    fn target_identifiers_fold_to_lowercase_and_respect_limits() {
        assert_eq!(target_identifier("Orders").unwrap(), "orders");
        assert!(target_identifier(&"é".repeat(64)).is_err());
        assert!(check_postgres_identifier(&"x".repeat(64)).is_err());
        assert!(check_postgres_identifier(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let layout = StorageLayout::new("/tidemark/");
        let run = RunId::parse("20261127T041530123Z-0000000000ab").unwrap();
        assert_eq!(
            layout.data_file_key("default", &orders(), &run, 3, 12),
            "tidemark/data/default/shop/orders/20261127T041530123Z-0000000000ab/part-00003-00012.parquet"
        );
        assert_eq!(
            layout.run_manifest_key("default", &orders(), &run),
            "tidemark/runs/default/shop/orders/20261127T041530123Z-0000000000ab.json"
        );
        assert_eq!(
            layout.copy_manifest_key("default", &orders(), &run),
            "tidemark/copy/default/shop/orders/20261127T041530123Z-0000000000ab.manifest"
        );
        assert_eq!(
            layout.watermark_key("default", &orders()),
            "tidemark/watermarks/default/shop/orders.json"
        );
        assert_eq!(
            layout.watermark_history_key("default", &orders(), "20261127T041530Z", &run),
            "tidemark/watermarks/_history/default/shop/orders/20261127T041530Z-20261127T041530123Z-0000000000ab.json"
        );
        assert_eq!(
            StorageLayout::new("").watermark_key("p", &orders()),
            "watermarks/p/shop/orders.json"
        );
    }

    #[test]
    fn table_prefixes_isolate_tables_that_share_a_stem() {
        let layout = StorageLayout::new("t");
        let old = TableId::parse("shop.orders_old").unwrap();
        let orders_prefix = layout.table_data_prefix("p", &orders());
        assert!(orders_prefix.ends_with('/'));
        assert!(!layout
            .table_data_prefix("p", &old)
            .starts_with(&orders_prefix));
    }

    #[test]
    fn run_ids_sort_by_time_and_reject_path_characters() {
        let early = chrono::DateTime::parse_from_rfc3339("2026-11-27T04:15:30.123Z")
            .unwrap()
            .to_utc();
        let late = early + chrono::Duration::milliseconds(1);
        assert!(RunId::new(early, u64::MAX) < RunId::new(late, 0));
        assert_eq!(
            RunId::new(early, 0xab).as_str(),
            "20261127T041530123Z-0000000000ab"
        );
        assert!(RunId::parse("../x").is_err());
        assert!(RunId::parse("").is_err());
    }

    #[test]
    fn pipeline_names_are_key_safe() {
        assert!(validate_pipeline_name("default-2").is_ok());
        assert!(validate_pipeline_name("a/b").is_err());
        assert!(validate_pipeline_name("").is_err());
    }
}
