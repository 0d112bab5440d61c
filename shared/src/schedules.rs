//! What `tidemark schedules` keeps in AWS for the config: each pipeline's EventBridge Scheduler
//! schedule (from its `schedule`) and its CloudWatch alarms, as specs compared field by field
//! with what exists, and the plan that turns one into the other. Only resources marked as
//! managed for the stack's schedule group are ever changed or removed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Config, Pipeline};
use crate::quality::Severity;

/// Where the stack put what schedules need (its outputs `ScheduleGroupName`, `ScheduleRoleArn`,
/// `StateMachineArn`, `ScheduleDeadLetterQueueArn`, and the `AlarmTopicArn` parameter).
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The schedule group the stack owns: every managed schedule lives in it.
    pub group: String,
    /// The role EventBridge Scheduler assumes to start the state machine.
    pub role_arn: String,
    /// The sync state machine.
    pub state_machine_arn: String,
    /// Where a schedule leaves an event it could not deliver.
    pub dead_letter_arn: Option<String>,
    /// The SNS topic the alarms notify.
    pub alarm_topic_arn: Option<String>,
}

/// One schedule as tidemark writes it (flexible time window off, always).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleSpec {
    /// Says what it starts, and carries the managed mark.
    pub description: String,
    /// `rate(…)` or `cron(…)`.
    pub expression: String,
    /// IANA time zone the expression is evaluated in.
    pub timezone: String,
    /// `ENABLED`.
    pub state: String,
    /// The state machine it starts.
    pub target_arn: String,
    /// The role it starts it with.
    pub role_arn: String,
    /// The execution's input: `{"pipeline": …, "mode": "full"}`.
    pub input: String,
    /// Dead-letter queue.
    pub dead_letter_arn: Option<String>,
    /// How long an undelivered start is retried.
    pub max_event_age_seconds: i32,
    /// How many times.
    pub max_retry_attempts: i32,
}

/// One CloudWatch alarm on a pipeline-level metric of namespace `tidemark`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmSpec {
    /// What it means and what to do; carries the managed mark.
    pub description: String,
    /// `tidemark`.
    pub namespace: String,
    /// The metric.
    pub metric: String,
    /// The `pipeline` dimension's value.
    pub pipeline: String,
    /// `Maximum` or `Sum`.
    pub statistic: String,
    /// Seconds per datapoint.
    pub period: i32,
    /// Datapoints looked at.
    pub evaluation_periods: i32,
    /// Of those, how many must breach.
    pub datapoints_to_alarm: i32,
    /// The bound.
    pub threshold: f64,
    /// `GreaterThanThreshold`.
    pub comparison: String,
    /// `breaching` or `notBreaching`.
    pub treat_missing_data: String,
    /// Alarm and OK actions: the topic, or none.
    pub actions: Vec<String>,
}

/// The input a schedule hands the state machine: a full sync of `pipeline`.
pub fn sync_input(pipeline: &str) -> String {
    serde_json::json!({"pipeline": pipeline, "mode": "full"}).to_string()
}

/// The mark at the end of every description tidemark writes: a schedule or alarm without it,
/// or with another group's, is not tidemark's to change.
pub fn managed_mark(group: &str) -> String {
    format!("(managed by `tidemark schedules apply` for schedule group {group})")
}

/// Whether a description carries `group`'s mark.
pub fn is_managed(description: Option<&str>, group: &str) -> bool {
    description.is_some_and(|text| text.ends_with(&managed_mark(group)))
}

/// Retry of a start the state machine refused or throttled: 15 minutes, 3 times (a sync that
/// starts later than that should wait for the next one).
const MAX_EVENT_AGE_SECONDS: i32 = 900;
const MAX_RETRY_ATTEMPTS: i32 = 3;

/// The default of `freshness_alarm` for a pipeline with a `schedule`.
pub const DEFAULT_FRESHNESS_ALARM_SECONDS: u64 = 2 * 3600;

/// The schedule of each pipeline with a `schedule`, named after the pipeline.
pub fn desired_schedules(
    config: &Config,
    deployment: &Deployment,
) -> BTreeMap<String, ScheduleSpec> {
    config
        .pipelines
        .iter()
        .filter_map(|(name, pipeline)| {
            let expression = pipeline.schedule.clone()?;
            Some((
                name.clone(),
                ScheduleSpec {
                    description: format!(
                        "tidemark: full sync of pipeline {name} {}",
                        managed_mark(&deployment.group)
                    ),
                    expression,
                    timezone: pipeline
                        .schedule_timezone
                        .clone()
                        .unwrap_or_else(|| "UTC".to_owned()),
                    state: "ENABLED".to_owned(),
                    target_arn: deployment.state_machine_arn.clone(),
                    role_arn: deployment.role_arn.clone(),
                    input: sync_input(name),
                    dead_letter_arn: deployment.dead_letter_arn.clone(),
                    max_event_age_seconds: MAX_EVENT_AGE_SECONDS,
                    max_retry_attempts: MAX_RETRY_ATTEMPTS,
                },
            ))
        })
        .collect()
}

/// The alarms of every pipeline, named `{group}-{pipeline}-{what}`: failed tables (every
/// pipeline); freshness (a pipeline with a `schedule`, or with `freshness_alarm`); quarantined
/// runs (a pipeline with a `fail` data quality check); loads through the tunnel (a Redshift
/// target with `fallback_to_tunnel`); rows differing from the source (a pipeline with `verify`).
pub fn desired_alarms(config: &Config, deployment: &Deployment) -> BTreeMap<String, AlarmSpec> {
    let mut alarms = BTreeMap::new();
    for (name, pipeline) in &config.pipelines {
        let alarm = |what: &str, metric: &str, statistic: &str, says: String| {
            (
                format!("{}-{name}-{what}", deployment.group),
                AlarmSpec {
                    description: format!("{says} {}", managed_mark(&deployment.group)),
                    namespace: crate::metrics::NAMESPACE.to_owned(),
                    metric: metric.to_owned(),
                    pipeline: name.clone(),
                    statistic: statistic.to_owned(),
                    period: 300,
                    evaluation_periods: 1,
                    datapoints_to_alarm: 1,
                    threshold: 0.0,
                    comparison: "GreaterThanThreshold".to_owned(),
                    treat_missing_data: "notBreaching".to_owned(),
                    actions: deployment.alarm_topic_arn.iter().cloned().collect(),
                },
            )
        };
        alarms.extend([alarm(
            "tables-failed",
            "FailedTables",
            "Maximum",
            format!("A sync of tidemark pipeline {name} ended with failed, quarantined or skipped tables (metric tidemark/FailedTables, emitted by summarize); the sync's summary names them."),
        )]);
        if let Some(threshold) = freshness_threshold(pipeline) {
            let (key, mut spec) = alarm(
                "freshness",
                "LagSeconds",
                "Maximum",
                format!("The target of tidemark pipeline {name} is more than {threshold} s behind its source (metric tidemark/LagSeconds, the largest of its tables), or no sync has reported it lately."),
            );
            spec.period = 3600;
            spec.evaluation_periods = 3;
            spec.datapoints_to_alarm = 2;
            spec.threshold = threshold as f64;
            if pipeline.schedule.is_some() {
                // With a schedule, silence means the syncs stopped: that is staleness too.
                spec.treat_missing_data = "breaching".to_owned();
            }
            alarms.insert(key, spec);
        }
        let fail_checks = pipeline.tables.values().any(|table| {
            table
                .checks
                .iter()
                .any(|check| check.severity == Severity::Fail)
        });
        if fail_checks {
            alarms.extend([alarm(
                "quarantine",
                "RunsQuarantined",
                "Sum",
                format!("A run of tidemark pipeline {name} failed a data quality check of severity fail: it and every later run of its table are held back from the warehouse. See `tidemark quality report -t TABLE`, then `tidemark quality release` or `quality drop`."),
            )]);
        }
        let falls_back = matches!(
            config.connections.get(&pipeline.target),
            Some(crate::config::Connection::Redshift(redshift))
                if matches!(&redshift.access, crate::config::RedshiftAccess::DataApi { tunnel: Some(tunnel), .. } if tunnel.fallback.is_some())
        );
        if falls_back {
            alarms.extend([alarm(
                "load-fallback",
                "LoadFallbacks",
                "Sum",
                format!("A load of tidemark pipeline {name} went through the SSH tunnel because the Redshift Data API could not be reached (fallback_to_tunnel). Check the Data API endpoint and the network; the loads still succeed."),
            )]);
        }
        if pipeline.tables.values().any(|table| table.verify.is_some()) {
            alarms.extend([alarm(
                "differing-rows",
                "RowsDiffering",
                "Maximum",
                format!("A verify of a table of tidemark pipeline {name} found rows that differ from the source (missing, gone from the source, or with other values). See `tidemark verify -t TABLE`."),
            )]);
        }
    }
    alarms
}

/// The freshness alarm's threshold in seconds: `freshness_alarm`, else 2 h for a pipeline with a
/// `schedule`; none otherwise.
fn freshness_threshold(pipeline: &Pipeline) -> Option<u64> {
    match (pipeline.freshness_alarm, &pipeline.schedule) {
        (Some(after), _) => Some(after.0.as_secs()),
        (None, Some(_)) => Some(DEFAULT_FRESHNESS_ALARM_SECONDS),
        (None, None) => None,
    }
}

/// What the plan does with one schedule or alarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// It does not exist: create it.
    Create,
    /// It exists with other values: these fields change.
    Update {
        /// The names of the fields that differ.
        fields: Vec<String>,
    },
    /// It is tidemark's, and the config no longer asks for it: delete it.
    Remove,
    /// It is as the config asks.
    Keep,
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change<T> {
    /// The schedule's or alarm's name.
    pub name: String,
    /// What happens to it.
    #[serde(flatten)]
    pub action: Action,
    /// What it is to be (none when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<T>,
}

/// Compares what the config asks for with what exists and is tidemark's (`existing` holds only
/// managed resources): a change per name, in name order.
pub fn plan<T: Serialize + PartialEq + Clone>(
    desired: &BTreeMap<String, T>,
    existing: &BTreeMap<String, T>,
) -> Vec<Change<T>> {
    let mut names: Vec<&String> = desired.keys().chain(existing.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let action = match (desired.get(name), existing.get(name)) {
                (Some(_), None) => Action::Create,
                (None, _) => Action::Remove,
                (Some(wanted), Some(found)) if wanted == found => Action::Keep,
                (Some(wanted), Some(found)) => Action::Update {
                    fields: differing_fields(wanted, found),
                },
            };
            Change {
                name: name.clone(),
                action,
                desired: desired.get(name).cloned(),
            }
        })
        .collect()
}

/// The names of the top-level fields whose serialized values differ.
fn differing_fields<T: Serialize>(wanted: &T, found: &T) -> Vec<String> {
    let (Ok(serde_json::Value::Object(wanted)), Ok(serde_json::Value::Object(found))) =
        (serde_json::to_value(wanted), serde_json::to_value(found))
    else {
        return Vec::new();
    };
    wanted
        .iter()
        .filter(|(field, value)| found.get(*field) != Some(*value))
        .map(|(field, _)| field.clone())
        .collect()
}

/// Why a `schedule` expression cannot be used, per "Schedule types on EventBridge Scheduler"
/// (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html): `rate(value
/// unit)` with a positive whole value and a unit of minute(s), hour(s) or day(s);
/// `cron(minutes hours day-of-month month day-of-week year)`, six fields, one of the two day
/// fields `?`. A one-time `at(…)` is refused: a schedule that syncs once is a `tidemark sync`.
pub fn expression_problem(expression: &str) -> Option<String> {
    let example = "e.g. `rate(1 hour)` or `cron(0 6 * * ? *)`";
    if let Some(body) = expression
        .strip_prefix("rate(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let parts: Vec<&str> = body.split_whitespace().collect();
        let [value, unit] = parts[..] else {
            return Some(format!(
                "`{expression}`: a rate is `rate(value unit)`, {example}"
            ));
        };
        if !value.parse::<u32>().is_ok_and(|n| n > 0) {
            return Some(format!(
                "`{expression}`: the rate's value must be a whole number above 0"
            ));
        }
        if !matches!(
            unit,
            "minute" | "minutes" | "hour" | "hours" | "day" | "days"
        ) {
            return Some(format!(
                "`{expression}`: the rate's unit is minute(s), hour(s) or day(s)"
            ));
        }
        return None;
    }
    if let Some(body) = expression
        .strip_prefix("cron(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let fields: Vec<&str> = body.split_whitespace().collect();
        if fields.len() != 6 {
            return Some(format!(
                "`{expression}`: a cron expression has six fields (minutes hours day-of-month month day-of-week year), not {}",
                fields.len()
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || ",-*/?#".contains(c);
        if let Some(field) = fields.iter().find(|field| !field.chars().all(allowed)) {
            return Some(format!("`{expression}`: `{field}` is not a cron field"));
        }
        if (fields[2] == "?") == (fields[4] == "?") {
            return Some(format!(
                "`{expression}`: exactly one of day-of-month (3rd field) and day-of-week (5th) must be `?`, {example}"
            ));
        }
        return None;
    }
    Some(format!(
        "`{expression}` is not a `rate(…)` or `cron(…)` expression: {example}"
    ))
}

/// Why a `schedule_timezone` cannot be an IANA time zone name (`UTC`, `Europe/Berlin`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+5`). EventBridge Scheduler itself refuses a name
/// its database lacks, when the schedule is applied.
pub fn timezone_problem(timezone: &str) -> Option<String> {
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
    };
    let fine = timezone == "UTC" || (timezone.contains('/') && timezone.split('/').all(part));
    (!fine).then(|| {
        format!("`{timezone}` is not an IANA time zone name such as `UTC` or `Europe/Berlin`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_checked_as_eventbridge_scheduler_reads_them() {
        for good in [
            "rate(1 hour)",
            "rate(5 minutes)",
            "rate(2 days)",
            "cron(0 6 * * ? *)",
            "cron(15 10 ? * MON-FRI *)",
            "cron(0/10 * ? * 2#1 *)",
        ] {
            assert_eq!(expression_problem(good), None, "{good}");
        }
        for (bad, says) in [
            ("rate(0 hours)", "above 0"),
            ("rate(1 week)", "minute(s), hour(s) or day(s)"),
            ("rate(hour)", "rate(value unit)"),
            ("cron(0 6 * * *)", "six fields"),
            ("cron(0 6 * * * *)", "must be `?`"),
            ("cron(0 6 ? * ? *)", "must be `?`"),
            ("cron(0 6 * * ? *;)", "is not a cron field"),
            ("at(2026-12-24T18:00:00)", "not a `rate(…)` or `cron(…)`"),
            ("every hour", "not a `rate(…)` or `cron(…)`"),
        ] {
            let problem = expression_problem(bad).unwrap_or_default();
            assert!(problem.contains(says), "{bad}: {problem}");
        }
    }

    #[test]
    fn timezones_are_iana_names() {
        for good in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert_eq!(timezone_problem(good), None, "{good}");
        }
        for bad in ["", "CET ", "Europe/", "Berlin", "Europe/Ber lin"] {
            assert!(timezone_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn the_plan_creates_updates_removes_and_keeps_by_name() {
        let spec = |expression: &str| ScheduleSpec {
            description: "d".into(),
            expression: expression.into(),
            timezone: "UTC".into(),
            state: "ENABLED".into(),
            target_arn: "sm".into(),
            role_arn: "role".into(),
            input: sync_input("p"),
            dead_letter_arn: None,
            max_event_age_seconds: MAX_EVENT_AGE_SECONDS,
            max_retry_attempts: MAX_RETRY_ATTEMPTS,
        };
        let desired = BTreeMap::from([
            ("a".to_owned(), spec("rate(1 hour)")),
            ("b".to_owned(), spec("rate(2 hours)")),
            ("c".to_owned(), spec("rate(1 day)")),
        ]);
        let existing = BTreeMap::from([
            ("b".to_owned(), spec("rate(1 hour)")),
            ("c".to_owned(), spec("rate(1 day)")),
            ("d".to_owned(), spec("rate(1 day)")),
        ]);
        let actions: Vec<(String, Action)> = plan(&desired, &existing)
            .into_iter()
            .map(|change| (change.name, change.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("a".to_owned(), Action::Create),
                (
                    "b".to_owned(),
                    Action::Update {
                        fields: vec!["expression".to_owned()]
                    }
                ),
                ("c".to_owned(), Action::Keep),
                ("d".to_owned(), Action::Remove),
            ]
        );
    }

    const CONFIG: &str = r#"connections:
  src: { kind: mysql, host: h, user: u }
  wh: { kind: postgres, host: localhost, database: d, user: u, schema: a }
  dw:
    kind: redshift
    access: data_api
    workgroup: wg
    host: dw.example.com
    user: loader
    database: dev
    schema: a
    secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tidemark/dw"
    iam_role: "arn:aws:iam::123456789012:role/copy"
    fallback_to_tunnel: true
    tunnel:
      bastion_host: bastion.example.com
      user: ec2-user
      private_key_secret: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tidemark/key"
      host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample"
pipelines:
  nightly:
    source: src
    target: dw
    s3: { bucket: b }
    schedule: cron(0 2 * * ? *)
    schedule_timezone: Europe/Berlin
    tables:
      shop.orders:
        cursor_column: u
        verify: { every: 1d }
        checks: [{ not_null: [id] }]
  adhoc:
    source: src
    target: wh
    s3: { bucket: b }
    freshness_alarm: 3h
    tables:
      shop.events: { cursor_column: u, checks: [{ not_null: [id], severity: warn }] }
  manual:
    source: src
    target: wh
    s3: { bucket: b }
    tables:
      shop.notes: { cursor_column: u }
"#;

    fn deployment() -> Deployment {
        Deployment {
            group: "tm-sync".into(),
            role_arn: "role".into(),
            state_machine_arn: "sm".into(),
            dead_letter_arn: Some("queue".into()),
            alarm_topic_arn: None,
        }
    }

    /// Each pipeline gets the alarms its settings call for, each on a metric the library emits
    /// (`metrics::EMITTED`); only scheduled pipelines get a schedule.
    #[test]
    fn each_pipeline_gets_the_schedule_and_alarms_its_settings_call_for() {
        let config = Config::from_yaml(CONFIG, "tidemark.yaml", &Default::default()).unwrap();
        let schedules = desired_schedules(&config, &deployment());
        assert_eq!(schedules.keys().collect::<Vec<_>>(), ["nightly"]);
        let nightly = &schedules["nightly"];
        assert_eq!(
            (nightly.expression.as_str(), nightly.timezone.as_str()),
            ("cron(0 2 * * ? *)", "Europe/Berlin")
        );
        assert_eq!(nightly.input, r#"{"mode":"full","pipeline":"nightly"}"#);
        assert!(is_managed(Some(&nightly.description), "tm-sync"));

        let alarms = desired_alarms(&config, &deployment());
        let named: Vec<(&str, &str, f64, &str)> = alarms
            .iter()
            .map(|(name, a)| {
                (
                    name.as_str(),
                    a.metric.as_str(),
                    a.threshold,
                    a.treat_missing_data.as_str(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                (
                    "tm-sync-adhoc-freshness",
                    "LagSeconds",
                    10800.0,
                    "notBreaching"
                ),
                (
                    "tm-sync-adhoc-tables-failed",
                    "FailedTables",
                    0.0,
                    "notBreaching"
                ),
                (
                    "tm-sync-manual-tables-failed",
                    "FailedTables",
                    0.0,
                    "notBreaching"
                ),
                (
                    "tm-sync-nightly-differing-rows",
                    "RowsDiffering",
                    0.0,
                    "notBreaching"
                ),
                (
                    "tm-sync-nightly-freshness",
                    "LagSeconds",
                    7200.0,
                    "breaching"
                ),
                (
                    "tm-sync-nightly-load-fallback",
                    "LoadFallbacks",
                    0.0,
                    "notBreaching"
                ),
                (
                    "tm-sync-nightly-quarantine",
                    "RunsQuarantined",
                    0.0,
                    "notBreaching"
                ),
                (
                    "tm-sync-nightly-tables-failed",
                    "FailedTables",
                    0.0,
                    "notBreaching"
                ),
            ]
        );
        for alarm in alarms.values() {
            assert!(crate::metrics::EMITTED.contains(&alarm.metric.as_str()));
            assert!(is_managed(Some(&alarm.description), "tm-sync"));
            assert!(alarm.actions.is_empty());
        }
    }

    #[test]
    fn only_descriptions_with_the_group_s_mark_are_managed() {
        let mark = managed_mark("tm-sync");
        assert!(is_managed(Some(&format!("tidemark: x {mark}")), "tm-sync"));
        assert!(!is_managed(
            Some(&format!("x {}", managed_mark("other"))),
            "tm-sync"
        ));
        assert!(!is_managed(
            Some("a backfill someone made by hand"),
            "tm-sync"
        ));
        assert!(!is_managed(None, "tm-sync"));
    }
}
