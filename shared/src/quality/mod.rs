//! Data quality: the checks a table declares (`checks:`), their evaluation on the rows a run
//! extracts, the counts chunk manifests carry, and the run's verdict at commit — passed,
//! warned, or quarantined (a `fail` check failed: the run is committed but not loaded, and no
//! later run of the table is loaded, until an operator releases or drops it).

use std::time::Duration;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::cursor::{Ceiling, Cursor};
use crate::error::Result;
use crate::storage::Bucket;

pub mod digest;
pub mod meter;
pub mod spec;

pub use meter::{problems, QualityMeter};
pub use spec::{Check, CheckKind, RawCheck, Severity};

/// Failing rows named per check, at most.
pub const EXAMPLES_PER_CHECK: usize = 10;

/// One check's counts over some rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckCount {
    /// The check's name (`not_null(email)`), to match counts to the configured checks.
    pub check: String,
    /// Rows it read.
    pub rows_checked: u64,
    /// Rows that failed it.
    pub failures: u64,
    /// Keys of the first failing rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

impl CheckCount {
    /// No rows yet.
    pub fn new(check: String) -> Self {
        CheckCount {
            check,
            rows_checked: 0,
            failures: 0,
            examples: Vec::new(),
        }
    }

    /// Adds `other`'s rows, failures and (while there is room) examples.
    pub fn absorb(&mut self, other: &CheckCount) {
        self.rows_checked += other.rows_checked;
        self.failures += other.failures;
        let room = EXAMPLES_PER_CHECK.saturating_sub(self.examples.len());
        self.examples
            .extend(other.examples.iter().take(room).cloned());
    }
}

/// What a chunk's checks found (in its manifest, and in its progress objects as it goes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkQuality {
    /// One count per configured check, in configuration order.
    pub counts: Vec<CheckCount>,
    /// The `unique` digests this chunk's invocations wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<DigestObject>,
}

/// One invocation's digest of one `unique` check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestObject {
    /// The check's position in the configured list.
    pub check: usize,
    /// The S3 key.
    pub key: String,
}

impl ChunkQuality {
    /// Adds one invocation's counts (the meter's, in the same order).
    pub fn absorb(&mut self, counts: &[CheckCount]) {
        if self.counts.is_empty() {
            self.counts = counts.to_vec();
            return;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(counts) {
            mine.absorb(theirs);
        }
    }
}

/// The verdict on a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Passed,
    /// Only `warn` checks failed: the run loads.
    Warned,
    /// A `fail` check failed: the run is held back.
    Quarantined,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Passed => "passed",
            Verdict::Warned => "warned",
            Verdict::Quarantined => "quarantined",
        })
    }
}

/// One check's result over a whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckOutcome {
    /// Counts and examples.
    #[serde(flatten)]
    pub count: CheckCount,
    /// What a failure does.
    pub severity: Severity,
    /// For `row_count` and `freshness`: what was measured against what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckOutcome {
    /// True when no row failed.
    pub fn passed(&self) -> bool {
        self.count.failures == 0
    }
}

/// The checks' results over a whole run, in its run manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuality {
    /// The verdict.
    pub verdict: Verdict,
    /// One outcome per configured check.
    pub checks: Vec<CheckOutcome>,
}

impl RunQuality {
    /// Checks passed and checks evaluated.
    pub fn passed_of(&self) -> (u64, u64) {
        let passed = self.checks.iter().filter(|c| c.passed()).count();
        (passed as u64, self.checks.len() as u64)
    }

    /// `DataQualityScore`: checks passed / checks evaluated (1 with no checks).
    pub fn score(&self) -> f64 {
        match self.passed_of() {
            (_, 0) => 1.0,
            (passed, of) => passed as f64 / of as f64,
        }
    }

    /// Failing rows over every check.
    pub fn failures(&self) -> u64 {
        self.checks.iter().map(|c| c.count.failures).sum()
    }

    /// The names of the failed checks of `severity`.
    pub fn failed(&self, severity: Severity) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed() && c.severity == severity)
            .map(|c| c.count.check.clone())
            .collect()
    }
}

/// What the commit knows of the run besides its chunks, for the run-level checks.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    /// Rows the run extracted.
    pub rows: u64,
    /// The newest cursor of the run, or else the table's watermark.
    pub newest: Option<&'a Cursor>,
    /// The run's ceiling: the source's clock at begin, less `lag`.
    pub ceiling: &'a Ceiling,
    /// The table's `lag`.
    pub lag: Duration,
}

/// Judges a run: sums its chunks' counts, merges the `unique` digests across chunks, and
/// evaluates `row_count` and `freshness` on the run. Fails when a chunk's checks are not the
/// configured ones (the configuration changed during the run).
pub async fn judge(
    checks: &[Check],
    chunks: &[&ChunkQuality],
    facts: &RunFacts<'_>,
    bucket: &Bucket,
) -> Result<RunQuality> {
    let mut outcomes: Vec<CheckOutcome> = checks
        .iter()
        .map(|check| CheckOutcome {
            count: CheckCount::new(check.name()),
            severity: check.severity,
            detail: None,
        })
        .collect();
    for chunk in chunks {
        let names: Vec<&str> = chunk.counts.iter().map(|c| c.check.as_str()).collect();
        let configured: Vec<&str> = outcomes.iter().map(|o| o.count.check.as_str()).collect();
        if names != configured {
            return Err(crate::error::Error::InvalidRequest(format!(
                "the run was extracted with the checks [{}] but the configuration now has [{}]: the checks changed during the run; sync again",
                names.join(", "),
                configured.join(", ")
            )));
        }
        for (outcome, count) in outcomes.iter_mut().zip(&chunk.counts) {
            outcome.count.absorb(count);
        }
    }
    for (index, check) in checks.iter().enumerate() {
        let outcome = &mut outcomes[index];
        match &check.kind {
            CheckKind::Unique(_) => {
                let objects: Vec<String> = chunks
                    .iter()
                    .flat_map(|chunk| &chunk.digests)
                    .filter(|digest| digest.check == index)
                    .map(|digest| digest.key.clone())
                    .collect();
                let (failures, examples) =
                    digest::duplicates(bucket, &objects, EXAMPLES_PER_CHECK).await?;
                outcome.count.failures = failures;
                outcome.count.examples = examples;
            }
            CheckKind::RowCount { min, max } => {
                outcome.count.rows_checked = facts.rows;
                let outside =
                    min.is_some_and(|m| facts.rows < m) || max.is_some_and(|m| facts.rows > m);
                outcome.count.failures = u64::from(outside);
                outcome.detail = Some(format!(
                    "{} rows; allowed {}..{}",
                    facts.rows,
                    min.map(|m| m.to_string()).unwrap_or_default(),
                    max.map(|m| m.to_string()).unwrap_or_default()
                ));
            }
            CheckKind::Freshness { max_age } => {
                outcome.count.rows_checked = facts.rows;
                let (failed, detail) = freshness(facts, max_age.0);
                outcome.count.failures = u64::from(failed);
                outcome.detail = Some(detail);
            }
            _ => {}
        }
    }
    let quarantined = outcomes
        .iter()
        .any(|o| !o.passed() && o.severity == Severity::Fail);
    let warned = outcomes.iter().any(|o| !o.passed());
    Ok(RunQuality {
        verdict: match (quarantined, warned) {
            (true, _) => Verdict::Quarantined,
            (false, true) => Verdict::Warned,
            (false, false) => Verdict::Passed,
        },
        checks: outcomes,
    })
}

/// Whether the newest cursor value is older than `max_age` against the source's clock at the
/// run's begin (the ceiling plus `lag`: both in the column's own terms, so a server in local
/// time compares local with local), and how it stands.
fn freshness(facts: &RunFacts<'_>, max_age: Duration) -> (bool, String) {
    let parse = |text: &str| {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S"))
            .ok()
    };
    let lag = chrono::Duration::from_std(facts.lag).unwrap_or_default();
    let clock = facts
        .ceiling
        .timestamp
        .as_deref()
        .and_then(parse)
        .map(|c| c + lag);
    let newest = facts
        .newest
        .and_then(|cursor| cursor.timestamp.as_deref())
        .and_then(parse);
    let limit = crate::config::HumanDuration(max_age);
    match (clock, newest) {
        (Some(clock), Some(newest)) => {
            let age = (clock - newest).to_std().unwrap_or_default();
            let shown = crate::config::HumanDuration(Duration::from_secs(age.as_secs()));
            (
                age > max_age,
                format!("newest cursor value {newest} is {shown} behind the source clock {clock}; allowed {limit}"),
            )
        }
        (Some(clock), None) => (
            true,
            format!("no cursor value has been extracted yet (source clock {clock}); allowed {limit}"),
        ),
        (None, _) => (
            true,
            "the run has no timestamp ceiling to measure freshness against: `freshness` needs a DATETIME or TIMESTAMP cursor".to_owned(),
        ),
    }
}
