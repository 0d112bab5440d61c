//! `validate_counts`: the watermark's totals against the target's rows, its load ledger and the
//! source's rows up to the cursor, each difference judged `consistent`, `expected` (the strategy
//! or load mode explains it) or `mismatch`, with the command that fixes a wrong total. Reads
//! only; an operator action ([`super::operator`]).

use serde::{Deserialize, Serialize};

use crate::config::{CdcStrategy, LoadMode, Strategy};
use crate::cursor::Cursor;
use crate::error::Result;
use crate::load::{LedgerTotals, TargetCounts};
use crate::watermark::Totals;

use super::operator::TableRequest;
use super::watermark::{locate_table, target_name};
use crate::services::Services;

/// How one comparison of `validate_counts` came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// The numbers agree.
    Consistent,
    /// The numbers differ the way the strategy or load mode predicts (append keeps every version
    /// of a row; pending runs are not loaded yet).
    Expected,
    /// The numbers differ and nothing in the configuration explains it.
    Mismatch,
}

/// One comparison of `validate_counts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountCheck {
    /// `watermark_loaded_vs_ledger`, `watermark_extracted_vs_ledger`, `ledger_vs_target` or
    /// `source_vs_target`.
    pub name: String,
    /// How it came out.
    pub outcome: CheckOutcome,
    /// Which numbers were compared, and why they may differ.
    pub detail: String,
    /// The command that corrects it, when tidemark knows the right number.
    pub fix: Option<String>,
}

/// `validate_counts`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountReport {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// Target table, `schema.table`.
    pub target: String,
    /// How rows are found.
    pub strategy: CdcStrategy,
    /// How rows meet the target.
    pub load_mode: LoadMode,
    /// The watermark's totals (zero when it has none).
    pub watermark: Totals,
    /// Rows in committed runs not loaded yet.
    pub pending_rows: u64,
    /// The extraction cursor the source count stops at.
    pub cursor: Cursor,
    /// `COUNT(*)` of the source up to the cursor (the whole table without a cursor).
    pub source_rows: u64,
    /// The target's rows and its ledger's sums.
    pub target_counts: TargetCounts,
    /// Each comparison.
    pub checks: Vec<CountCheck>,
    /// `consistent` when no check is a mismatch, else `mismatch`.
    pub verdict: String,
}

/// `validate_counts`: the watermark's totals against the target's `COUNT(*)`, the load ledger's
/// sums for that target, and the source's `COUNT(*)` up to the cursor. It changes nothing; a
/// mismatch it can correct comes with the exact `set-count` command.
pub async fn validate_counts(services: &Services, request: &TableRequest) -> Result<CountReport> {
    let (pipeline_name, pipeline, table_config, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let target = target_name(table_config, &table)?;
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table)
        .await?
        .map(|v| v.record);
    let totals = watermark
        .as_ref()
        .map(|w| w.totals.clone())
        .unwrap_or_default();
    let pending_rows: u64 = watermark
        .iter()
        .flat_map(|w| &w.pending_runs)
        .map(|r| r.rows)
        .sum();
    let cursor = watermark
        .as_ref()
        .map(|w| w.extract.cursor.clone())
        .unwrap_or_default();
    let (column, value) = match &table_config.strategy {
        Strategy::Hybrid { cursor_column } | Strategy::TimestampOnly { cursor_column } => {
            (Some(cursor_column.clone()), cursor.timestamp.clone())
        }
        Strategy::IdOnly { id_column, .. } => (
            id_column.clone().or_else(|| {
                table_config
                    .key_columns
                    .as_ref()
                    .filter(|keys| keys.len() == 1)
                    .map(|keys| keys[0].clone())
            }),
            cursor.key.first().cloned(),
        ),
        Strategy::FullSync | Strategy::CustomSql { .. } => (None, None),
    };
    let source = services.source(pipeline).await?;
    let mut conn = source.conn().await?;
    let source_rows = source
        .within(
            "counting the source's rows",
            crate::source::count_rows_up_to(&mut conn, &table, column.as_deref(), value.as_deref()),
        )
        .await?;
    let client = services.target(&pipeline.target).await?;
    let target_counts = client.counts(&target, table_config.current_flag()).await?;
    let schema = match services.config.connections.get(&pipeline.target) {
        Some(crate::config::Connection::Postgres(c)) => c.schema.clone(),
        Some(crate::config::Connection::Redshift(c)) => c.schema.clone(),
        _ => String::new(),
    };
    let select = format!(
        "-t {}{}",
        request.table,
        request
            .pipeline
            .as_ref()
            .map(|p| format!(" -p {p}"))
            .unwrap_or_default()
    );
    let checks = count_checks(
        &CountFacts {
            totals: &totals,
            pending_rows,
            source_rows,
            target: &target_counts,
            load_mode: table_config.load_mode(),
            strategy: table_config.strategy.kind(),
        },
        &select,
    );
    let verdict = if checks.iter().any(|c| c.outcome == CheckOutcome::Mismatch) {
        "mismatch"
    } else {
        "consistent"
    };
    Ok(CountReport {
        pipeline: pipeline_name,
        table: request.table.clone(),
        target: format!("{schema}.{target}"),
        strategy: table_config.strategy.kind(),
        load_mode: table_config.load_mode(),
        watermark: totals,
        pending_rows,
        cursor,
        source_rows,
        target_counts,
        checks,
        verdict: verdict.to_owned(),
    })
}

/// The numbers `validate_counts` compares.
struct CountFacts<'a> {
    totals: &'a Totals,
    pending_rows: u64,
    source_rows: u64,
    target: &'a TargetCounts,
    load_mode: LoadMode,
    strategy: CdcStrategy,
}

/// The comparisons, worded for an operator. `select` is the command line's `-t T [-p P]`.
fn count_checks(facts: &CountFacts<'_>, select: &str) -> Vec<CountCheck> {
    let ledger: &LedgerTotals = &facts.target.ledger;
    let totals = facts.totals;
    let mut checks = Vec::new();
    if ledger.replayed_runs > 0 {
        // A replay loads runs the watermark counted once already, under ids of its own, and
        // may have dropped the ledger rows of a table that no longer existed.
        let detail = format!(
            "the target's ledger holds {} run(s) loaded by `tidemark replay`, which the watermark does not count: its totals are not compared with the ledger's",
            ledger.replayed_runs
        );
        for name in [
            "watermark_loaded_vs_ledger",
            "watermark_extracted_vs_ledger",
        ] {
            checks.push(check(name, CheckOutcome::Expected, detail.clone(), None));
        }
    } else {
        checks.extend(watermark_checks(totals, ledger, facts.pending_rows, select));
    }
    checks.extend(target_checks(facts));
    checks
}

/// One comparison's result.
fn check(name: &str, outcome: CheckOutcome, detail: String, fix: Option<String>) -> CountCheck {
    CountCheck {
        name: name.to_owned(),
        outcome,
        detail,
        fix,
    }
}

/// The watermark's totals against the ledger's (a table no replay loaded into).
fn watermark_checks(
    totals: &Totals,
    ledger: &LedgerTotals,
    pending_rows: u64,
    select: &str,
) -> Vec<CountCheck> {
    let mut checks = Vec::new();
    checks.push(if totals.rows_loaded == ledger.rows_inserted {
        check(
            "watermark_loaded_vs_ledger",
            CheckOutcome::Consistent,
            format!("the watermark's rows_loaded {} equals the rows the ledger's {} run(s) inserted", totals.rows_loaded, ledger.runs),
            None,
        )
    } else {
        check(
            "watermark_loaded_vs_ledger",
            CheckOutcome::Mismatch,
            format!(
                "the watermark counts {} rows loaded but the target's ledger records {} rows inserted by {} run(s); the ledger is written in each load's own transaction, so it is right: the watermark's total was edited by hand (`set-count`) or restored from an older version",
                totals.rows_loaded, ledger.rows_inserted, ledger.runs
            ),
            Some(format!(
                "tidemark watermark-count set-count {select} --count {} --mode absolute",
                ledger.rows_inserted
            )),
        )
    });
    let accounted = ledger.rows_staged + pending_rows;
    checks.push(if totals.rows_extracted == accounted {
        check(
            "watermark_extracted_vs_ledger",
            CheckOutcome::Consistent,
            format!("the watermark's rows_extracted {} equals the rows staged by loaded runs plus the rows of pending runs", totals.rows_extracted),
            None,
        )
    } else {
        check(
            "watermark_extracted_vs_ledger",
            CheckOutcome::Mismatch,
            format!(
                "the watermark counts {} rows extracted but loaded runs staged {} and pending runs hold {} ({accounted} in all); runs dropped by `reset --drop-pending` stay counted as extracted, and a hand edit or restore also explains it",
                totals.rows_extracted, ledger.rows_staged, pending_rows
            ),
            Some(format!(
                "tidemark watermark-count set-count {select} --count {accounted} --mode absolute --field rows-extracted"
            )),
        )
    });
    checks
}

/// The target's rows against the ledger's net, and against the source's.
fn target_checks(facts: &CountFacts<'_>) -> Vec<CountCheck> {
    let ledger: &LedgerTotals = &facts.target.ledger;
    let mut checks = Vec::new();
    let net = ledger.net_rows();
    checks.push(match facts.target.rows {
        None if ledger.runs == 0 => check(
            "ledger_vs_target",
            CheckOutcome::Consistent,
            "the target table does not exist yet and the ledger records no load".to_owned(),
            None,
        ),
        Some(rows) if i128::from(rows) == net => check(
            "ledger_vs_target",
            CheckOutcome::Consistent,
            format!("the target holds {rows} rows, what the ledger's loads net (inserted − deleted)"),
            None,
        ),
        rows => check(
            "ledger_vs_target",
            CheckOutcome::Mismatch,
            format!(
                "the target holds {} rows but the ledger's loads net {net} ({} inserted − {} deleted): rows were changed in the target outside tidemark (deleted, truncated, inserted by hand) or it was dropped and recreated; a full reload (`watermark reset`, then `sync`) rebuilds it",
                rows.map(|r| r.to_string()).unwrap_or_else(|| "no".to_owned()),
                ledger.rows_inserted,
                ledger.rows_deleted
            ),
            None,
        ),
    });
    let target = facts.target.rows.unwrap_or(0);
    let source = facts.source_rows;
    let pending = facts.pending_rows;
    let (outcome, detail) = match facts.load_mode {
        _ if target == source => (
            CheckOutcome::Consistent,
            format!("source and target both hold {source} rows up to the cursor"),
        ),
        LoadMode::Append if target > source => (
            CheckOutcome::Expected,
            format!("the target holds {target} rows, the source {source}: `append` keeps every extracted version of a row, so updated rows appear more than once"),
        ),
        _ if target < source && source - target <= pending => (
            CheckOutcome::Expected,
            format!("the target holds {target} rows, the source {source}: {pending} rows are in runs extracted but not loaded yet (`sync --redshift-only` loads them)"),
        ),
        LoadMode::Replace => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source}: `replace` copies the whole table at each sync, so the source changed since the last one (the next sync replaces the target)"),
        ),
        _ if target > source => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source} up to the cursor: `merge` collapses updates by key, so the extra rows were deleted in the source (incremental syncs do not see hard deletes) or inserted in the target by hand"),
        ),
        _ if facts.strategy == CdcStrategy::IdOnly => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source} up to the cursor: rows at or below the cursor's id were never extracted — their transaction committed after a later id's, by more ids than `id_lookback` re-reads, or the cursor was moved forward by hand; raise `id_lookback`, then `watermark set --id` to a lower id and `sync` to reload them"),
        ),
        _ => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source} up to the cursor: rows at or before the cursor were never extracted — they committed later than `lag` + `lookback` allows, or the cursor was moved forward by hand; `watermark set` to an earlier point (or `reset`) and `sync` reloads them"),
        ),
    };
    checks.push(check("source_vs_target", outcome, detail, None));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(facts: &CountFacts<'_>) -> Vec<CheckOutcome> {
        count_checks(facts, "-t shop.orders")
            .into_iter()
            .map(|c| c.outcome)
            .collect()
    }

    fn target(rows: u64, inserted: u64, deleted: u64, staged: u64) -> TargetCounts {
        TargetCounts {
            rows: Some(rows),
            ledger: LedgerTotals {
                runs: 2,
                rows_staged: staged,
                rows_inserted: inserted,
                rows_deleted: deleted,
                replayed_runs: 0,
            },
        }
    }

    #[test]
    fn append_keeps_updated_rows_and_pending_runs_explain_a_short_target() {
        let totals = Totals {
            rows_extracted: 15,
            rows_loaded: 12,
            ..Totals::default()
        };
        // 10 source rows, 2 of them updated once: append holds 12, merge would hold 10.
        let appended = target(12, 12, 0, 12);
        let facts = CountFacts {
            totals: &totals,
            pending_rows: 3,
            source_rows: 10,
            target: &appended,
            load_mode: LoadMode::Append,
            strategy: CdcStrategy::Hybrid,
        };
        use CheckOutcome::*;
        assert_eq!(
            outcomes(&facts),
            [Consistent, Consistent, Consistent, Expected]
        );
        let merged = target(10, 12, 2, 12);
        let merge = CountFacts {
            target: &merged,
            source_rows: 13,
            load_mode: LoadMode::Merge,
            ..facts
        };
        assert_eq!(
            outcomes(&merge),
            [Consistent, Consistent, Consistent, Expected]
        );
        let short = CountFacts {
            source_rows: 14,
            ..merge
        };
        assert_eq!(outcomes(&short)[3], Mismatch, "more missing than pending");
        let ids = CountFacts {
            strategy: CdcStrategy::IdOnly,
            ..short
        };
        let checks = count_checks(&ids, "-t shop.orders");
        assert!(
            checks[3].detail.contains("id_lookback"),
            "{}",
            checks[3].detail
        );
    }

    #[test]
    fn a_hand_edited_total_gets_the_command_that_restores_the_ledgers_number() {
        let totals = Totals {
            rows_extracted: 10,
            rows_loaded: 7,
            ..Totals::default()
        };
        let loaded = target(10, 10, 0, 10);
        let checks = count_checks(
            &CountFacts {
                totals: &totals,
                pending_rows: 0,
                source_rows: 10,
                target: &loaded,
                load_mode: LoadMode::Merge,
                strategy: CdcStrategy::Hybrid,
            },
            "-t shop.orders -p p",
        );
        assert_eq!(checks[0].outcome, CheckOutcome::Mismatch);
        assert_eq!(
            checks[0].fix.as_deref(),
            Some(
                "tidemark watermark-count set-count -t shop.orders -p p --count 10 --mode absolute"
            )
        );
        assert!(checks[1..]
            .iter()
            .all(|c| c.outcome == CheckOutcome::Consistent));
    }
}
