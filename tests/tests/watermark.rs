//! The watermark store against the local S3 endpoint: compare-and-swap, leases, history, restore.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tidemark::audit::Requester;
use tidemark::cursor::{Ceiling, Cursor};
use tidemark::manifest::RunManifest;
use tidemark::naming::{RunId, StorageLayout, TableId};
use tidemark::storage::PutOutcome;
use tidemark::watermark::{CountField, CountMode, ManualEdit, Watermark, WatermarkStore};
use tidemark::ErrorKind;
use tidemark_tests::s3::TestBucket;

const TTL: Duration = Duration::from_secs(3600);

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn orders() -> TableId {
    TableId::parse("shop.orders").unwrap()
}

fn run(n: u64) -> RunId {
    RunId::new(Utc::now(), n)
}

fn store(bucket: &TestBucket, keep: usize) -> WatermarkStore {
    WatermarkStore::new(bucket.bucket().clone(), StorageLayout::new("tm"), keep)
}

fn begin(w: &mut Watermark, run_id: &RunId, at: DateTime<Utc>) -> tidemark::Result<()> {
    w.take_lease(run_id, at, TTL, None, |_| true)?;
    w.mark_extract_started(run_id, at);
    Ok(())
}

fn one_column_schema() -> tidemark::schema::TableSchema {
    let id = tidemark::schema::SourceColumn {
        name: "id".into(),
        data_type: "bigint".into(),
        column_type: "bigint(20)".into(),
        ..Default::default()
    };
    tidemark::schema::TableSchema::from_source_columns(
        &TableId::parse("shop.orders").unwrap(),
        vec![id],
        vec!["id".into()],
        &Default::default(),
    )
    .unwrap()
}

fn manifest(run_id: &RunId, rows: u64) -> RunManifest {
    RunManifest {
        version: 1,
        pipeline: "p".into(),
        table: "shop.orders".into(),
        target: "orders".into(),
        run_id: run_id.clone(),
        strategy: tidemark::config::CdcStrategy::Hybrid,
        load_mode: tidemark::config::LoadMode::Merge,
        start_cursor: Cursor::default(),
        ceiling: Ceiling {
            timestamp: Some("2030-01-01 00:00:00.000000".into()),
            id: None,
        },
        max_cursor: Some(Cursor {
            timestamp: Some("2026-01-01 00:00:00.000000".into()),
            key: vec!["1".into()],
        }),
        files: vec![],
        rows,
        bytes: 1,
        zero_dates_nulled: 0,
        oversize_truncated: 0,
        oversize_nulled: 0,
        schema_fingerprint: "f".into(),
        schema: one_column_schema(),
        committed_at: Utc::now(),
        quality: None,
        repair: false,
        deletion: false,
    }
}

#[tokio::test]
async fn two_concurrent_begins_exactly_one_wins() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    let (a, b) = (run(1), run(2));
    let (first, second) = tokio::join!(
        store.update("p", &table, "orders", &a, now(), |w| begin(w, &a, now())),
        store.update("p", &table, "orders", &b, now(), |w| begin(w, &b, now())),
    );
    let (winner, loser) = match (first, second) {
        (Ok(_), Err(loser)) => (&a, loser),
        (Err(loser), Ok(_)) => (&b, loser),
        both => panic!("exactly one begin must win: {both:?}"),
    };
    assert_eq!(loser.kind(), ErrorKind::LeaseHeld, "{loser}");
    let record = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(record.lease.unwrap().owner, *winner);
    bucket.remove().await.unwrap();
}

#[tokio::test]
async fn a_stale_etag_never_clobbers() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    store
        .update("p", &table, "orders", &run(1), now(), |w| {
            w.set_cursor(Some("2026-01-01 00:00:00"), None)
        })
        .await
        .unwrap();
    let stale = store.read("p", &table).await.unwrap().unwrap();
    store
        .update("p", &table, "orders", &run(2), now(), |w| {
            w.set_cursor(Some("2026-02-01 00:00:00"), None)
        })
        .await
        .unwrap();
    let key = store.layout().watermark_key("p", &table);
    let outcome = store
        .bucket()
        .put_if_match(&key, Bytes::from_static(b"{}"), &stale.etag)
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::PreconditionFailed);
    let current = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(
        current.extract.cursor.timestamp.as_deref(),
        Some("2026-02-01 00:00:00.000000")
    );
    bucket.remove().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_release_frees_it() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    let (dead, next) = (run(1), run(2));
    let start = now();
    store
        .update("p", &table, "orders", &dead, start, |w| {
            begin(w, &dead, start)
        })
        .await
        .unwrap();
    let early = store
        .update("p", &table, "orders", &next, start, |w| {
            begin(w, &next, start)
        })
        .await;
    assert_eq!(early.unwrap_err().kind(), ErrorKind::LeaseHeld);
    let after_ttl = start + chrono::Duration::seconds(3601);
    store
        .update("p", &table, "orders", &next, after_ttl, |w| {
            begin(w, &next, after_ttl)
        })
        .await
        .unwrap();
    // The dead run cannot release what it no longer holds.
    store
        .update("p", &table, "orders", &dead, after_ttl, |w| {
            w.release_lease(&dead);
            Ok(())
        })
        .await
        .unwrap();
    let record = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(record.lease.as_ref().unwrap().owner, next);
    store
        .update("p", &table, "orders", &next, after_ttl, |w| {
            w.release_lease(&next);
            Ok(())
        })
        .await
        .unwrap();
    assert!(store
        .read("p", &table)
        .await
        .unwrap()
        .unwrap()
        .record
        .lease
        .is_none());
    bucket.remove().await.unwrap();
}

#[tokio::test]
async fn committing_the_same_run_twice_leaves_totals_unchanged() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    let id = run(1);
    let m = manifest(&id, 42);
    for _ in 0..2 {
        store
            .update("p", &table, "orders", &id, now(), |w| {
                w.apply_commit(&m, "k", now())
            })
            .await
            .unwrap();
    }
    let record = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(record.totals.rows_extracted, 42);
    assert_eq!(record.totals.runs_committed, 1);
    assert_eq!(record.pending_runs.len(), 1);
    bucket.remove().await.unwrap();
}

#[tokio::test]
async fn set_keeps_unspecified_fields_and_reset_goes_back_to_the_start() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    let manual = RunId::parse("manual").unwrap();
    store
        .update("p", &table, "orders", &manual, now(), |w| {
            w.set_cursor(
                Some("2026-03-04 05:06:07.890123"),
                Some(vec!["99".to_owned()]),
            )
        })
        .await
        .unwrap();
    store
        .update("p", &table, "orders", &manual, now(), |w| {
            w.set_cursor(None, Some(vec!["100".to_owned()]))
        })
        .await
        .unwrap();
    let record = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(
        record.extract.cursor.timestamp.as_deref(),
        Some("2026-03-04 05:06:07.890123")
    );
    assert_eq!(record.extract.cursor.key, vec!["100".to_owned()]);

    let id = run(7);
    let m = manifest(&id, 3);
    store
        .update("p", &table, "orders", &id, now(), |w| {
            w.apply_commit(&m, "k", now())
        })
        .await
        .unwrap();
    let (_, said) = store
        .update(
            "p",
            &table,
            "orders",
            &manual,
            now(),
            |w| Ok(w.reset(false)),
        )
        .await
        .unwrap();
    assert!(said.contains("1 pending run"), "{said}");
    let record = store.read("p", &table).await.unwrap().unwrap().record;
    assert!(record.extract.cursor.is_start());
    assert_eq!(
        record.pending_runs.len(),
        1,
        "pending runs are kept by default"
    );
    let bad = store
        .update("p", &table, "orders", &manual, now(), |w| {
            w.set_cursor(Some("last tuesday"), None)
        })
        .await;
    assert!(bad.unwrap_err().to_string().contains("YYYY-MM-DD HH:MM:SS"));
    bucket.remove().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_record_is_named_and_restore_fixes_it() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    let manual = RunId::parse("manual").unwrap();
    store
        .update("p", &table, "orders", &manual, now(), |w| {
            w.set_cursor(Some("2026-01-01 00:00:00"), None)
        })
        .await
        .unwrap();
    store
        .update("p", &table, "orders", &manual, now(), |w| {
            w.set_count(CountField::RowsLoaded, CountMode::Absolute, 5)
        })
        .await
        .unwrap();
    let key = store.layout().watermark_key("p", &table);
    store
        .bucket()
        .put(&key, Bytes::from_static(b"{ not json"))
        .await
        .unwrap();

    let err = store.read("p", &table).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&key) && text.contains("watermark restore"),
        "{text}"
    );
    let edit = store
        .update("p", &table, "orders", &manual, now(), |w| {
            w.set_cursor(None, Some(vec!["1".to_owned()]))
        })
        .await;
    assert!(
        edit.is_err(),
        "an edit must not paper over a corrupt record"
    );

    let history = store.history("p", &table).await.unwrap();
    let newest = history.last().unwrap().version.clone();
    let edit = restore_edit();
    let restored = store
        .restore("p", &table, &newest, edit.clone(), now())
        .await
        .unwrap();
    assert_eq!(
        restored.extract.cursor.timestamp.as_deref(),
        Some("2026-01-01 00:00:00.000000")
    );
    let record = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(record.manual, Some(edit.clone()));
    assert!(store
        .restore("p", &table, "../../x", edit, now())
        .await
        .is_err());
    bucket.remove().await.unwrap();
}

/// An operator's restore, as the operator step marks it.
fn restore_edit() -> ManualEdit {
    let by = Requester {
        requested_by: "arn:aws:iam::123456789012:user/ops".to_owned(),
        reason: Some("corrupt record".to_owned()),
        via: "cli".to_owned(),
    };
    ManualEdit::new(&by, "restore", "restored a kept version".to_owned(), now())
}

/// Six operator edits of `table`'s watermark: six versions, five of them earlier ones.
async fn write_six_versions(store: &WatermarkStore, table: &TableId) {
    let manual = RunId::parse("manual").unwrap();
    for n in 0..6 {
        store
            .update("p", table, "orders", &manual, now(), |w| {
                w.set_count(CountField::RowsExtracted, CountMode::Absolute, n)
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn history_keeps_the_configured_number_of_versions() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 3);
    let table = orders();
    write_six_versions(&store, &table).await;
    let history = store.history("p", &table).await.unwrap();
    assert_eq!(history.len(), 3);
    let list = store.list("p").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].totals.rows_extracted, 5);
    bucket.remove().await.unwrap();
}

/// Retention is time-based too (issue #25 item 4): versions younger than
/// `watermark_history_age` are kept beyond `watermark_history`, so an hourly schedule does not
/// wipe last week's history.
#[tokio::test]
async fn history_keeps_every_version_younger_than_its_age() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 2).keeping_for(std::time::Duration::from_secs(3600));
    let table = orders();
    write_six_versions(&store, &table).await;
    assert_eq!(store.history("p", &table).await.unwrap().len(), 5);
    bucket.remove().await.unwrap();
}

/// A version saved mid-run does not bring that run's lease back on `restore`, and a run that
/// holds the table now is waited for: `restore` answers `LeaseHeld` (issue #24).
#[tokio::test]
async fn restore_never_resurrects_a_lease_and_waits_for_a_live_one() {
    let bucket = TestBucket::fresh().await.unwrap();
    let store = store(&bucket, 10);
    let table = orders();
    let first = run(1);
    store
        .update("p", &table, "orders", &first, now(), |w| {
            begin(w, &first, now())
        })
        .await
        .unwrap();
    // Saves the mid-run version (lease held by `first`) in history, and releases the lease.
    store
        .update("p", &table, "orders", &first, now(), |w| {
            w.release_lease(&first);
            Ok(())
        })
        .await
        .unwrap();
    let history = store.history("p", &table).await.unwrap();
    let mid_run = history
        .iter()
        .find(|h| h.summary.as_ref().is_some_and(|s| s.lease_owner.is_some()))
        .expect("a version with a lease")
        .version
        .clone();
    let restored = store
        .restore("p", &table, &mid_run, restore_edit(), now())
        .await
        .unwrap();
    assert!(restored.lease.is_none(), "{:?}", restored.lease);

    let second = run(2);
    store
        .update("p", &table, "orders", &second, now(), |w| {
            begin(w, &second, now())
        })
        .await
        .unwrap();
    let refused = store
        .restore("p", &table, &mid_run, restore_edit(), now())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::LeaseHeld, "{refused}");
    let current = store.read("p", &table).await.unwrap().unwrap().record;
    assert_eq!(current.lease.map(|l| l.owner), Some(second));
    bucket.remove().await.unwrap();
}
