//! The key reconciliation behind `deletes`: which target rows' keys are gone from the source,
//! found as `verify` finds differences — segment checksums computed in each engine, read row by
//! row only where they disagree — over the key columns alone.

use std::time::Instant;

use super::{compare, Engine, Fingerprint, Session, Side, VerifyOptions};
use crate::config::{Pipeline, TableConfig};
use crate::error::{Error, Result};
use crate::naming::TableId;
use crate::schema::TableSchema;
use crate::services::Services;

/// What a reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciliation {
    /// The target keys gone from the source, each as one text
    /// ([`super::fingerprint::key_identity`]).
    Gone {
        /// The keys, in key order.
        keys: Vec<String>,
        /// Rows compared in the source.
        source_rows: u64,
        /// Rows compared in the target (those standing for source rows).
        target_rows: u64,
    },
    /// Nothing was compared, for this reason; the next sync tries again.
    Skipped(String),
}

/// Compares the keys of `table` (whose rows the run's `schema` describes, keyed by
/// `key_columns`, source names) in the source with those of its target table.
pub async fn gone_keys(
    services: &Services,
    pipeline: &Pipeline,
    table_config: &TableConfig,
    table: &TableId,
    schema: &TableSchema,
    key_columns: &[String],
) -> Result<Reconciliation> {
    let started = Instant::now();
    let target = services.target(&pipeline.target).await?;
    let target_table = table_config.target_table(table)?;
    let Some(live_rows) = target
        .live_rows(&target_table, table_config.current_flag())
        .await?
    else {
        return Ok(Reconciliation::Skipped(
            "the target table does not exist yet: nothing can have been deleted from it".to_owned(),
        ));
    };
    let keys_only = TableSchema {
        columns: schema
            .columns
            .iter()
            .filter(|c| key_columns.contains(&c.name))
            .cloned()
            .collect(),
        ..schema.clone()
    };
    let fingerprint = Fingerprint::new(
        &keys_only,
        key_columns,
        table_config.nul_in_text,
        target.dialect(),
    )
    .ok_or_else(|| {
        Error::InvalidRequest(format!(
            "a key column of `{table}` ({}) is not an extracted column; check `key_columns` and `columns`",
            key_columns.join(", ")
        ))
    })?;
    let source = services.source(pipeline).await?;
    let mut conn = source.conn().await?;
    let mut source_side = Side {
        engine: Engine::Mysql,
        table: table.mysql_quoted(),
        session: Session::Source {
            conn: &mut conn,
            source: &source,
        },
        bytes_read: 0,
    };
    let mut target_side = Side {
        engine: fingerprint.target(),
        table: live_rows,
        session: Session::Target(&target),
        bytes_read: 0,
    };
    let say = |message: String| tracing::info!(table = %table, "reconciling keys: {message}");
    let compared = compare(
        &mut source_side,
        &mut target_side,
        &fingerprint,
        VerifyOptions::default(),
        None,
        &say,
    )
    .await?;
    if compared.source_rows == 0 && compared.target_rows > 0 {
        // Deleting every row is more often a mistake (a source truncated during a migration, a
        // grant lost) than the truth, and cannot be undone.
        return Ok(Reconciliation::Skipped(format!(
            "the source table is empty and the target holds {} rows: tidemark does not delete a whole table on an empty read; if the source really is empty, empty the target yourself",
            compared.target_rows
        )));
    }
    let keys: Vec<String> = compared
        .target
        .keys()
        .filter(|key| !compared.source.contains_key(*key))
        .map(|key| super::fingerprint::key_identity(key))
        .collect();
    tracing::info!(
        table = %table,
        source_rows = compared.source_rows,
        target_rows = compared.target_rows,
        segments_differing = compared.segments_differing,
        gone = keys.len(),
        bytes_read = source_side.bytes_read + target_side.bytes_read,
        seconds = started.elapsed().as_secs_f64(),
        "keys reconciled"
    );
    Ok(Reconciliation::Gone {
        keys,
        source_rows: compared.source_rows,
        target_rows: compared.target_rows,
    })
}
