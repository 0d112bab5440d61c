//! The checks of the file as written, each problem located at its key, and the step from the
//! checked file to the typed [`Config`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::naming::{self, TableId};
use crate::schema::DistStyle;

use super::locate::Problems;
use super::{
    CdcStrategy, Config, Connection, HumanDuration, LoadMode, Pipeline, RawRedshiftConnection,
    RawTableConfig, RedshiftConnection, TableConfig, TlsMode, TunnelConfig, EXECUTION_TIMEOUT,
    MAX_SOURCE_SESSIONS,
};

/// The checks of the file as written, each located at its key.
impl Config<RawTableConfig, RawRedshiftConnection> {
    pub(super) fn validate(&self, problems: &mut Problems<'_>) {
        if self.aws.max_attempts == 0 {
            problems.add(
                &["aws", "max_attempts"],
                "must be at least 1 (the first attempt)",
            );
        }
        for (key, timeout) in [
            ("connect_timeout", self.aws.connect_timeout),
            ("read_timeout", self.aws.read_timeout),
        ] {
            if timeout.0.is_zero() {
                problems.add(&["aws", key], "must be longer than `0s`");
            }
        }
        for (name, connection) in &self.connections {
            validate_connection(name, connection, problems);
        }
        if self.pipelines.is_empty() {
            problems.add(
                &["pipelines"],
                "no pipelines: add at least one under `pipelines`",
            );
        }
        for (name, pipeline) in &self.pipelines {
            if let Err(err) = naming::validate_pipeline_name(name) {
                problems.add(&["pipelines", name], err.to_string());
            }
            self.validate_pipeline(name, pipeline, problems);
        }
        self.validate_shared_targets(problems);
    }

    /// Two pipelines must not load into one table: the same schema of the same warehouse, reached
    /// through one connection or through two that name the same place (inside one pipeline,
    /// `validate_pipeline` reports it).
    fn validate_shared_targets(&self, problems: &mut Problems<'_>) {
        let mut owners: BTreeMap<(String, String), (&str, &str)> = BTreeMap::new();
        for (name, pipeline) in &self.pipelines {
            let Some(place) = self
                .connections
                .get(&pipeline.target)
                .and_then(Connection::warehouse_place)
            else {
                continue;
            };
            for (table_key, table) in &pipeline.tables {
                let Ok(table_id) = TableId::parse(table_key) else {
                    continue;
                };
                let Ok(folded) = table.target_table(&table_id) else {
                    continue;
                };
                match owners.get(&(place.clone(), folded.clone())) {
                    Some((other_pipeline, other_table)) if *other_pipeline != name => problems.add(
                        &["pipelines", name, "tables", table_key],
                        format!(
                            "`{table_key}` of pipeline `{name}` and `{other_table}` of pipeline `{other_pipeline}` both load into `{folded}` in {place}; each would overwrite the other's rows: set a distinct `target_name`, or another target schema"
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        owners.insert((place.clone(), folded), (name, table_key));
                    }
                }
            }
        }
    }

    fn validate_pipeline(
        &self,
        name: &str,
        pipeline: &Pipeline<RawTableConfig>,
        problems: &mut Problems<'_>,
    ) {
        let at = |key: &'static str| ["pipelines", name, key];
        match self.connections.get(&pipeline.source) {
            Some(Connection::Mysql(_)) => {}
            Some(other) => problems.add(
                &at("source"),
                format!(
                    "source `{}` is a `{}` connection; a source must be `kind: mysql`",
                    pipeline.source,
                    other.kind_name()
                ),
            ),
            None => problems.add(&at("source"), self.unknown_connection(&pipeline.source)),
        }
        match self.connections.get(&pipeline.target) {
            Some(Connection::Postgres(_) | Connection::Redshift(_)) => {}
            Some(Connection::Mysql(_)) => problems.add(
                &at("target"),
                format!(
                    "target `{}` is a mysql connection; a target must be `kind: postgres` or `kind: redshift`",
                    pipeline.target
                ),
            ),
            None => problems.add(&at("target"), self.unknown_connection(&pipeline.target)),
        }
        if pipeline.s3.bucket.is_empty() {
            problems.add(
                &["pipelines", name, "s3", "bucket"],
                "the bucket name is empty",
            );
        }
        if let Some(owner) = &pipeline.s3.expected_bucket_owner {
            if owner.len() != 12 || !owner.chars().all(|c| c.is_ascii_digit()) {
                problems.add(
                    &["pipelines", name, "s3", "expected_bucket_owner"],
                    "an AWS account id: 12 digits",
                );
            }
        }
        if pipeline.table_concurrency == 0 {
            problems.add(&at("table_concurrency"), "must be at least 1");
        }
        for (index, statement) in pipeline.after_load.iter().enumerate() {
            if let Err(why) = crate::load::after_load::single_statement(statement) {
                problems.add(&at("after_load"), format!("item {}: {why}", index + 1));
            }
        }
        for (table, config) in &pipeline.tables {
            for (index, statement) in config.after_load.iter().enumerate() {
                if let Err(why) = crate::load::after_load::single_statement(statement) {
                    problems.add(
                        &["pipelines", name, "tables", table, "after_load"],
                        format!("item {}: {why}", index + 1),
                    );
                }
            }
        }
        if let Some(problem) = pipeline
            .schedule
            .as_deref()
            .and_then(crate::schedules::expression_problem)
        {
            problems.add(&at("schedule"), problem);
        }
        match (&pipeline.schedule_timezone, &pipeline.schedule) {
            (Some(_), None) => problems.add(
                &at("schedule_timezone"),
                "a time zone without a `schedule`: set `schedule`, or remove this",
            ),
            (Some(zone), Some(_)) => {
                if let Some(problem) = crate::schedules::timezone_problem(zone) {
                    problems.add(&at("schedule_timezone"), problem);
                }
            }
            (None, _) => {}
        }
        if pipeline
            .freshness_alarm
            .is_some_and(|after| after.0.as_secs() < 60)
        {
            problems.add(
                &at("freshness_alarm"),
                "at least `1m`: `LagSeconds` is reported once per sync",
            );
        }
        let depends_on = pipeline
            .tables
            .iter()
            .map(|(table, config)| (table.clone(), config.depends_on.clone()))
            .collect();
        for (table, problem) in crate::dependencies::problems(&depends_on) {
            problems.add(
                &["pipelines", name, "tables", &table, "depends_on"],
                problem.to_string(),
            );
        }
        if let Some(endpoint) = &pipeline.lineage.endpoint {
            if crate::lineage::Endpoint::parse(endpoint).is_err() {
                problems.add(
                    &["pipelines", name, "lineage", "endpoint"],
                    format!("`{endpoint}` is not an http:// or https:// URL with a host"),
                );
            }
        }
        if pipeline.lineage.namespace.trim().is_empty() {
            problems.add(
                &["pipelines", name, "lineage", "namespace"],
                "the jobs' namespace is empty",
            );
        }
        if pipeline.watermark_history == 0 {
            problems.add(
                &at("watermark_history"),
                "keep at least 1 version, so that a mistake can be undone",
            );
        }
        if pipeline.lease_ttl.0 <= EXECUTION_TIMEOUT {
            problems.add(
                &at("lease_ttl"),
                format!(
                    "must be longer than the sync state machine's timeout ({}): an execution that times out runs no `fail`, and its lease must lapse on its own; the default is `6h`",
                    HumanDuration(EXECUTION_TIMEOUT)
                ),
            );
        }
        if pipeline.chunk_concurrency == 0 {
            problems.add(&at("chunk_concurrency"), "must be at least 1");
        }
        let sessions =
            u64::from(pipeline.table_concurrency) * u64::from(pipeline.chunk_concurrency);
        if sessions > MAX_SOURCE_SESSIONS {
            problems.add(
                &at("table_concurrency"),
                format!(
                    "table_concurrency {} x chunk_concurrency {} = {sessions} extractions at once, each a session on the source; at most {MAX_SOURCE_SESSIONS}: lower one of them (README: Concurrency)",
                    pipeline.table_concurrency, pipeline.chunk_concurrency
                ),
            );
        }
        if pipeline.tables.is_empty() {
            problems.add(
                &at("tables"),
                "no tables: add at least one `database.table`",
            );
        }
        let mut target_names = BTreeMap::new();
        for (table_key, table) in &pipeline.tables {
            let path = ["pipelines", name, "tables", table_key.as_str()];
            let table_id = match TableId::parse(table_key) {
                Ok(id) => id,
                Err(err) => {
                    problems.add(&path, err.to_string());
                    continue;
                }
            };
            validate_table(&path, table, problems);
            match table.target_table(&table_id) {
                Ok(folded) if folded.starts_with(naming::RESERVED_TARGET_PREFIX) => problems.add(
                    &path,
                    format!(
                        "target table `{folded}` starts with `{}`, which tidemark reserves for its own tables (the load ledger, staging): set `target_name`",
                        naming::RESERVED_TARGET_PREFIX
                    ),
                ),
                Ok(folded) => {
                    if let Some(other) = target_names.insert(folded.clone(), table_key) {
                        problems.add(
                            &path,
                            format!(
                                "`{table_key}` and `{other}` both load into target table `{folded}`; set a distinct `target_name`"
                            ),
                        );
                    }
                }
                Err(err) => problems.add(&path, err.to_string()),
            }
        }
    }

    fn unknown_connection(&self, name: &str) -> String {
        format!(
            "no connection named `{name}`; connections are: {}",
            self.connections
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The checked config with its tables typed. Every table passed `validate`, so a table that
    /// still does not convert is a bug here, not a mistake in the file.
    pub(super) fn typed(self) -> Result<Config> {
        let mut pipelines = BTreeMap::new();
        for (name, pipeline) in self.pipelines {
            let mut tables = BTreeMap::new();
            for (key, raw) in pipeline.tables {
                let table = TableConfig::try_from(raw).map_err(|why| {
                    Error::internal(format!("table `{key}` passed the config checks but: {why}"))
                })?;
                tables.insert(key, table);
            }
            pipelines.insert(
                name,
                Pipeline {
                    source: pipeline.source,
                    target: pipeline.target,
                    s3: pipeline.s3,
                    table_concurrency: pipeline.table_concurrency,
                    chunk_concurrency: pipeline.chunk_concurrency,
                    lease_ttl: pipeline.lease_ttl,
                    watermark_history: pipeline.watermark_history,
                    watermark_history_age: pipeline.watermark_history_age,
                    schedule: pipeline.schedule,
                    schedule_timezone: pipeline.schedule_timezone,
                    freshness_alarm: pipeline.freshness_alarm,
                    lineage: pipeline.lineage,
                    after_load: pipeline.after_load,
                    tables,
                },
            );
        }
        let mut connections = BTreeMap::new();
        for (name, connection) in self.connections {
            let typed = match connection {
                Connection::Mysql(mysql) => Connection::Mysql(mysql),
                Connection::Postgres(postgres) => Connection::Postgres(postgres),
                Connection::Redshift(raw) => Connection::Redshift(Box::new(
                    RedshiftConnection::try_from(*raw).map_err(|why| {
                        Error::internal(format!(
                            "connection `{name}` passed the config checks but: {why}"
                        ))
                    })?,
                )),
            };
            connections.insert(name, typed);
        }
        Ok(Config {
            connections,
            pipelines,
            aws: self.aws,
        })
    }
}

fn validate_connection(
    name: &str,
    connection: &Connection<RawRedshiftConnection>,
    problems: &mut Problems<'_>,
) {
    let at = |key: &'static str| ["connections", name, key];
    let (tls, ca_file, ca_secret) = connection.tls_settings();
    if ca_file.is_some() && ca_secret.is_some() {
        problems.add(
            &at("tls_ca_secret"),
            "give `tls_ca_file` or `tls_ca_secret`, not both",
        );
    }
    if (ca_file.is_some() || ca_secret.is_some()) && tls != TlsMode::Required {
        problems.add(
            &at("tls"),
            "`tls_ca_file` and `tls_ca_secret` verify the server's certificate: set `tls: required`",
        );
    }
    match connection {
        Connection::Mysql(mysql) => {
            if mysql.password.is_some() && mysql.password_secret.is_some() {
                problems.add(
                    &at("password_secret"),
                    "give `password` or `password_secret`, not both",
                );
            }
            if mysql.read_timeout.0.is_zero() {
                problems.add(&at("read_timeout"), "must be longer than `0s`");
            }
            if !(1..=1024).contains(&mysql.max_row_mib) {
                problems.add(
                    &at("max_row_mib"),
                    "from 1 to 1024 MiB (MySQL's own limit on a packet is 1 GiB)",
                );
            }
        }
        Connection::Postgres(postgres) => {
            if postgres.password.is_some() && postgres.password_secret.is_some() {
                problems.add(
                    &at("password_secret"),
                    "give `password` or `password_secret`, not both",
                );
            }
            if let Some(tunnel) = &postgres.tunnel {
                validate_tunnel(name, tunnel, problems);
            }
        }
        Connection::Redshift(redshift) => {
            if let Err(found) = redshift.access() {
                for (key, message) in found {
                    problems.add(&at(key), message);
                }
            }
            if !redshift.iam_role.starts_with("arn:") {
                problems.add(
                    &at("iam_role"),
                    "`iam_role` must be the ARN of the role Redshift assumes for COPY (`arn:aws:iam::…:role/…`)",
                );
            }
            if let Some(tunnel) = &redshift.tunnel {
                validate_tunnel(name, tunnel, problems);
            }
        }
    }
}

fn validate_tunnel(name: &str, tunnel: &TunnelConfig, problems: &mut Problems<'_>) {
    let keys = tunnel.private_key_secret.is_some() as u8 + tunnel.private_key_file.is_some() as u8;
    if keys != 1 {
        problems.add(
            &["connections", name, "tunnel"],
            "a tunnel needs exactly one of `private_key_secret` or `private_key_file`",
        );
    }
    if tunnel.verify_host_key && tunnel.host_key.is_none() {
        problems.add(
            &["connections", name, "tunnel"],
            "give the bastion's `host_key` (`ssh-keyscan HOST` prints it), or set `verify_host_key: false`",
        );
    }
}

fn validate_table(path: &[&str; 4], table: &RawTableConfig, problems: &mut Problems<'_>) {
    let at = |key: &'static str| [path[0], path[1], path[2], path[3], key];
    let strategy = table.cdc_strategy;
    if let Err(found) = table.strategy() {
        for (key, message) in found {
            problems.add(&at(key), message);
        }
    }
    if let Some(keys) = &table.key_columns {
        if keys.is_empty() && table.load_mode() == LoadMode::Merge {
            problems.add(
                &at("key_columns"),
                "`load: merge` needs key columns to match rows; list them, or use `load: append`",
            );
        }
    }
    if table.load_mode() == LoadMode::Append && table.lookback().0 > Duration::ZERO {
        problems.add(
            &at("lookback"),
            "`load: append` cannot re-read rows: every re-read row would be appended again; use `lookback: 0s`, or `load: merge`",
        );
    }
    if table.load_mode() == LoadMode::Replace && strategy != CdcStrategy::FullSync {
        problems.add(
            &at("load"),
            "`load: replace` makes the target equal to one run's rows, so it needs `cdc_strategy: full_sync`",
        );
    }
    if table.chunk_rows == 0 {
        problems.add(&at("chunk_rows"), "must be at least 1");
    }
    if table.redshift.diststyle == Some(DistStyle::Key) && table.redshift.distkey.is_none() {
        problems.add(&at("redshift"), "`diststyle: key` needs `distkey`");
    }
    for (index, check) in table.checks.iter().enumerate() {
        let item = index.to_string();
        if let Err(found) = check.check() {
            for (key, message) in found {
                let at = [path[0], path[1], path[2], path[3], "checks", &item, key];
                let depth = if key.is_empty() { 6 } else { 7 };
                problems.add(&at[..depth], message);
            }
        }
        let needs_timestamp = check.freshness.is_some()
            && matches!(strategy, CdcStrategy::IdOnly | CdcStrategy::FullSync);
        if needs_timestamp {
            problems.add(
                &[path[0], path[1], path[2], path[3], "checks", &item, "freshness"],
                format!(
                    "`freshness` measures the newest DATETIME/TIMESTAMP cursor value, and `{strategy}` has none; use a `row_count` check, or a timestamp cursor"
                ),
            );
        }
    }
    if let Some(include) = &table.columns.include {
        for excluded in &table.columns.exclude {
            if include.contains(excluded) {
                problems.add(
                    &at("columns"),
                    format!("`{excluded}` is both included and excluded"),
                );
            }
        }
    }
}
