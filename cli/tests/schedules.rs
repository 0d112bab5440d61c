//! `tidemark schedules plan|apply` (issue #19 part 1) against moto's EventBridge Scheduler and
//! CloudWatch, in a fresh schedule group per test (the stack's, in AWS): the config's schedules
//! and pipeline alarms are created, changed and removed; a second apply changes nothing; a
//! schedule tidemark did not create is left alone, and one that takes a pipeline's name stops the
//! apply; a missing group and a bad expression are refused with the fix.

use std::process::Output;

use anyhow::{ensure, Context};
use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
use serde_json::Value;
use tidemark_tests::scenario::describe;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");
const STATE_MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:tm-sync";
const ROLE: &str = "arn:aws:iam::123456789012:role/tm-sync-schedules";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:tm-schedule-dead-letters";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:tm-alarms";

/// A config of two pipelines: `orders` hourly, `crm` daily at 06:00 Berlin time with `verify`.
fn config(orders_schedule: &str, crm_extra: &str) -> String {
    format!(
        "connections:\n  src: {{ kind: mysql, host: 127.0.0.1, user: root }}\n  wh: {{ kind: postgres, host: 127.0.0.1, database: test, user: root, schema: a }}\npipelines:\n  orders:\n    source: src\n    target: wh\n    s3: {{ bucket: b }}\n{orders_schedule}    tables:\n      shop.orders: {{ cursor_column: u }}\n  crm:\n    source: src\n    target: wh\n    s3: {{ bucket: b }}\n{crm_extra}    tables:\n      crm.people: {{ cursor_column: u, verify: {{ every: 1d }} }}\n"
    )
}

struct World {
    group: String,
    config: tempfile::NamedTempFile,
    scheduler: aws_sdk_scheduler::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl World {
    async fn new() -> anyhow::Result<World> {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let group = format!("tm-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let scheduler = aws_sdk_scheduler::Client::new(&shared);
        scheduler
            .create_schedule_group()
            .name(&group)
            .send()
            .await?;
        Ok(World {
            group,
            config: tempfile::NamedTempFile::new()?,
            scheduler,
            cloudwatch: aws_sdk_cloudwatch::Client::new(&shared),
        })
    }

    fn write_config(&self, text: &str) -> anyhow::Result<()> {
        Ok(std::fs::write(self.config.path(), text)?)
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(BINARY)
            .arg("--config")
            .arg(self.config.path())
            .args(args)
            .env("TIDEMARK_SCHEDULE_GROUP", &self.group)
            .env("TIDEMARK_SCHEDULE_ROLE_ARN", ROLE)
            .env("TIDEMARK_STATE_MACHINE_ARN", STATE_MACHINE)
            .env("TIDEMARK_SCHEDULE_DEAD_LETTER_ARN", QUEUE)
            .env("TIDEMARK_ALARM_TOPIC_ARN", TOPIC)
            .output()
            .expect("the tidemark binary runs")
    }

    /// `--json schedules <verb>`: each schedule's and alarm's action, by name.
    fn plan(&self, verb: &str) -> anyhow::Result<Vec<(String, String)>> {
        let out = self.run(&["--json", "schedules", verb]);
        ensure!(out.status.success(), "{}", describe(&out));
        let report: Value = serde_json::from_slice(&out.stdout)?;
        Ok(["schedules", "alarms"]
            .iter()
            .flat_map(|kind| report[kind].as_array().cloned().unwrap_or_default())
            .map(|change| {
                (
                    change["name"].as_str().unwrap_or_default().to_owned(),
                    change["action"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    fn alarm(&self, what: &str) -> String {
        format!("{}-{what}", self.group)
    }

    async fn schedule(
        &self,
        name: &str,
    ) -> anyhow::Result<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput> {
        Ok(self
            .scheduler
            .get_schedule()
            .group_name(&self.group)
            .name(name)
            .send()
            .await?)
    }

    async fn schedule_names(&self) -> anyhow::Result<Vec<String>> {
        let listed = self
            .scheduler
            .list_schedules()
            .group_name(&self.group)
            .send()
            .await?;
        let mut names: Vec<String> = listed
            .schedules()
            .iter()
            .filter_map(|s| s.name().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The group's alarms: name → (metric, threshold, treat missing data, actions).
    async fn alarms(&self) -> anyhow::Result<Vec<(String, String, f64, String, Vec<String>)>> {
        let found = self
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix(format!("{}-", self.group))
            .send()
            .await?;
        let mut alarms: Vec<_> = found
            .metric_alarms()
            .iter()
            .map(|a| {
                (
                    a.alarm_name().unwrap_or_default().to_owned(),
                    a.metric_name().unwrap_or_default().to_owned(),
                    a.threshold().unwrap_or_default(),
                    a.treat_missing_data().unwrap_or_default().to_owned(),
                    a.alarm_actions().to_vec(),
                )
            })
            .collect();
        alarms.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(alarms)
    }

    /// A schedule someone made by hand in the stack's group.
    async fn add_foreign_schedule(&self, name: &str) -> anyhow::Result<()> {
        self.scheduler
            .create_schedule()
            .group_name(&self.group)
            .name(name)
            .description("a backfill started by hand")
            .schedule_expression("rate(1 day)")
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()?,
            )
            .target(
                Target::builder()
                    .arn(STATE_MACHINE)
                    .role_arn(ROLE)
                    .input(r#"{"pipeline": "orders", "mode": "backup_only"}"#)
                    .build()?,
            )
            .send()
            .await?;
        Ok(())
    }

    async fn cleanup(self) -> anyhow::Result<()> {
        for name in self.schedule_names().await? {
            self.scheduler
                .delete_schedule()
                .group_name(&self.group)
                .name(name)
                .send()
                .await?;
        }
        let alarms: Vec<String> = self.alarms().await?.into_iter().map(|a| a.0).collect();
        if !alarms.is_empty() {
            self.cloudwatch
                .delete_alarms()
                .set_alarm_names(Some(alarms))
                .send()
                .await?;
        }
        self.scheduler
            .delete_schedule_group()
            .name(&self.group)
            .send()
            .await?;
        Ok(())
    }
}

fn actions(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, action)| ((*name).to_owned(), (*action).to_owned()))
        .collect()
}

#[tokio::test]
async fn apply_creates_changes_and_removes_the_config_s_schedules_and_alarms_only() {
    let world = World::new().await.unwrap();
    let test = async {
        world.write_config(&config(
            "    schedule: rate(1 hour)\n",
            "    schedule: cron(0 6 * * ? *)\n    schedule_timezone: Europe/Berlin\n",
        ))?;
        world.add_foreign_schedule("backfill").await?;
        let (crm_failed, crm_fresh, crm_differing) = (
            world.alarm("crm-tables-failed"),
            world.alarm("crm-freshness"),
            world.alarm("crm-differing-rows"),
        );
        let (orders_failed, orders_fresh) = (
            world.alarm("orders-tables-failed"),
            world.alarm("orders-freshness"),
        );

        // The plan changes nothing.
        let planned = world.plan("plan")?;
        ensure!(
            planned
                == actions(&[
                    ("crm", "create"),
                    ("orders", "create"),
                    (&crm_differing, "create"),
                    (&crm_fresh, "create"),
                    (&crm_failed, "create"),
                    (&orders_fresh, "create"),
                    (&orders_failed, "create"),
                ]),
            "{planned:?}"
        );
        ensure!(world.schedule_names().await? == ["backfill"]);
        ensure!(world.alarms().await?.is_empty());

        ensure!(world.plan("apply")? == planned);
        let crm = world.schedule("crm").await?;
        let target = crm.target().context("a target")?;
        ensure!(
            crm.schedule_expression() == Some("cron(0 6 * * ? *)")
                && crm.schedule_expression_timezone() == Some("Europe/Berlin")
                && crm.flexible_time_window().map(|w| w.mode())
                    == Some(&FlexibleTimeWindowMode::Off)
                && target.arn() == STATE_MACHINE
                && target.role_arn() == ROLE
                && target.dead_letter_config().and_then(|d| d.arn()) == Some(QUEUE)
                && target
                    .retry_policy()
                    .and_then(|r| r.maximum_retry_attempts())
                    == Some(3),
            "{crm:?}"
        );
        let input: Value = serde_json::from_str(target.input().unwrap_or_default())?;
        ensure!(
            input == serde_json::json!({"pipeline": "crm", "mode": "full"}),
            "{input}"
        );
        ensure!(
            world
                .schedule("orders")
                .await?
                .schedule_expression_timezone()
                == Some("UTC")
        );
        let alarms = world.alarms().await?;
        ensure!(
            alarms
                .iter()
                .map(|(name, metric, threshold, missing, actions)| (
                    name.as_str(),
                    metric.as_str(),
                    *threshold,
                    missing.as_str(),
                    actions == &[TOPIC]
                ))
                .collect::<Vec<_>>()
                == [
                    (
                        crm_differing.as_str(),
                        "RowsDiffering",
                        0.0,
                        "notBreaching",
                        true
                    ),
                    (crm_fresh.as_str(), "LagSeconds", 7200.0, "breaching", true),
                    (
                        crm_failed.as_str(),
                        "FailedTables",
                        0.0,
                        "notBreaching",
                        true
                    ),
                    (
                        orders_fresh.as_str(),
                        "LagSeconds",
                        7200.0,
                        "breaching",
                        true
                    ),
                    (
                        orders_failed.as_str(),
                        "FailedTables",
                        0.0,
                        "notBreaching",
                        true
                    ),
                ],
            "{alarms:?}"
        );

        // A second apply finds everything as the config asks and writes nothing.
        let modified = world
            .schedule("crm")
            .await?
            .last_modification_date()
            .cloned();
        let again = world.plan("apply")?;
        ensure!(
            again.iter().all(|(_, action)| action == "keep") && again.len() == 7,
            "{again:?}"
        );
        ensure!(
            world
                .schedule("crm")
                .await?
                .last_modification_date()
                .cloned()
                == modified
        );

        // orders every 30 minutes with a 45-minute freshness alarm; crm unscheduled.
        world.write_config(&config(
            "    schedule: rate(30 minutes)\n    freshness_alarm: 45m\n",
            "",
        ))?;
        let changed = world.plan("apply")?;
        ensure!(
            changed
                == actions(&[
                    ("crm", "remove"),
                    ("orders", "update"),
                    (&crm_differing, "keep"),
                    (&crm_fresh, "remove"),
                    (&crm_failed, "keep"),
                    (&orders_fresh, "update"),
                    (&orders_failed, "keep"),
                ]),
            "{changed:?}"
        );
        ensure!(world.schedule_names().await? == ["backfill", "orders"]);
        ensure!(world.schedule("orders").await?.schedule_expression() == Some("rate(30 minutes)"));
        let fresh = world.alarms().await?;
        ensure!(
            fresh.iter().any(|a| a.0 == orders_fresh && a.2 == 2700.0)
                && !fresh.iter().any(|a| a.0 == crm_fresh),
            "{fresh:?}"
        );
        // The schedule made by hand is as it was.
        let backfill = world.schedule("backfill").await?;
        ensure!(
            backfill.description() == Some("a backfill started by hand")
                && backfill.schedule_expression() == Some("rate(1 day)"),
            "{backfill:?}"
        );
        anyhow::Ok(())
    };
    let result = test.await;
    world.cleanup().await.unwrap();
    result.unwrap();
}

#[tokio::test]
async fn a_schedule_not_made_by_tidemark_is_never_taken_over_and_mistakes_are_refused() {
    let world = World::new().await.unwrap();
    let test = async {
        world.write_config(&config("    schedule: rate(1 hour)\n", ""))?;
        // A schedule by hand that has a pipeline's name: apply stops before writing anything.
        world.add_foreign_schedule("orders").await?;
        let out = world.run(&["schedules", "apply"]);
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2)
                && said.contains("schedule `orders`")
                && said.contains("was not created by tidemark")
                && said.contains("rename or delete that schedule"),
            "{}",
            describe(&out)
        );
        ensure!(world.alarms().await?.is_empty(), "nothing is written");
        ensure!(
            world.schedule("orders").await?.description() == Some("a backfill started by hand")
        );

        // A group the stack did not make.
        let out = world.run(&["schedules", "plan", "--group", "tm-no-such-group"]);
        ensure!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr)
                    .contains("schedule group `tm-no-such-group` does not exist: deploy the stack"),
            "{}",
            describe(&out)
        );

        // Expressions EventBridge Scheduler would refuse are refused at their line.
        let text = config(
            "    schedule: every hour\n",
            "    schedule_timezone: Europe/Berlin\n",
        );
        world.write_config(&text)?;
        let out = world.run(&["config", "check"]);
        let said = String::from_utf8_lossy(&out.stderr);
        let line = |marker: &str| {
            text.lines()
                .position(|l| l.contains(marker))
                .map(|i| i + 1)
                .unwrap_or_default()
        };
        ensure!(
            out.status.code() == Some(2)
                && said.contains(&format!(":{}:", line("every hour")))
                && said.contains("is not a `rate(…)` or `cron(…)` expression")
                && said.contains(&format!(":{}:", line("schedule_timezone")))
                && said.contains("a time zone without a `schedule`"),
            "{}",
            describe(&out)
        );
        anyhow::Ok(())
    };
    let result = test.await;
    world.cleanup().await.unwrap();
    result.unwrap();
}
