//! `tidemark schedules plan|apply`: the config's schedules and pipeline alarms, read from and
//! written to EventBridge Scheduler and CloudWatch; what to change is `tidemark::schedules`'s.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic};
use aws_sdk_scheduler::types::{
    DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState,
    Target,
};
use clap::{Args, Subcommand};
use serde::Serialize;
use tidemark::schedules::{self, Action, AlarmSpec, Change, Deployment, ScheduleSpec};

use crate::output::emit;
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum SchedulesCommand {
    /// Show what `apply` would create, change and remove; changes nothing.
    Plan(DeploymentArgs),
    /// Make the stack's schedules and pipeline alarms those of the config: creates, changes and
    /// removes only its own (marked) ones, in its own schedule group; a second apply changes
    /// nothing.
    Apply(DeploymentArgs),
}

/// Where the stack put what schedules need: its outputs, by flag or environment variable.
#[derive(Debug, Args)]
pub(crate) struct DeploymentArgs {
    /// The stack's schedule group (output `ScheduleGroupName`).
    #[arg(long, env = "TIDEMARK_SCHEDULE_GROUP")]
    group: String,
    /// The role schedules start the state machine with (output `ScheduleRoleArn`).
    #[arg(long, env = "TIDEMARK_SCHEDULE_ROLE_ARN")]
    role_arn: String,
    /// The sync state machine (output `StateMachineArn`).
    #[arg(long, env = "TIDEMARK_STATE_MACHINE_ARN")]
    state_machine_arn: String,
    /// Where a schedule leaves a start it could not deliver (output
    /// `ScheduleDeadLetterQueueArn`).
    #[arg(long, env = "TIDEMARK_SCHEDULE_DEAD_LETTER_ARN")]
    dead_letter_arn: Option<String>,
    /// The SNS topic the alarms notify (the stack's `AlarmTopicArn`); none: alarms without
    /// actions.
    #[arg(long, env = "TIDEMARK_ALARM_TOPIC_ARN")]
    alarm_topic_arn: Option<String>,
}

impl DeploymentArgs {
    fn deployment(&self) -> Deployment {
        let given = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        Deployment {
            group: self.group.clone(),
            role_arn: self.role_arn.clone(),
            state_machine_arn: self.state_machine_arn.clone(),
            dead_letter_arn: given(&self.dead_letter_arn),
            alarm_topic_arn: given(&self.alarm_topic_arn),
        }
    }
}

/// The plan as printed, and whether it was applied.
#[derive(Debug, Serialize)]
struct Report {
    group: String,
    applied: bool,
    schedules: Vec<Change<ScheduleSpec>>,
    alarms: Vec<Change<AlarmSpec>>,
    /// Schedules in the group that tidemark did not create: never changed.
    not_managed: Vec<String>,
}

pub(crate) async fn run(
    command: &SchedulesCommand,
    config: &Path,
    json: bool,
) -> Result<(), Failure> {
    let (args, apply) = match command {
        SchedulesCommand::Plan(args) => (args, false),
        SchedulesCommand::Apply(args) => (args, true),
    };
    let config = crate::load_config(config)?;
    let deployment = args.deployment();
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let scheduler = aws_sdk_scheduler::Client::new(&shared);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&shared);

    let (existing_schedules, not_managed) = read_schedules(&scheduler, &deployment.group).await?;
    let existing_alarms = read_alarms(&cloudwatch, &deployment.group).await?;
    let mut report = Report {
        group: deployment.group.clone(),
        applied: false,
        schedules: schedules::plan(
            &schedules::desired_schedules(&config, &deployment),
            &existing_schedules,
        ),
        alarms: schedules::plan(
            &schedules::desired_alarms(&config, &deployment),
            &existing_alarms,
        ),
        not_managed,
    };
    if let Some(clash) = report
        .schedules
        .iter()
        .find(|change| report.not_managed.contains(&change.name))
    {
        return Err(Failure::config(anyhow!(
            "schedule `{}` in group `{}` was not created by tidemark (its description lacks {}), and pipeline `{}` needs that name: rename or delete that schedule, then apply again",
            clash.name,
            deployment.group,
            schedules::managed_mark(&deployment.group),
            clash.name
        )));
    }
    if apply {
        for change in &report.schedules {
            write_schedule(&scheduler, &deployment.group, change).await?;
        }
        for change in &report.alarms {
            write_alarm(&cloudwatch, change).await?;
        }
        report.applied = true;
    }
    emit(json, &report, || describe(&report));
    Ok(())
}

fn describe(report: &Report) -> Vec<String> {
    let verb = if report.applied { "applied" } else { "plan" };
    let mut lines = vec![format!("{verb}: schedule group {}", report.group)];
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut line = |kind: &str, name: &str, action: &Action, detail: String| {
        let (sign, word) = match action {
            Action::Create => ("+", "create"),
            Action::Update { .. } => ("~", "change"),
            Action::Remove => ("-", "remove"),
            Action::Keep => ("=", "unchanged"),
        };
        *counts.entry(word).or_default() += 1;
        lines.push(format!("  {sign} {kind} {name}{detail}"));
    };
    for change in &report.schedules {
        let detail = match (&change.action, &change.desired) {
            (Action::Update { fields }, Some(spec)) => format!(
                ": {} {} ({} differ)",
                spec.expression,
                spec.timezone,
                fields.join(", ")
            ),
            (_, Some(spec)) => format!(": {} {}", spec.expression, spec.timezone),
            (_, None) => String::new(),
        };
        line("schedule", &change.name, &change.action, detail);
    }
    for change in &report.alarms {
        let detail = match (&change.action, &change.desired) {
            (Action::Update { fields }, Some(spec)) => {
                format!(": {} ({} differ)", spec.metric, fields.join(", "))
            }
            (_, Some(spec)) => format!(": {} > {}", spec.metric, spec.threshold),
            (_, None) => String::new(),
        };
        line("alarm", &change.name, &change.action, detail);
    }
    for name in &report.not_managed {
        lines.push(format!(
            "  ! schedule {name}: not created by tidemark, left alone"
        ));
    }
    let count = |word: &str| counts.get(word).copied().unwrap_or(0);
    lines.push(match report.applied {
        true => format!(
            "{} created, {} changed, {} removed, {} unchanged",
            count("create"),
            count("change"),
            count("remove"),
            count("unchanged")
        ),
        false => format!(
            "{} to create, {} to change, {} to remove, {} unchanged; `tidemark schedules apply` makes these changes",
            count("create"),
            count("change"),
            count("remove"),
            count("unchanged")
        ),
    });
    lines
}

fn aws_failure(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Failure {
    Failure {
        code: 3,
        error: anyhow!(
            "{what}: {}",
            aws_sdk_scheduler::error::DisplayErrorContext(err)
        ),
        reported: false,
    }
}

/// The group's schedules: tidemark's as specs, by name, and the names of the others.
async fn read_schedules(
    client: &aws_sdk_scheduler::Client,
    group: &str,
) -> Result<(BTreeMap<String, ScheduleSpec>, Vec<String>), Failure> {
    if let Err(err) = client.get_schedule_group().name(group).send().await {
        if err
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception())
        {
            return Err(Failure::config(anyhow!(
                "schedule group `{group}` does not exist: deploy the stack (its output `ScheduleGroupName`) and pass that name with --group or TIDEMARK_SCHEDULE_GROUP"
            )));
        }
        return Err(aws_failure(
            &format!("cannot read schedule group `{group}`"),
            err,
        ));
    }
    let mut names = Vec::new();
    let mut pages = client
        .list_schedules()
        .group_name(group)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|err| aws_failure(&format!("cannot list the schedules of `{group}`"), err))?;
        names.extend(
            page.schedules()
                .iter()
                .filter_map(|s| s.name().map(str::to_owned)),
        );
    }
    let mut managed = BTreeMap::new();
    let mut others = Vec::new();
    for name in names {
        let found = client
            .get_schedule()
            .group_name(group)
            .name(&name)
            .send()
            .await
            .map_err(|err| aws_failure(&format!("cannot read schedule `{name}`"), err))?;
        if !schedules::is_managed(found.description(), group) {
            others.push(name);
            continue;
        }
        let target = found.target();
        let retry = target.and_then(|t| t.retry_policy());
        managed.insert(
            name,
            ScheduleSpec {
                description: found.description().unwrap_or_default().to_owned(),
                expression: found.schedule_expression().unwrap_or_default().to_owned(),
                timezone: found
                    .schedule_expression_timezone()
                    .unwrap_or("UTC")
                    .to_owned(),
                state: found
                    .state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                target_arn: target.map(|t| t.arn().to_owned()).unwrap_or_default(),
                role_arn: target.map(|t| t.role_arn().to_owned()).unwrap_or_default(),
                input: target
                    .and_then(|t| t.input())
                    .unwrap_or_default()
                    .to_owned(),
                dead_letter_arn: target
                    .and_then(|t| t.dead_letter_config())
                    .and_then(|d| d.arn())
                    .map(str::to_owned),
                max_event_age_seconds: retry
                    .and_then(|r| r.maximum_event_age_in_seconds())
                    .unwrap_or_default(),
                max_retry_attempts: retry
                    .and_then(|r| r.maximum_retry_attempts())
                    .unwrap_or_default(),
            },
        );
    }
    others.sort();
    Ok((managed, others))
}

async fn write_schedule(
    client: &aws_sdk_scheduler::Client,
    group: &str,
    change: &Change<ScheduleSpec>,
) -> Result<(), Failure> {
    if change.action == Action::Keep {
        return Ok(());
    }
    let name = &change.name;
    let failed = format!("cannot write schedule `{name}` in `{group}`");
    let Some(spec) = &change.desired else {
        if change.action == Action::Remove {
            client
                .delete_schedule()
                .group_name(group)
                .name(name)
                .send()
                .await
                .map_err(|err| {
                    aws_failure(
                        &format!("cannot remove schedule `{name}` from `{group}`"),
                        err,
                    )
                })?;
        }
        return Ok(());
    };
    let built = |what: &str, err: aws_sdk_scheduler::error::BuildError| {
        Failure::from(tidemark::Error::internal(format!("{what}: {err}")))
    };
    let mut target = Target::builder()
        .arn(&spec.target_arn)
        .role_arn(&spec.role_arn)
        .input(&spec.input)
        .retry_policy(
            RetryPolicy::builder()
                .maximum_event_age_in_seconds(spec.max_event_age_seconds)
                .maximum_retry_attempts(spec.max_retry_attempts)
                .build(),
        );
    if let Some(queue) = &spec.dead_letter_arn {
        target = target.dead_letter_config(DeadLetterConfig::builder().arn(queue).build());
    }
    let target = target.build().map_err(|e| built("a schedule target", e))?;
    let window = FlexibleTimeWindow::builder()
        .mode(FlexibleTimeWindowMode::Off)
        .build()
        .map_err(|e| built("a flexible time window", e))?;
    let state = ScheduleState::from(spec.state.as_str());
    // CreateSchedule and UpdateSchedule take the same fields through builders of two types.
    macro_rules! send_with_spec {
        ($request:expr) => {
            $request
                .group_name(group)
                .name(name)
                .description(&spec.description)
                .schedule_expression(&spec.expression)
                .schedule_expression_timezone(&spec.timezone)
                .state(state)
                .flexible_time_window(window)
                .target(target)
                .send()
                .await
                .map(|_| ())
                .map_err(|err| aws_failure(&failed, err))
        };
    }
    match change.action {
        Action::Create => send_with_spec!(client.create_schedule()),
        Action::Update { .. } => send_with_spec!(client.update_schedule()),
        Action::Remove | Action::Keep => Ok(()),
    }
}

/// The alarms named `{group}-…` that carry the group's mark, as specs by name.
async fn read_alarms(
    client: &aws_sdk_cloudwatch::Client,
    group: &str,
) -> Result<BTreeMap<String, AlarmSpec>, Failure> {
    let mut found = BTreeMap::new();
    let mut pages = client
        .describe_alarms()
        .alarm_name_prefix(format!("{group}-"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| aws_failure("cannot list the pipeline alarms", err))?;
        for alarm in page.metric_alarms() {
            if schedules::is_managed(alarm.alarm_description(), group) {
                if let Some(name) = alarm.alarm_name() {
                    found.insert(name.to_owned(), alarm_spec(alarm));
                }
            }
        }
    }
    Ok(found)
}

fn alarm_spec(alarm: &MetricAlarm) -> AlarmSpec {
    let mut actions: Vec<String> = alarm.alarm_actions().to_vec();
    // The OK actions are written equal to the alarm actions: a difference shows as one.
    if alarm.ok_actions() != alarm.alarm_actions() {
        actions.extend(alarm.ok_actions().iter().map(|a| format!("ok:{a}")));
    }
    AlarmSpec {
        description: alarm.alarm_description().unwrap_or_default().to_owned(),
        namespace: alarm.namespace().unwrap_or_default().to_owned(),
        metric: alarm.metric_name().unwrap_or_default().to_owned(),
        pipeline: alarm
            .dimensions()
            .iter()
            .find(|d| d.name() == Some("pipeline"))
            .and_then(|d| d.value())
            .unwrap_or_default()
            .to_owned(),
        statistic: alarm
            .statistic()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        period: alarm.period().unwrap_or_default(),
        evaluation_periods: alarm.evaluation_periods().unwrap_or_default(),
        datapoints_to_alarm: alarm
            .datapoints_to_alarm()
            .or(alarm.evaluation_periods())
            .unwrap_or_default(),
        threshold: alarm.threshold().unwrap_or_default(),
        comparison: alarm
            .comparison_operator()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        treat_missing_data: alarm.treat_missing_data().unwrap_or("missing").to_owned(),
        actions,
    }
}

async fn write_alarm(
    client: &aws_sdk_cloudwatch::Client,
    change: &Change<AlarmSpec>,
) -> Result<(), Failure> {
    let name = &change.name;
    match (&change.action, &change.desired) {
        (Action::Remove, _) => {
            client
                .delete_alarms()
                .alarm_names(name)
                .send()
                .await
                .map_err(|err| aws_failure(&format!("cannot remove alarm `{name}`"), err))?;
        }
        (Action::Create | Action::Update { .. }, Some(spec)) => {
            client
                .put_metric_alarm()
                .alarm_name(name)
                .alarm_description(&spec.description)
                .namespace(&spec.namespace)
                .metric_name(&spec.metric)
                .dimensions(
                    Dimension::builder()
                        .name("pipeline")
                        .value(&spec.pipeline)
                        .build(),
                )
                .statistic(Statistic::from(spec.statistic.as_str()))
                .period(spec.period)
                .evaluation_periods(spec.evaluation_periods)
                .datapoints_to_alarm(spec.datapoints_to_alarm)
                .threshold(spec.threshold)
                .comparison_operator(ComparisonOperator::from(spec.comparison.as_str()))
                .treat_missing_data(&spec.treat_missing_data)
                .set_alarm_actions(Some(spec.actions.clone()))
                .set_ok_actions(Some(spec.actions.clone()))
                .send()
                .await
                .map_err(|err| aws_failure(&format!("cannot write alarm `{name}`"), err))?;
        }
        _ => {}
    }
    Ok(())
}
