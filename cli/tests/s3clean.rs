//! The real `tidemark s3clean` binary: a dry run changes nothing, a clean without `--force`
//! refuses when stdin is not a terminal, and a bad age is a usage error (exit 2).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tidemark_tests::s3::TestBucket;
use tidemark_tests::stored_runs::{self, run_id, TableStorage};

const ORDERS: &str = "shop.orders";

fn tidemark(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the tidemark binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn keys(bucket: &TestBucket) -> anyhow::Result<HashSet<String>> {
    Ok(bucket
        .bucket()
        .list("")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect())
}

/// One loaded and one pending run of `shop.orders`, and a config file naming the bucket.
async fn scenario(
    bucket: &TestBucket,
    dir: &Path,
) -> anyhow::Result<(std::path::PathBuf, Vec<String>, Vec<String>)> {
    let orders = TableStorage::new(bucket.bucket(), ORDERS)?;
    let loaded = orders.committed(&run_id(1), 3).await?;
    orders.loaded(&[&loaded]).await?;
    let pending = orders.committed(&run_id(2), 2).await?;
    let path = dir.join("tidemark.yaml");
    std::fs::write(
        &path,
        stored_runs::config_yaml(bucket.bucket().name(), &[ORDERS]),
    )?;
    Ok((path, loaded.keys, pending.keys))
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_deletes_nothing() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let dir = tempfile::tempdir()?;
    let (config, loaded, _) = scenario(&bucket, dir.path()).await?;
    let before = keys(&bucket).await?;
    let out = tidemark(&config, &["s3clean", "clean", "-t", ORDERS, "--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("delete {} object(s)", loaded.len())),
        "{stdout}"
    );
    assert!(stdout.contains("pending"), "{stdout}");
    assert!(stdout.contains("dry run"), "{stdout}");
    assert_eq!(keys(&bucket).await?, before);

    let listed = tidemark(
        &config,
        &["s3clean", "list", "-t", ORDERS, "--show-timestamps"],
    );
    let stdout = text(&listed.stdout);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        stdout.contains("loaded") && stdout.contains("pending"),
        "{stdout}"
    );
    assert!(
        stdout.contains("total: 2 run(s), 5 data file(s)"),
        "{stdout}"
    );
    bucket.remove().await
}

#[tokio::test]
async fn clean_refuses_without_force_when_stdin_is_not_a_terminal() -> anyhow::Result<()> {
    let bucket = TestBucket::fresh().await?;
    let dir = tempfile::tempdir()?;
    let (config, loaded, pending) = scenario(&bucket, dir.path()).await?;
    let before = keys(&bucket).await?;
    let out = tidemark(&config, &["s3clean", "clean", "-t", ORDERS]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(keys(&bucket).await?, before);

    let forced = tidemark(&config, &["s3clean", "clean", "-t", ORDERS, "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let left = keys(&bucket).await?;
    assert!(loaded.iter().all(|k| !left.contains(k)));
    assert!(pending.iter().all(|k| left.contains(k)));
    bucket.remove().await
}

#[test]
fn a_bad_age_or_pattern_is_a_usage_error() {
    let missing = Path::new("no-such-config.yaml");
    for args in [
        &["s3clean", "clean", "-t", ORDERS, "--older-than", "7 days"][..],
        &["s3clean", "clean", "-t", ORDERS, "--older-than", "-1d"],
        &["s3clean", "clean", "-t", ORDERS, "--pattern", "a/b"],
        &["s3clean", "clean-all", "--older-than", "soon", "--dry-run"],
    ] {
        let out = tidemark(missing, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
