//! s3clean against the local S3 endpoint: runs are classified by exact prefix and watermark,
//! pending runs survive every combination of options, orphans go only when asked and old
//! enough, filters narrow the plan, and the watermark still reads after a clean. The large
//! scenario holds more than 2,500 objects, so listing and deleting cross 1000-key pages.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use tidemark::clean::{self, execute, plan_clean, CleanOptions, Glob, RunStatus};
use tidemark::config::HumanDuration;
use tidemark::services::Services;
use tidemark::steps::cleanup::{cleanup, parse_request, CleanupRequest};
use tidemark::steps::operator::{get, GetRequest};
use tidemark_tests::s3::TestBucket;
use tidemark_tests::stored_runs::{self, run_id, StoredRun, TableStorage, PIPELINE};

const ORDERS: &str = "shop.orders";
const ORDERS_OLD: &str = "shop.orders_old";

/// `orders`: two loaded runs, one abandoned (dropped from pending), one pending, one orphan;
/// `orders_old` (same stem): one loaded run and one orphan.
struct Scenario {
    orders: TableStorage,
    orders_old: TableStorage,
    loaded: Vec<StoredRun>,
    abandoned: StoredRun,
    pending: StoredRun,
    orphan: StoredRun,
    old_table_keys: usize,
}

impl Scenario {
    /// `files[i]` data files for L1, L2, abandoned, pending, orphan, orders_old L, orders_old orphan.
    async fn build(bucket: &TestBucket, files: [u32; 7]) -> anyhow::Result<Self> {
        let orders = TableStorage::new(bucket.bucket(), ORDERS)?;
        let orders_old = TableStorage::new(bucket.bucket(), ORDERS_OLD)?;
        let l1 = orders.committed(&run_id(1), files[0]).await?;
        let l2 = orders.committed(&run_id(2), files[1]).await?;
        orders.loaded(&[&l1, &l2]).await?;
        let abandoned = orders.committed(&run_id(3), files[2]).await?;
        orders.drop_pending().await?;
        let pending = orders.committed(&run_id(4), files[3]).await?;
        let orphan = orders.extracted(&run_id(5), files[4]).await?;
        let old_loaded = orders_old.committed(&run_id(1), files[5]).await?;
        orders_old.loaded(&[&old_loaded]).await?;
        let old_orphan = orders_old.extracted(&run_id(6), files[6]).await?;
        Ok(Scenario {
            orders,
            orders_old,
            loaded: vec![l1, l2],
            abandoned,
            pending,
            orphan,
            old_table_keys: old_loaded.keys.len() + old_orphan.keys.len(),
        })
    }

    async fn large(bucket: &TestBucket) -> anyhow::Result<Self> {
        Scenario::build(bucket, [900, 900, 20, 500, 300, 250, 50]).await
    }

    async fn small(bucket: &TestBucket) -> anyhow::Result<Self> {
        Scenario::build(bucket, [3, 3, 2, 2, 3, 2, 2]).await
    }

    async fn listing(&self) -> anyhow::Result<clean::Listing> {
        Ok(clean::list(
            self.orders.store(),
            PIPELINE,
            self.orders.table(),
            Utc::now(),
        )
        .await?)
    }

    async fn old_table_count(&self) -> anyhow::Result<usize> {
        let listing = clean::list(
            self.orders_old.store(),
            PIPELINE,
            self.orders_old.table(),
            Utc::now(),
        )
        .await?;
        Ok(listing.total.objects as usize)
    }
}

fn options(orphans: bool, days_later: i64) -> CleanOptions {
    CleanOptions {
        orphans,
        ..CleanOptions::new(Utc::now() + chrono::Duration::days(days_later))
    }
}

fn planned_keys(plan: &clean::CleanPlan) -> HashSet<String> {
    plan.runs
        .iter()
        .flat_map(|r| &r.delete)
        .map(|d| d.key.clone())
        .collect()
}

async fn existing(bucket: &TestBucket) -> anyhow::Result<HashSet<String>> {
    Ok(bucket
        .bucket()
        .list("")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect())
}

async fn services(bucket: &TestBucket) -> anyhow::Result<Services> {
    let config = stored_runs::config(bucket.bucket().name(), &[ORDERS, ORDERS_OLD])?;
    Ok(Services::from_env(config, None).await)
}

#[tokio::test]
async fn listing_groups_runs_by_status_and_never_reaches_into_orders_old() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let s = Scenario::large(&bucket).await?;
    let listing = s.listing().await?;
    let status_of = |run: &StoredRun| {
        listing
            .runs
            .iter()
            .find(|r| r.run_id == run.run_id)
            .map(|r| r.status)
    };
    assert_eq!(status_of(&s.loaded[0]), Some(RunStatus::Loaded));
    assert_eq!(status_of(&s.loaded[1]), Some(RunStatus::Loaded));
    assert_eq!(status_of(&s.abandoned), Some(RunStatus::Abandoned));
    assert_eq!(status_of(&s.pending), Some(RunStatus::Pending));
    assert_eq!(status_of(&s.orphan), Some(RunStatus::Orphaned));
    assert_eq!(listing.runs.len(), 5);
    let orders_keys: usize = s.loaded.iter().map(|r| r.keys.len()).sum::<usize>()
        + s.abandoned.keys.len()
        + s.pending.keys.len()
        + s.orphan.keys.len();
    assert!(orders_keys > 2_500, "{orders_keys} objects");
    assert_eq!(listing.total.objects as usize, orders_keys);
    assert_eq!(listing.total.data_files, 900 + 900 + 20 + 500 + 300);
    assert!(listing.unrecognized.is_empty());
    let every_key = listing.runs.iter().flat_map(|r| &r.objects);
    assert!(every_key.clone().all(|o| !o.key.contains("orders_old")));
    let pending = &listing.by_status[&RunStatus::Pending];
    assert_eq!((pending.runs, pending.data_files), (1, 500));
    assert_eq!(pending.objects as usize, s.pending.keys.len());
    assert_eq!(s.old_table_count().await?, s.old_table_keys);
    bucket.remove().await
}

#[tokio::test]
async fn pending_runs_survive_every_combination_of_flags() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let s = Scenario::large(&bucket).await?;
    let listing = s.listing().await?;
    let pending: HashSet<String> = s.pending.keys.iter().cloned().collect();
    let patterns = [
        None,
        Some("*"),
        Some("*.parquet"),
        Some("*.json"),
        Some("*.manifest"),
    ];
    let mut most = None;
    for older_than in [None, Some(Duration::ZERO), Some(Duration::from_secs(3600))] {
        for pattern in patterns {
            for orphans in [false, true] {
                for days_later in [0, 30] {
                    let options = CleanOptions {
                        older_than,
                        pattern: pattern.map(|p| Glob::parse(p).unwrap()),
                        ..options(orphans, days_later)
                    };
                    let plan = plan_clean(&listing, &options);
                    let keys = planned_keys(&plan);
                    assert!(
                        keys.is_disjoint(&pending),
                        "{older_than:?} {pattern:?} {orphans} {days_later}"
                    );
                    assert!(keys.iter().all(|k| !k.contains("orders_old")));
                    if most
                        .as_ref()
                        .is_none_or(|m: &clean::CleanPlan| plan.objects > m.objects)
                    {
                        most = Some(plan);
                    }
                }
            }
        }
    }
    // The widest plan takes everything but the pending run, and executing it keeps that run.
    let most = most.unwrap();
    let report = execute(s.orders.store(), &most).await?;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.deleted_objects > 2_000, "{}", report.deleted_objects);
    let left = existing(&bucket).await?;
    assert!(pending.is_subset(&left));
    let after = s.listing().await?;
    assert_eq!(after.runs.len(), 1);
    assert_eq!(after.runs[0].status, RunStatus::Pending);
    assert_eq!(s.old_table_count().await?, s.old_table_keys);

    // The watermark still reads, and `get show_files` still finds the pending run's manifest.
    let services = services(&bucket).await?;
    let got = get(
        &services,
        &GetRequest {
            pipeline: None,
            table: ORDERS.into(),
            show_files: true,
        },
    )
    .await?;
    assert_eq!(got.watermark.unwrap().pending_runs.len(), 1);
    assert_eq!(got.pending_files[0].files.len(), 500);
    bucket.remove().await
}

#[tokio::test]
async fn orphans_go_only_with_orphans_and_past_the_safety_age() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let s = Scenario::small(&bucket).await?;
    let listing = s.listing().await?;
    let doomed_runs = |plan: &clean::CleanPlan| -> HashSet<String> {
        plan.runs
            .iter()
            .filter(|r| !r.delete.is_empty())
            .map(|r| r.run_id.to_string())
            .collect()
    };
    let orphan = s.orphan.run_id.to_string();
    let abandoned = s.abandoned.run_id.to_string();

    let without = plan_clean(&listing, &options(false, 30));
    assert!(!doomed_runs(&without).contains(&orphan));
    assert!(!doomed_runs(&without).contains(&abandoned));
    let reason = |plan: &clean::CleanPlan, run: &str| {
        plan.runs
            .iter()
            .find(|r| r.run_id.as_str() == run)
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason(&without, &orphan).contains("--orphans"));

    let too_young = plan_clean(&listing, &options(true, 0));
    assert!(!doomed_runs(&too_young).contains(&orphan));
    assert!(reason(&too_young, &orphan).contains("safety age"));

    let past_safety = CleanOptions {
        orphans: true,
        ..CleanOptions::new(Utc::now() + chrono::Duration::hours(25))
    };
    let plan = plan_clean(&listing, &past_safety);
    assert!(doomed_runs(&plan).contains(&orphan));
    assert!(doomed_runs(&plan).contains(&abandoned));
    execute(s.orders.store(), &plan).await?;
    let after = s.listing().await?;
    let statuses: Vec<RunStatus> = after.runs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![RunStatus::Pending]);
    let left = existing(&bucket).await?;
    assert!(s.orphan.keys.iter().all(|k| !left.contains(k)));
    assert!(s.pending.keys.iter().all(|k| left.contains(k)));
    assert_eq!(s.old_table_count().await?, s.old_table_keys);
    bucket.remove().await
}

#[tokio::test]
async fn older_than_and_pattern_choose_what_goes() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let s = Scenario::small(&bucket).await?;
    let listing = s.listing().await?;
    let week = Some(Duration::from_secs(7 * 86_400));

    let young = plan_clean(
        &listing,
        &CleanOptions {
            older_than: week,
            ..options(false, 0)
        },
    );
    assert!(young.is_empty());
    assert!(
        young.runs[0].reason.contains("--older-than 7d"),
        "{}",
        young.runs[0].reason
    );

    let old = plan_clean(
        &listing,
        &CleanOptions {
            older_than: week,
            ..options(false, 8)
        },
    );
    let loaded_keys: HashSet<String> = s.loaded.iter().flat_map(|r| r.keys.clone()).collect();
    assert_eq!(planned_keys(&old), loaded_keys);

    // Only data files: the run manifests stay, so the runs still read as loaded.
    let parquet = plan_clean(
        &listing,
        &CleanOptions {
            pattern: Some(Glob::parse("*.parquet")?),
            ..options(false, 0)
        },
    );
    assert!(planned_keys(&parquet)
        .iter()
        .all(|k| k.ends_with(".parquet")));
    assert_eq!(parquet.objects, 6);
    assert_eq!(parquet.bytes, 6 * stored_runs::DATA_FILE_BYTES as u64);
    let report = execute(s.orders.store(), &parquet).await?;
    assert_eq!((report.deleted_objects, report.bytes_freed), (6, 600));
    let after = s.listing().await?;
    let loaded: Vec<_> = after
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Loaded)
        .collect();
    assert_eq!(loaded.len(), 2);
    assert!(loaded.iter().all(|r| r.data_files == 0));

    // A pattern that names the run manifest alone does not take it while the rest remains.
    let manifests_only = plan_clean(
        &after,
        &CleanOptions {
            pattern: Some(Glob::parse("2026*.json")?),
            ..options(false, 0)
        },
    );
    assert!(manifests_only.is_empty());

    // Without a pattern, the rest of the loaded runs goes, manifests last.
    let rest = plan_clean(&after, &options(false, 0));
    execute(s.orders.store(), &rest).await?;
    let left = existing(&bucket).await?;
    assert!(loaded_keys.iter().all(|k| !left.contains(k)));
    bucket.remove().await
}

#[tokio::test]
async fn the_cleanup_payload_dry_run_deletes_nothing() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let s = Scenario::small(&bucket).await?;
    let services = services(&bucket).await?;
    let before = existing(&bucket).await?;
    let request = CleanupRequest {
        pipeline: None,
        tables: None,
        older_than: HumanDuration(Duration::ZERO),
        orphans: true,
        dry_run: true,
    };
    let dry = cleanup(&services, &request).await?;
    assert_eq!(dry.tables.len(), 2);
    let planned: u64 = dry.tables.iter().map(|t| t.planned_objects).sum();
    // Every object of the loaded runs and of the dropped one; nothing of the pending run or of
    // the young orphans.
    let loaded_objects: usize = s.loaded.iter().map(|run| run.keys.len()).sum();
    assert_eq!(planned, (loaded_objects + s.abandoned.keys.len()) as u64);
    assert_eq!(dry.deleted_objects, 0);
    assert_eq!(existing(&bucket).await?, before);

    // The real run deletes what the dry run planned (orphans are still too young) and keeps
    // the pending run; the watermark still reads and lists its files.
    let done = cleanup(
        &services,
        &CleanupRequest {
            dry_run: false,
            ..request
        },
    )
    .await?;
    assert_eq!(done.deleted_objects, planned);
    let planned_bytes: u64 = dry.tables.iter().map(|t| t.planned_bytes).sum();
    assert_eq!(
        done.bytes_freed, planned_bytes,
        "the dry run said what the run frees"
    );
    let left = existing(&bucket).await?;
    assert!(s.pending.keys.iter().all(|k| left.contains(k)));
    assert!(s.orphan.keys.iter().all(|k| left.contains(k)));
    let got = get(
        &services,
        &GetRequest {
            pipeline: Some(PIPELINE.into()),
            table: ORDERS.into(),
            show_files: true,
        },
    )
    .await?;
    assert_eq!(got.pending_files.len(), 1);
    bucket.remove().await
}

#[test]
fn cleanup_payloads_reject_unknown_fields_and_a_missing_retention() {
    // The golden payload (README: Lambda payload `tidemark-cleanup`) round-trips.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/cleanup/cleanup.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ok = parse_request(golden.clone()).unwrap();
    assert_eq!(serde_json::to_value(&ok).unwrap(), golden);
    assert_eq!(ok.older_than, HumanDuration::parse("7d").unwrap());
    for (payload, expected) in [
        (
            serde_json::json!({"older_than": "7d", "colour": 1}),
            "unknown field `colour`",
        ),
        (
            serde_json::json!({"dry_run": true}),
            "missing field `older_than`",
        ),
        (
            serde_json::json!({"older_than": "7 days"}),
            "invalid duration",
        ),
    ] {
        let err = parse_request(payload).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}
