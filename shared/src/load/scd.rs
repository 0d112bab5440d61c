//! The statements of a type-2 dimension's load (`scd_type: type_2`): each staged row placed in
//! its key's history, new versions made where the tracked columns change, the current version
//! updated in place where only untracked columns do, all in the load's one transaction.
//!
//! Every staged row (one per key and `valid_from`, the latest run's) lands in a *slot*: the
//! target version whose validity contains its `valid_from`, or the gap before the key's next
//! version (the tail of a key with no current version, or before its first). Within a slot, in
//! `valid_from` order, a row opens a new version when its tracked hash differs from the one
//! before it (the slot's version first); rows that do not (and a row at the slot version's own
//! `valid_from`) belong to the version before them. So a re-read row never makes a version, every
//! distinct version of several pending runs becomes its own, and a version arriving late (before
//! the current one) is put in its place in the chain: the version it falls into ends where it
//! begins, and it ends where that one ended. A closed version's own columns are never rewritten;
//! the current version takes its untracked changes in place.

use crate::error::Result;
use crate::naming::quote_warehouse;
use crate::schema::{ColumnType, Warehouse};

use super::sql::{insert_value, key_condition, LoadPlan, Role, ScdPlan, RUN_COLUMN};

/// The column of a type-2 row holding the MD5 of its tracked columns' values.
pub const SCD_HASH_COLUMN: &str = "_tidemark_scd_hash";
/// The column of a type-2 row holding the MD5 of all its source columns' values.
pub const ROW_HASH_COLUMN: &str = "_tidemark_row_hash";
/// The session's new versions.
pub const NEW_VERSIONS_TABLE: &str = "tidemark_new_versions";

/// The session's tables a type-2 load makes besides the versions (`deduped`): the slots and
/// in-place updates are subqueries, so that a Data API batch holds more runs.
pub const WORK_TABLES: [&str; 1] = [NEW_VERSIONS_TABLE];

const FROM: &str = "_tidemark_from";
const ANCHORED: &str = "_tidemark_anchored";
const SLOT: &str = "_tidemark_slot";
const ISLAND: &str = "_tidemark_island";
const FIRST: &str = "_tidemark_first";
const TO: &str = "_tidemark_to";

/// The statements that turn the staged rows into versions, after the runs already loaded were
/// skipped: the versions ([`Role::Dedupe`], into `deduped`), their slots, the new versions and
/// in-place updates, the data runs' ledger rows (`ledger_insert` given the inserted and deleted
/// counts per run; only with data runs among the runs), the in-place updates, the closing of the
/// versions new ones follow, and the inserts.
pub(super) fn statements(
    dialect: Warehouse,
    plan: &LoadPlan,
    scd: &ScdPlan,
    target: &str,
    staging: &str,
    deduped: &str,
    ledger_insert: impl Fn(&str, Option<&str>) -> Result<String>,
) -> Result<Vec<(Role, String)>> {
    let q = |name: &str| quote_warehouse(name);
    let run = q(RUN_COLUMN);
    let columns: Vec<String> = plan
        .table_schema
        .columns
        .iter()
        .map(|c| q(&c.target_name))
        .collect();
    let column_list = columns.join(", ");
    let keys: Vec<String> = plan.key_columns.iter().map(|k| q(k)).collect();
    let key_list = keys.join(", ");
    let qualified_keys = |alias: &str| {
        keys.iter()
            .map(|k| format!("\"{alias}\".{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (valid_from, valid_to, current) =
        (q(&scd.valid_from), q(&scd.valid_to), q(&scd.current_flag));
    let (from, anchored, slot, island, first, to) =
        (q(FROM), q(ANCHORED), q(SLOT), q(ISLAND), q(FIRST), q(TO));
    let (scd_hash, row_hash) = (q(SCD_HASH_COLUMN), q(ROW_HASH_COLUMN));
    let new_versions = q(NEW_VERSIONS_TABLE);
    let tracked: Vec<&crate::schema::Column> = plan
        .table_schema
        .columns
        .iter()
        .filter(|c| scd.tracked.contains(&c.target_name))
        .collect();
    let all: Vec<&crate::schema::Column> = plan.table_schema.columns.iter().collect();
    let mut out = Vec::new();

    // One row per key and `valid_from` (the latest run's; within a run, the newest cursor: two
    // reads of a key by one run share `valid_from` under `effective: loaded_at`), with its hashes.
    let newest = match &plan.cursor_column {
        Some(cursor) => format!("{run} DESC, {} DESC NULLS LAST", q(cursor)),
        None => format!("{run} DESC"),
    };
    out.push((
        Role::Dedupe,
        format!(
            "CREATE TEMP TABLE {deduped} AS\nSELECT {column_list}, {run}, {from}, {} AS {scd_hash}, {} AS {row_hash} FROM (\n    SELECT {column_list}, {run}, {from},\n        ROW_NUMBER() OVER (PARTITION BY {key_list}, {from} ORDER BY {newest}) AS \"_tidemark_rank\"\n    FROM (SELECT {column_list}, {run}, {} AS {from} FROM {staging}) AS \"timed\"\n) AS \"ranked\"\nWHERE \"_tidemark_rank\" = 1",
            values_hash(dialect, &tracked),
            values_hash(dialect, &all),
            effective(plan)?,
        ),
    ));
    // Each version's slot: the target version containing it, or the gap before the next one.
    let placed = format!(
            "SELECT \"v\".*,\n    \"a\".{valid_from} AS \"_tidemark_anchor_from\", \"a\".{valid_to} AS \"_tidemark_anchor_to\",\n    \"a\".{current} AS \"_tidemark_anchor_current\", \"a\".{scd_hash} AS \"_tidemark_anchor_hash\",\n    \"a\".{row_hash} AS \"_tidemark_anchor_row\", \"n\".\"_tidemark_next\",\n    CASE WHEN \"a\".{valid_from} IS NULL THEN 0 ELSE 1 END AS {anchored},\n    COALESCE(\"a\".{valid_from}, \"n\".\"_tidemark_next\") AS {slot}\nFROM {deduped} AS \"v\"\nLEFT JOIN {target} AS \"a\" ON {} AND \"a\".{valid_from} <= \"v\".{from}\n    AND (\"a\".{valid_to} IS NULL OR \"v\".{from} < \"a\".{valid_to})\nLEFT JOIN (\n    SELECT {}, \"w\".{from}, MIN(\"t\".{valid_from}) AS \"_tidemark_next\"\n    FROM {deduped} AS \"w\"\n    JOIN {target} AS \"t\" ON {} AND \"t\".{valid_from} > \"w\".{from}\n    GROUP BY {}, \"w\".{from}\n) AS \"n\" ON {} AND \"n\".{from} = \"v\".{from}",
            key_condition(plan, "\"a\"", "\"v\"")?,
            qualified_keys("w"),
            key_condition(plan, "\"t\"", "\"w\"")?,
            qualified_keys("w"),
            key_condition(plan, "\"n\"", "\"v\"")?,
        );
    // Islands: a row opens one when its tracked hash differs from the row before it in its slot.
    let partition = format!("{key_list}, {anchored}, {slot}");
    let islands = format!(
        "SELECT \"c\".*, SUM(\"c\".\"_tidemark_change\") OVER (PARTITION BY {partition} ORDER BY \"c\".{from} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {island}\nFROM (\n    SELECT \"p\".*, CASE\n        WHEN \"p\".{from} = \"p\".\"_tidemark_anchor_from\" THEN 0\n        WHEN COALESCE(LAG(\"p\".{scd_hash}) OVER (PARTITION BY {partition} ORDER BY \"p\".{from}), \"p\".\"_tidemark_anchor_hash\") = \"p\".{scd_hash} THEN 0\n        ELSE 1 END AS \"_tidemark_change\"\n    FROM (\n{placed}\n    ) AS \"p\"\n) AS \"c\""
    );
    // A new version per island: from its first row, with its last row's values, to the next
    // island's start or the slot's end.
    out.push((
        Role::WorkTable,
        format!(
            "CREATE TEMP TABLE {new_versions} AS\nSELECT {column_list}, {run}, {scd_hash}, {row_hash}, {island}, {first},\n    COALESCE(LEAD({first}) OVER (PARTITION BY {partition} ORDER BY {island}),\n        CASE WHEN {anchored} = 1 THEN \"_tidemark_anchor_to\" ELSE \"_tidemark_next\" END) AS {to},\n    {anchored}, \"_tidemark_anchor_from\", \"_tidemark_anchor_current\"\nFROM (\n    SELECT \"i\".*, MIN(\"i\".{from}) OVER (PARTITION BY {partition}, {island}) AS {first},\n        ROW_NUMBER() OVER (PARTITION BY {partition}, {island} ORDER BY \"i\".{from} DESC) AS \"_tidemark_rank\"\n    FROM (\n{islands}\n    ) AS \"i\"\n    WHERE \"i\".{island} > 0\n) AS \"x\"\nWHERE \"_tidemark_rank\" = 1"
        ),
    ));
    // Inserted: the new versions; deleted (no longer current): the new versions born closed,
    // and each current version a new one follows.
    if plan.runs.iter().any(|r| !r.deletion) {
        out.push((
            Role::RecordLedger,
            ledger_insert(
                &format!("SELECT {run}, COUNT(*) AS \"n\" FROM {new_versions} GROUP BY {run}"),
                Some(&format!("SELECT {run}, SUM(CASE WHEN {to} IS NOT NULL THEN 1 ELSE 0 END + CASE WHEN {island} = 1 AND \"_tidemark_anchor_current\" THEN 1 ELSE 0 END) AS \"n\" FROM {new_versions} GROUP BY {run}")),
            )?,
        ));
    }
    // The current version's own later rows: its untracked columns change in place.
    let in_place = format!(
            "SELECT {column_list}, {scd_hash}, {row_hash} FROM (\n    SELECT \"i\".*, ROW_NUMBER() OVER (PARTITION BY {} ORDER BY \"i\".{from} DESC) AS \"_tidemark_rank\"\n    FROM (\n{islands}\n    ) AS \"i\"\n    WHERE \"i\".{island} = 0 AND \"i\".\"_tidemark_anchor_current\"\n) AS \"x\"\nWHERE \"_tidemark_rank\" = 1 AND {row_hash} <> \"_tidemark_anchor_row\"",
            qualified_keys("i"),
        );
    let set_values = plan
        .table_schema
        .columns
        .iter()
        .filter(|c| !plan.key_columns.contains(&c.target_name))
        .map(|c| {
            let name = q(&c.target_name);
            format!(
                "{name} = {}",
                insert_value(dialect, plan, &c.ty, &format!("\"u\".{name}"))
            )
        })
        .chain([
            format!("{scd_hash} = \"u\".{scd_hash}"),
            format!("{row_hash} = \"u\".{row_hash}"),
        ])
        .collect::<Vec<_>>()
        .join(", ");
    out.push((
        Role::UpdateTarget,
        format!(
            "UPDATE {target}\nSET {set_values}\nFROM (\n{in_place}\n) AS \"u\"\nWHERE {} AND {target}.{current}",
            key_condition(plan, target, "\"u\"")?
        ),
    ));
    // The version each slot's first new version follows ends where it begins.
    let closing = format!(
        "FROM (\n    SELECT {key_list}, \"_tidemark_anchor_from\", MIN({first}) AS \"_tidemark_close\"\n    FROM {new_versions} WHERE {anchored} = 1\n    GROUP BY {key_list}, \"_tidemark_anchor_from\"\n) AS \"c\"\nWHERE {} AND {target}.{valid_from} = \"c\".\"_tidemark_anchor_from\"",
        key_condition(plan, target, "\"c\"")?
    );
    out.push((
        Role::UpdateTarget,
        format!(
            "UPDATE {target}\nSET {valid_to} = \"c\".\"_tidemark_close\"\n{closing} AND NOT {target}.{current}"
        ),
    ));
    out.push((
        Role::DeleteTarget,
        format!(
            "UPDATE {target}\nSET {valid_to} = \"c\".\"_tidemark_close\", {current} = FALSE\n{closing} AND {target}.{current}"
        ),
    ));
    let mut insert_columns = columns.clone();
    let mut insert_values: Vec<String> = plan
        .table_schema
        .columns
        .iter()
        .map(|c| insert_value(dialect, plan, &c.ty, &q(&c.target_name)))
        .collect();
    if let Some(surrogate) = &scd.surrogate_key {
        insert_columns.push(q(surrogate));
        insert_values.push(format!(
            "MD5({} || '|' || TO_CHAR({first}, 'YYYY-MM-DD HH24:MI:SS.US'))",
            super::sql::key_identity(dialect, plan)?
        ));
    }
    insert_columns.extend([
        valid_from.clone(),
        valid_to.clone(),
        current.clone(),
        scd_hash.clone(),
        row_hash.clone(),
    ]);
    insert_values.extend([first.clone(), to.clone()]);
    for (role, current_value, which) in [
        (Role::InsertTarget, "TRUE", "IS NULL"),
        (Role::InsertClosed, "FALSE", "IS NOT NULL"),
    ] {
        let mut values = insert_values.clone();
        values.extend([current_value.to_owned(), scd_hash.clone(), row_hash.clone()]);
        out.push((
            role,
            format!(
                "INSERT INTO {target} ({})\nSELECT {} FROM {new_versions} WHERE {to} {which}",
                insert_columns.join(", "),
                values.join(", ")
            ),
        ));
    }
    Ok(out)
}

/// The statement that closes the current version of each key the deletion runs found gone
/// (`doomed`, already narrowed to `removed` by `live`): it ends when the deletion was found (the
/// deletion run's `version_time`), never before it began. No row is removed.
pub(super) fn close_gone(
    plan: &LoadPlan,
    scd: &ScdPlan,
    target: &str,
    identity: &str,
    live: &str,
) -> Result<String> {
    let run = quote_warehouse(RUN_COLUMN);
    let mut arms = Vec::new();
    for (index, planned) in plan.runs.iter().enumerate() {
        if let (true, Some(time)) = (planned.deletion, &planned.version_time) {
            arms.push(format!(
                "WHEN {index} THEN CAST({} AS TIMESTAMP)",
                super::sql::literal(time)?
            ));
        }
    }
    let loaded_at =
        super::sql::literal(&plan.loaded_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string())?;
    let closed_at = match arms.is_empty() {
        true => format!("CAST({loaded_at} AS TIMESTAMP)"),
        false => format!(
            "CASE \"d\".{run} {} ELSE CAST({loaded_at} AS TIMESTAMP) END",
            arms.join(" ")
        ),
    };
    let (valid_from, valid_to, current) = (
        quote_warehouse(&scd.valid_from),
        quote_warehouse(&scd.valid_to),
        quote_warehouse(&scd.current_flag),
    );
    let key = quote_warehouse(super::sql::GONE_KEY_COLUMN);
    Ok(format!(
        "UPDATE {target}\nSET {valid_to} = GREATEST({valid_from}, \"d\".\"_tidemark_close\"), {current} = FALSE\nFROM (\n    SELECT \"d\".{key}, {closed_at} AS \"_tidemark_close\"\n    FROM {} AS \"d\"\n    WHERE \"d\".{key} IN (SELECT {key} FROM {})\n) AS \"d\"\nWHERE {live}{identity} = \"d\".{key}",
        quote_warehouse(super::sql::DOOMED_TABLE),
        quote_warehouse(super::sql::REMOVED_TABLE),
    ))
}

/// When each staged row's version begins: its cursor (`effective: cursor`; a row without one,
/// when its run began), or when its run began (`effective: loaded_at`).
fn effective(plan: &LoadPlan) -> Result<String> {
    let run = quote_warehouse(RUN_COLUMN);
    let mut arms = Vec::new();
    for (index, planned) in plan.runs.iter().enumerate() {
        if planned.deletion {
            continue;
        }
        let time = match &planned.version_time {
            Some(time) => time.clone(),
            None => planned
                .run_id
                .started_at()
                .map(|at| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_else(|| plan.loaded_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        };
        arms.push(format!(
            "WHEN {index} THEN CAST({} AS TIMESTAMP)",
            super::sql::literal(&time)?
        ));
    }
    let run_time = format!("CASE {run} {} END", arms.join(" "));
    let cursor_dated = plan
        .runs
        .iter()
        .any(|r| !r.deletion && r.version_time.is_none());
    Ok(match (&plan.cursor_column, cursor_dated) {
        (Some(cursor), true) => format!(
            "COALESCE(CAST({} AS TIMESTAMP), {run_time})",
            quote_warehouse(cursor)
        ),
        _ => run_time,
    })
}

/// The MD5 of `columns`' values, NULL-safe, each value's MD5 (or `N` for NULL) joined by `|`:
/// computed on staged rows only, so both sides of a comparison are the same warehouse's text of
/// the same staging types. Binary columns count by length and the MD5 of their first 1 KiB in
/// Redshift, whose VARCHAR cannot hold more.
fn values_hash(dialect: Warehouse, columns: &[&crate::schema::Column]) -> String {
    if columns.is_empty() {
        return "MD5('')".to_owned();
    }
    let fields: Vec<String> = columns
        .iter()
        .map(|column| {
            let c = quote_warehouse(&column.target_name);
            match (&column.ty, dialect) {
                (ColumnType::Boolean { .. }, _) => {
                    format!("CASE WHEN {c} IS NULL THEN 'N' WHEN {c} THEN '1' ELSE '0' END")
                }
                (ColumnType::Binary { .. }, Warehouse::Postgres) => {
                    format!("COALESCE(MD5({c}), 'N')")
                }
                (ColumnType::Binary { .. }, Warehouse::Redshift) => format!(
                    "COALESCE(MD5(FROM_VARBYTE(SUBSTRING({c}, 1, 1024), 'hex')) || ':' || CAST(OCTET_LENGTH({c}) AS VARCHAR), 'N')"
                ),
                (ColumnType::Json, Warehouse::Postgres) => {
                    format!("COALESCE(MD5(CAST({c} AS TEXT)), 'N')")
                }
                _ => format!("COALESCE(MD5(CAST({c} AS VARCHAR)), 'N')"),
            }
        })
        .collect();
    format!("MD5({})", fields.join(" || '|' || "))
}
