//! `scd_type: type_2` (issue #18) through the local state machine, into PostgreSQL and the
//! Redshift Data API stand-in: over several syncs — inserts, a tracked change, an untracked
//! change, re-read rows, a key changed twice in two pending runs loaded together, a version
//! arriving late, a delete and the key coming back — the target's history equals one built here,
//! independently, from the source's own timestamps; `valid_to` of each version is the next
//! version's `valid_from`; the ledger's inserted minus deleted versions equals the current rows;
//! the surrogate key is the MD5 of the key and `valid_from`. Also from a server in local time.

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark_tests::stack::{fast_runner, with_stack, with_stack_on, Stack, Target};
use tidemark_tests::tables::Table;
use tidemark_tests::MysqlServer;

/// One version as the test expects it.
#[derive(Debug, Clone, PartialEq)]
struct Version {
    name: String,
    tier: String,
    visits: i64,
    from: NaiveDateTime,
    /// `None` while current; `Some(None)` when a deletion closed it (at the deletion's time).
    to: Option<Option<NaiveDateTime>>,
}

/// The history the test expects, built from the source's own timestamps by the rules of the
/// README's "Slowly changing dimensions".
#[derive(Debug, Default)]
struct History(BTreeMap<i64, Vec<Version>>);

impl History {
    fn current(&mut self, id: i64) -> Option<&mut Version> {
        self.0
            .get_mut(&id)
            .and_then(|versions| versions.iter_mut().find(|v| v.to.is_none()))
    }

    /// A row of the source at `at`: a new key, a tracked change (a new version), or an untracked
    /// one (the current version changes in place).
    fn row(&mut self, id: i64, name: &str, tier: &str, visits: i64, at: NaiveDateTime) {
        let version = Version {
            name: name.into(),
            tier: tier.into(),
            visits,
            from: at,
            to: None,
        };
        match self.current(id) {
            Some(current) if current.name == name && current.tier == tier => {
                current.visits = visits;
            }
            Some(current) => {
                current.to = Some(Some(at));
                self.0.entry(id).or_default().push(version);
            }
            None => self.0.entry(id).or_default().push(version),
        }
    }

    /// A version older than the current one: put in its place, the version it falls in ending
    /// where it begins.
    fn late(&mut self, id: i64, name: &str, tier: &str, visits: i64, at: NaiveDateTime) {
        let versions = self.0.entry(id).or_default();
        let Some(index) = versions.iter().position(|v| {
            v.from <= at && v.to.flatten().is_none_or(|to| at < to) && v.to.is_some()
        }) else {
            return;
        };
        let end = versions[index].to;
        versions[index].to = Some(Some(at));
        versions.push(Version {
            name: name.into(),
            tier: tier.into(),
            visits,
            from: at,
            to: end,
        });
        versions.sort_by_key(|v| v.from);
    }

    fn delete(&mut self, id: i64) {
        if let Some(current) = self.current(id) {
            current.to = Some(None);
        }
    }
}

async fn sync(
    services: &tidemark::services::Services,
    round: &str,
    mode: &str,
) -> anyhow::Result<()> {
    let (outcome, summary) = local_sync::run_with_summary(
        services,
        json!({"pipeline": "p", "mode": mode}),
        &fast_runner(&format!("scd-{round}")),
        EXTRACTS_AT_ONCE,
        None,
    )
    .await?;
    let failed = summary.as_ref().map_or(1, |s| s.failed);
    ensure!(failed == 0, "sync {round} failed: {outcome:?} {summary:#?}");
    Ok(())
}

/// Changes `id` in the source (`set` is the SET list) and answers its row as it now is.
async fn change(
    conn: &mut mysql_async::Conn,
    id: i64,
    set: &str,
) -> anyhow::Result<(String, String, i64, NaiveDateTime)> {
    conn.query_drop(format!("UPDATE customers SET {set} WHERE id = {id}"))
        .await?;
    read(conn, id).await
}

async fn read(
    conn: &mut mysql_async::Conn,
    id: i64,
) -> anyhow::Result<(String, String, i64, NaiveDateTime)> {
    let (name, tier, visits, at): (String, String, i64, String) = conn
        .query_first(format!(
            "SELECT name, tier, visits, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM customers WHERE id = {id}"
        ))
        .await?
        .context("the row")?;
    Ok((
        name,
        tier,
        visits,
        NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S%.f")?,
    ))
}

/// The target's history, compared with `expected`.
async fn check(stack: &Stack<'_>, expected: &History, round: &str) -> anyhow::Result<()> {
    let schema = stack.pg.schema();
    let rows = stack
        .pg
        .client()
        .query(
            &format!(
                "SELECT id::bigint, name, tier, visits::bigint, valid_from, valid_to, is_current,
                        customer_sk = md5(id::text || '|' || to_char(valid_from, 'YYYY-MM-DD HH24:MI:SS.US'))
                 FROM \"{schema}\".customers ORDER BY id, valid_from"
            ),
            &[],
        )
        .await?;
    let mut found: BTreeMap<i64, Vec<Version>> = BTreeMap::new();
    for row in &rows {
        let to: Option<NaiveDateTime> = row.get(5);
        let current: bool = row.get(6);
        ensure!(
            row.get::<_, bool>(7),
            "{round}: a surrogate key is not MD5(key|valid_from)"
        );
        ensure!(
            current == to.is_none(),
            "{round}: is_current disagrees with valid_to: {row:?}"
        );
        found.entry(row.get(0)).or_default().push(Version {
            name: row.get(1),
            tier: row.get(2),
            visits: row.get(3),
            from: row.get(4),
            to: to.map(Some),
        });
    }
    for (id, versions) in &mut found {
        // Each version ends where the next begins (a deleted key's last one when deleted).
        for pair in versions.windows(2) {
            ensure!(
                pair[0].to == Some(Some(pair[1].from))
                    || pair[0].to.flatten().is_some_and(|to| to <= pair[1].from),
                "{round}: key {id} has a gap or overlap: {pair:?}"
            );
        }
        let wanted = expected.0.get(id).cloned().unwrap_or_default();
        for (version, want) in versions.iter_mut().zip(&wanted) {
            if want.to == Some(None) {
                // Closed by a deletion: when it was found, after the version began.
                ensure!(
                    version.to.flatten().is_some_and(|to| to >= version.from),
                    "{round}: key {id}'s deleted version {version:?}"
                );
                version.to = Some(None);
            }
        }
        ensure!(
            *versions == wanted,
            "{round}: key {id}'s history\n  is   {versions:#?}\n  want {wanted:#?}"
        );
    }
    ensure!(
        found.keys().eq(expected.0.keys()),
        "{round}: keys {:?}, want {:?}",
        found.keys().collect::<Vec<_>>(),
        expected.0.keys().collect::<Vec<_>>()
    );
    // The ledger: versions inserted minus versions no longer current = the current rows.
    let net: i64 = stack
        .pg
        .client()
        .query_one(
            &format!(
                "SELECT (SUM(rows_inserted) - SUM(rows_deleted))::bigint FROM \"{schema}\".tidemark_load_ledger WHERE target_table = 'customers'"
            ),
            &[],
        )
        .await?
        .get(0);
    let current = expected
        .0
        .values()
        .filter(|versions| versions.iter().any(|v| v.to.is_none()))
        .count() as i64;
    ensure!(
        net == current,
        "{round}: the ledger nets {net} current rows, the history {current}"
    );
    Ok(())
}

async fn history_is_kept(stack: &Stack<'_>) -> anyhow::Result<()> {
    let mut conn = stack.mysql.conn().await?;
    conn.query_drop(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, tier VARCHAR(20), \
         visits INT NOT NULL, updated_at DATETIME(6) NOT NULL, KEY (updated_at))",
    )
    .await?;
    let table = Table::hybrid("customers", "updated_at")
        .with("table_type", "dimension")
        .with("scd_type", "type_2")
        .with_yaml("scd_columns", "[name, tier]")?
        .with("surrogate_key", "customer_sk")
        .with("deletes", "hard")
        .with("reconcile_every", "0s");
    let services = stack.services(&table.yaml()).await?;
    let mut expected = History::default();

    for id in 1..=8 {
        conn.query_drop(format!(
            "INSERT INTO customers VALUES ({id}, 'n{id}', 'bronze', 0, NOW(6) - INTERVAL 30 DAY)"
        ))
        .await?;
        let (name, tier, visits, at) = read(&mut conn, id).await?;
        expected.row(id, &name, &tier, visits, at);
    }
    sync(&services, "0", "full").await?;
    check(stack, &expected, "first load").await?;

    // A tracked change, an untracked one, a delete; every other row is re-read (lookback).
    let (name, tier, visits, at) = change(
        &mut conn,
        1,
        "tier = 'silver', updated_at = NOW(6) - INTERVAL 20 DAY",
    )
    .await?;
    expected.row(1, &name, &tier, visits, at);
    let (name, tier, visits, at) = change(
        &mut conn,
        2,
        "visits = 5, updated_at = NOW(6) - INTERVAL 20 DAY",
    )
    .await?;
    expected.row(2, &name, &tier, visits, at);
    conn.query_drop("DELETE FROM customers WHERE id = 4")
        .await?;
    expected.delete(4);
    sync(&services, "1", "full").await?;
    check(stack, &expected, "tracked, untracked, deleted").await?;
    sync(&services, "1b", "full").await?;
    check(
        stack,
        &expected,
        "a sync that re-reads and finds nothing new",
    )
    .await?;

    // Key 5 changes twice, each change extracted in its own run; both runs load together.
    let (name, tier, visits, at) = change(
        &mut conn,
        5,
        "tier = 'gold', updated_at = NOW(6) - INTERVAL 10 DAY",
    )
    .await?;
    expected.row(5, &name, &tier, visits, at);
    sync(&services, "2a", "backup_only").await?;
    let (name, tier, visits, at) = change(
        &mut conn,
        5,
        "tier = 'platinum', updated_at = NOW(6) - INTERVAL 9 DAY",
    )
    .await?;
    expected.row(5, &name, &tier, visits, at);
    sync(&services, "2b", "backup_only").await?;
    sync(&services, "2", "redshift_only").await?;
    check(stack, &expected, "two pending runs").await?;

    // Key 6 changes; then a version older than that one arrives (within the lookback).
    let (name, tier, visits, at) = change(
        &mut conn,
        6,
        "tier = 'silver', updated_at = NOW(6) - INTERVAL 5 DAY",
    )
    .await?;
    expected.row(6, &name, &tier, visits, at);
    sync(&services, "3a", "full").await?;
    let (name, tier, visits, at) = change(
        &mut conn,
        6,
        "tier = 'late', updated_at = updated_at - INTERVAL 1 MINUTE",
    )
    .await?;
    expected.late(6, &name, &tier, visits, at);
    sync(&services, "3", "full").await?;
    check(stack, &expected, "a late version").await?;

    // The deleted key comes back; key 7 changes a tracked and an untracked column at once.
    conn.query_drop("INSERT INTO customers VALUES (4, 'back', 'bronze', 1, NOW(6))")
        .await?;
    let (name, tier, visits, at) = read(&mut conn, 4).await?;
    expected.row(4, &name, &tier, visits, at);
    let (name, tier, visits, at) = change(
        &mut conn,
        7,
        "name = 'n7b', visits = 9, updated_at = NOW(6)",
    )
    .await?;
    expected.row(7, &name, &tier, visits, at);
    sync(&services, "4", "full").await?;
    check(stack, &expected, "a key back, a change of both kinds").await?;
    Ok(())
}

#[tokio::test]
async fn type_2_history_into_postgres() {
    with_stack(Target::Postgres, history_is_kept).await;
}

#[tokio::test]
async fn type_2_history_into_the_redshift_data_api() {
    with_stack(Target::Redshift, history_is_kept).await;
}

/// The same history from a source server in a zone with daylight saving time (`SYSTEM` on
/// America/New_York): versions begin at the source's own timestamps, and a deleted key's end is
/// in the same terms.
#[tokio::test]
async fn type_2_history_from_a_server_in_local_time() {
    with_stack_on(
        MysqlServer::SystemZoneWithDst,
        Target::Postgres,
        history_is_kept,
    )
    .await;
}
