//! The configuration's tests: parsing, `${VAR}` substitution, every rule and the line each
//! error names.

use super::env::substitute;
use super::*;
use crate::schema::OversizePolicy;
use crate::secret::MASK;

pub(crate) const EXAMPLE: &str = include_str!("../../../examples/tidemark.yaml");

fn env() -> Environment {
    Environment::from([(
        "TIDEMARK_MYSQL_PASSWORD".to_owned(),
        "s3cr3t-value".to_owned(),
    )])
}

fn parse(text: &str) -> Result<Config> {
    Config::from_yaml(text, "tidemark.yaml", &env())
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_example_config_is_valid() {
    let config = parse(EXAMPLE).unwrap();
    let pipeline = config.pipeline("default").unwrap();
    let orders = &pipeline.tables["shop.orders"];
    assert_eq!(orders.strategy.kind(), CdcStrategy::Hybrid);
    assert_eq!(orders.lag, HumanDuration(Duration::from_secs(5)));
    assert_eq!(orders.load_mode(), LoadMode::Merge);
    assert_eq!(pipeline.table_concurrency, 1);
}

#[test]
fn the_readme_shows_the_example_config() {
    let readme = include_str!("../../../README.md");
    assert!(
        readme.contains(&format!("```yaml\n{EXAMPLE}```")),
        "README.md must embed examples/tidemark.yaml verbatim"
    );
}

#[test]
fn variables_are_substituted_and_secrets_never_print() {
    let config = parse(EXAMPLE).unwrap();
    let Connection::Mysql(shop) = &config.connections["shop"] else {
        panic!("shop is mysql")
    };
    let password = shop.password.as_ref().unwrap();
    assert_eq!(crate::secret::expose(password), "s3cr3t-value");
    let shown = serde_yaml::to_string(&config).unwrap();
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
    assert!(shown.contains(MASK));
    assert!(!format!("{config:?}").contains("s3cr3t-value"));
}

#[test]
fn tls_ca_settings_need_tls_required_and_only_one_source() {
    let with = |lines: &str| {
        EXAMPLE.replace(
            "    password: \"${TIDEMARK_MYSQL_PASSWORD:-}\"\n",
            &format!("    password: \"${{TIDEMARK_MYSQL_PASSWORD:-}}\"\n{lines}"),
        )
    };
    let err = error_of(&with("    tls_ca_file: /etc/ca.pem\n"));
    assert!(err.contains("set `tls: required`"), "{err}");
    let err = error_of(&with(
        "    tls: required\n    tls_ca_file: /etc/ca.pem\n    tls_ca_secret: ca\n",
    ));
    assert!(err.contains("not both"), "{err}");
    let config = parse(&with("    tls: verify_full\n    tls_ca_secret: ca\n")).unwrap();
    assert_eq!(
        config.connections["shop"].tls_settings(),
        (TlsMode::Required, None, Some("ca"))
    );
    assert!(parse(&with("    tls: unverified\n")).is_ok());
}

#[test]
fn the_expected_bucket_owner_is_an_account_id() {
    let with = |owner: &str| {
        EXAMPLE.replace(
                "s3: { bucket: tidemark-demo, prefix: tidemark }",
                &format!("s3: {{ bucket: tidemark-demo, prefix: tidemark, expected_bucket_owner: \"{owner}\" }}"),
            )
    };
    assert!(error_of(&with("12345")).contains("12 digits"));
    let config = parse(&with("123456789012")).unwrap();
    assert_eq!(
        config.pipelines["default"]
            .s3
            .expected_bucket_owner
            .as_deref(),
        Some("123456789012")
    );
}

#[test]
fn aws_variables_are_refused_and_values_never_echoed() {
    let env = Environment::from([
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "leak".to_owned()),
        ("TIDEMARK_HOST".to_owned(), "db".to_owned()),
    ]);
    let err = substitute("${AWS_SECRET_ACCESS_KEY}.example.com", &env).unwrap_err();
    assert!(err.contains("is refused") && !err.contains("leak"), "{err}");
    let err = substitute("pa${ss", &env).unwrap_err();
    assert!(!err.contains("pa${ss"), "{err}");
    assert!(err.contains("$${"), "{err}");
    let err = substitute("se${cr et}", &env).unwrap_err();
    assert!(!err.contains("cr et"), "{err}");
    let lambda = lambda_environment(env);
    assert_eq!(lambda.keys().collect::<Vec<_>>(), ["TIDEMARK_HOST"]);
}

#[test]
fn substitution_defaults_and_escapes() {
    let env = Environment::from([("A".to_owned(), "x".to_owned())]);
    assert_eq!(substitute("${A}-${B:-d}-$$-$", &env).unwrap(), "x-d-$-$");
    assert!(substitute("${B}", &env)
        .unwrap_err()
        .contains("`B` is not set"));
    assert!(substitute("${A", &env).is_err());
    assert!(substitute("${A B}", &env).is_err());
}

#[test]
fn an_unset_variable_is_located() {
    let text = EXAMPLE.replace("${TIDEMARK_MYSQL_PASSWORD:-}", "${NOT_SET_ANYWHERE}");
    let err = error_of(&text);
    let line = text
        .lines()
        .position(|l| l.contains("NOT_SET_ANYWHERE"))
        .unwrap()
        + 1;
    assert!(err.starts_with(&format!("tidemark.yaml:{line}:")), "{err}");
    assert!(err.contains("NOT_SET_ANYWHERE"), "{err}");
}

/// A config with `body` after a MySQL source `src` and a PostgreSQL target `wh` (schema `a`).
fn small(body: &str) -> String {
    format!(
            "connections:\n  src: {{ kind: mysql, host: h, user: u }}\n  wh: {{ kind: postgres, host: localhost, database: d, user: u, schema: a }}\n{body}"
        )
}

/// The 1-based line of the `nth` (0-based) line of `text` containing `marker`.
fn line_of(text: &str, marker: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .expect("marker present")
}

#[test]
fn a_key_written_twice_is_an_error_naming_both_lines() {
    let pipeline = "  p:\n    source: src\n    target: wh\n    s3: { bucket: b }\n";
    for (text, key, marker) in [
            (
                small(&format!("pipelines:\n{pipeline}    tables:\n      db.a: {{ cursor_column: u }}\n    tables:\n      db.b: {{ cursor_column: u }}\n")),
                "pipelines.p.tables",
                "    tables:",
            ),
            (
                small(&format!("pipelines:\n{pipeline}    tables:\n      db.a: {{ cursor_column: u }}\n{pipeline}    tables:\n      db.b: {{ cursor_column: u }}\n")),
                "pipelines.p",
                "  p:",
            ),
            (
                small(&format!("pipelines:\n{pipeline}    tables:\n      db.a: {{ cursor_column: u }}\n      db.a: {{ cdc_strategy: full_sync }}\n")),
                "pipelines.p.tables.db.a",
                "db.a:",
            ),
            (
                small(&format!("  src: {{ kind: mysql, host: other, user: u }}\npipelines:\n{pipeline}    tables:\n      db.a: {{ cursor_column: u }}\n")),
                "connections.src",
                "src: {",
            ),
        ] {
            let err = error_of(&text);
            let (first, second) = (line_of(&text, marker, 0), line_of(&text, marker, 1));
            assert!(
                err.contains(&format!("tidemark.yaml:{second}:"))
                    && err.contains(&format!("first at tidemark.yaml:{first}:"))
                    && err.contains(&format!("`{key}` is defined twice")),
                "{key}: {err}"
            );
        }
}

#[test]
fn two_pipelines_cannot_load_into_one_table() {
    // `wh2` names the same place as `wh` (localhost is 127.0.0.1; the schema folds).
    let text = small(
            "  wh2: { kind: postgres, host: 127.0.0.1, database: d, user: v, schema: A }\npipelines:\n  p:\n    source: src\n    target: wh\n    s3: { bucket: b }\n    tables:\n      db.orders: { cursor_column: u }\n  q:\n    source: src\n    target: wh2\n    s3: { bucket: b }\n    tables:\n      other.orders: { cursor_column: u }\n",
        );
    let err = error_of(&text);
    assert!(
            err.contains("`other.orders` of pipeline `q` and `db.orders` of pipeline `p` both load into `orders` in postgres://127.0.0.1:5432/d/a"),
            "{err}"
        );
    // Another schema, or a `target_name`, keeps them apart.
    parse(&text.replace("schema: A", "schema: b")).unwrap();
    parse(&text.replace(
        "other.orders: { cursor_column: u }",
        "other.orders: { cursor_column: u, target_name: other_orders }",
    ))
    .unwrap();
}

#[test]
fn tidemark_s_own_table_names_are_reserved() {
    for table in ["db.tidemark_load_ledger", "db.TIDEMARK_staging"] {
        let text = small(&format!("pipelines:\n  p:\n    source: src\n    target: wh\n    s3: {{ bucket: b }}\n    tables:\n      {table}: {{ cursor_column: u }}\n"));
        let err = error_of(&text);
        assert!(
            err.contains("which tidemark reserves") && err.contains("set `target_name`"),
            "{err}"
        );
    }
}

/// Replaces the first `from` in the example with `to`, and expects an error at the first
/// line of the result that contains `line_marker`.
fn assert_rejected(from: &str, to: &str, line_marker: &str, expected: &str) {
    assert!(EXAMPLE.contains(from), "`{from}` not in the example");
    let text = EXAMPLE.replacen(from, to, 1);
    let line = text
        .lines()
        .position(|l| l.contains(line_marker))
        .expect("marker present")
        + 1;
    let err = error_of(&text);
    assert!(
        err.starts_with(&format!("tidemark.yaml:{line}:")),
        "expected line {line} for `{to}`: {err}"
    );
    assert!(err.contains(expected), "expected `{expected}` in: {err}");
}

fn assert_rejected_at_line(from: &str, to: &str, expected: &str) {
    assert_rejected(from, to, to, expected);
}

#[test]
fn malformed_variants_are_rejected_with_their_line() {
    assert_rejected_at_line(
        "chunk_rows: 500000",
        "chunk_rowz: 500000",
        "unknown field `chunk_rowz`",
    );
    assert_rejected_at_line("chunk_rows: 500000", "chunk_rows: many", "invalid type");
    assert_rejected_at_line("lag: 5s", "lag: 5 parsecs", "invalid duration");
    assert_rejected_at_line(
        "cdc_strategy: hybrid",
        "cdc_strategy: magic",
        "unknown variant `magic`",
    );
    assert_rejected_at_line(
        "source: shop",
        "source: shopp",
        "no connection named `shopp`",
    );
    assert_rejected_at_line("target: warehouse", "target: shop", "a target must be");
    assert_rejected_at_line(
        "load: merge",
        "load: replace",
        "needs `cdc_strategy: full_sync`",
    );
    assert_rejected(
        "        cursor_column: updated_at\n        key_columns",
        "        key_columns",
        "cdc_strategy: hybrid",
        "needs `cursor_column`",
    );
    assert_rejected_at_line("key_columns: [id]", "key_columns: []", "needs key columns");
    assert_rejected_at_line("shop.orders:", "orders:", "exactly one dot");
    // Inside a `kind`-tagged connection serde buffers values: the error points at the connection.
    assert_rejected(
        "port: 3306",
        "port: 99999",
        "  shop:",
        "invalid value: integer `99999`",
    );
    assert_rejected_at_line("table_concurrency: 1", "table_concurrency: 0", "at least 1");
    let pipeline_line = "table_concurrency: 1            # 1 = sequential, N = N tables at once";
    assert_rejected(
        pipeline_line,
        "table_concurrency: 1\n    lease_ttl: 5h",
        "lease_ttl: 5h",
        "longer than the sync state machine's timeout (5h)",
    );
    // 11 tables x the default 4 chunks: 44 sessions on the source.
    assert_rejected(
        pipeline_line,
        "table_concurrency: 11",
        "table_concurrency: 11",
        "= 44 extractions at once, each a session on the source; at most 40",
    );
    assert_rejected_at_line(
        "lookback: 0s",
        "oversize_in_redshift: cut",
        "unknown variant `cut`, expected one of `fail`, `truncate`, `null`",
    );
}

#[test]
fn oversize_in_redshift_defaults_to_fail_and_reaches_the_schema_options() {
    let config = parse(EXAMPLE).unwrap();
    let orders = &config.pipelines["default"].tables["shop.orders"];
    assert_eq!(orders.oversize_in_redshift, OversizePolicy::Fail);
    let text = EXAMPLE.replacen("lookback: 0s", "oversize_in_redshift: null", 1);
    let orders = &parse(&text).unwrap().pipelines["default"].tables["shop.orders"];
    assert_eq!(
        orders.schema_options().oversize_in_redshift,
        OversizePolicy::Null
    );
    let pipeline = config.pipeline("default").unwrap();
    assert_eq!(
        config.target_warehouse(pipeline).unwrap(),
        Warehouse::Postgres
    );
}

#[test]
fn custom_sql_must_be_one_select() {
    let with_sql = |sql: &str| {
        EXAMPLE.replacen(
                "        cdc_strategy: hybrid         # hybrid | timestamp_only | id_only | full_sync | custom_sql\n",
                &format!("        cdc_strategy: custom_sql\n        custom_sql: \"{sql}\"\n"),
                1,
            )
    };
    assert!(parse(&with_sql(
        "SELECT * FROM shop.orders WHERE updated_at > :last_ts LIMIT :limit"
    ))
    .is_ok());
    let err = error_of(&with_sql("DELETE FROM shop.orders; SELECT 1"));
    let line = with_sql("x")
        .lines()
        .position(|l| l.contains("custom_sql: "))
        .unwrap()
        + 1;
    assert!(err.starts_with(&format!("tidemark.yaml:{line}:")), "{err}");
}

#[test]
fn connection_kinds_are_checked() {
    let err = error_of(&EXAMPLE.replacen("kind: mysql", "kind: oracle", 1));
    assert!(err.contains("unknown variant `oracle`"), "{err}");
    let text = EXAMPLE.replacen("user: root\n", "user: root\n    colour: blue\n", 1);
    let line = text.lines().position(|l| l.contains("colour")).unwrap() + 1;
    let err = error_of(&text);
    assert!(
        err.starts_with(&format!("tidemark.yaml:{line}:5:")),
        "{err}"
    );
    assert!(err.contains("unknown field `colour`"), "{err}");
}

#[test]
fn redshift_access_needs_its_settings_and_carries_them() {
    let dw = "    access: data_api\n    workgroup: analytics-wg\n";
    let connection_line = line_of(EXAMPLE, "  dw:", 0);
    for (to, key, expected) in [
        (
            "    access: data_api\n",
            "access",
            "`access: data_api` needs exactly one of `workgroup` (serverless) or `cluster_identifier` (provisioned)",
        ),
        (
            "    access: data_api\n    workgroup: w\n    cluster_identifier: c\n",
            "access",
            "needs exactly one of `workgroup`",
        ),
        (
            "    access: direct\n",
            "access",
            "`access: direct` and `access: tunnel` need `host` and `user` (the cluster endpoint)",
        ),
        (
            "    access: direct\n    host: h\n    user: u\n    fallback_to_tunnel: true\n",
            "fallback_to_tunnel",
            "`fallback_to_tunnel` needs `access: data_api` and a `tunnel` block",
        ),
        (
            "    access: data_api\n    workgroup: w\n    fallback_to_tunnel: true\n",
            "fallback_to_tunnel",
            "`fallback_to_tunnel` loads over the wire protocol through the bastion: it needs `host` and `user`",
        ),
    ] {
        let text = EXAMPLE.replacen(dw, to, 1);
        let line = connection_line
            + text
                .lines()
                .skip(connection_line)
                .position(|l| l.starts_with(&format!("    {key}:")))
                .expect("the key is in dw")
            + 1;
        let err = error_of(&text);
        assert!(
            err.starts_with(&format!("tidemark.yaml:{line}:5:")),
            "{to}: {err}"
        );
        assert!(err.contains(expected), "{to}: {err}");
    }
    // The example's `dw` without its `tunnel` block.
    let start = EXAMPLE.find("  dw:\n").unwrap();
    let end = EXAMPLE.find("\npipelines:").unwrap();
    let bare_dw = "  dw:\n    kind: redshift\n    access: tunnel\n    host: h\n    user: u\n    database: dev\n    password: p\n    iam_role: \"arn:aws:iam::123456789012:role/copy\"\n";
    let err = error_of(&format!(
        "{}{bare_dw}{}",
        &EXAMPLE[..start],
        &EXAMPLE[end..]
    ));
    assert!(
        err.contains("`access: tunnel` needs a `tunnel` block"),
        "{err}"
    );

    let config = parse(&EXAMPLE.replacen(
        dw,
        "    access: data_api\n    workgroup: analytics-wg\n    host: dw.example.com\n    user: loader\n    fallback_to_tunnel: true\n",
        1,
    ))
    .unwrap();
    let Connection::Redshift(redshift) = &config.connections["dw"] else {
        panic!("dw is redshift");
    };
    let RedshiftAccess::DataApi {
        target: DataApiTarget::Workgroup(workgroup),
        tunnel:
            Some(DataApiTunnel {
                tunnel,
                fallback: Some(endpoint),
            }),
    } = &redshift.access
    else {
        panic!("{:?}", redshift.access);
    };
    assert_eq!(workgroup, "analytics-wg");
    assert_eq!(tunnel.bastion_host, "bastion.example.com");
    assert_eq!(
        endpoint,
        &WireEndpoint {
            host: "dw.example.com".into(),
            port: 5439,
            user: "loader".into()
        }
    );
    // `config show` writes it back flat, as the file has it.
    let shown = to_yaml(&config).unwrap();
    assert!(shown.contains("fallback_to_tunnel: true"), "{shown}");
    assert!(shown.contains("host: dw.example.com"), "{shown}");
    assert_eq!(
        parse(&shown).unwrap().connections["dw"].tls_settings(),
        config.connections["dw"].tls_settings()
    );
}

#[test]
fn malformed_yaml_is_located() {
    let err = error_of("connections: {\npipelines: [");
    assert!(err.starts_with("tidemark.yaml:"), "{err}");
    assert!(
        err.chars()
            .nth("tidemark.yaml:".len())
            .unwrap()
            .is_ascii_digit(),
        "{err}"
    );
}

#[test]
fn durations_parse_and_print() {
    assert_eq!(
        HumanDuration::parse("250ms").unwrap().0,
        Duration::from_millis(250)
    );
    assert_eq!(
        HumanDuration::parse("7d").unwrap().0,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(HumanDuration::parse("90m").unwrap().to_string(), "90m");
    assert_eq!(HumanDuration::parse("120m").unwrap().to_string(), "2h");
    for bad in ["", "5", "s", "-5s", "5 s", "1.5h", "99999999999999999999d"] {
        assert!(HumanDuration::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn lookback_defaults_follow_the_load_mode() {
    let config = parse(EXAMPLE).unwrap();
    let customers = &config.pipelines["default"].tables["shop.customers"];
    assert_eq!(
        customers.lookback(),
        HumanDuration(Duration::from_secs(300))
    );
    let append = EXAMPLE
        .replacen("load: merge", "load: append", 1)
        .replacen("lookback: 0s", "", 1);
    let orders = &parse(&append).unwrap().pipelines["default"].tables["shop.orders"];
    assert_eq!(orders.lookback(), HumanDuration::default());
    let err = error_of(
        &EXAMPLE.replacen("load: merge", "load: append", 1).replacen(
            "lookback: 0s",
            "lookback: 1m",
            1,
        ),
    );
    assert!(err.contains("appended again"), "{err}");
}

#[test]
fn network_timeouts_default_and_are_checked() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.aws, AwsSettings::default());
    assert_eq!(
        (
            config.aws.connect_timeout.to_string(),
            config.aws.read_timeout.to_string()
        ),
        ("5s".to_owned(), "1m".to_owned())
    );
    assert_eq!(config.aws.max_attempts, 3);
    for connection in config.connections.values() {
        if let Connection::Mysql(mysql) = connection {
            assert_eq!(mysql.read_timeout.to_string(), "5m");
        }
    }
    let set = parse(&format!(
        "{EXAMPLE}aws:\n  read_timeout: 2s\n  max_attempts: 5\n"
    ))
    .unwrap();
    assert_eq!(set.aws.read_timeout, HumanDuration(Duration::from_secs(2)));
    assert_eq!(set.aws.max_attempts, 5);
    // Located at the key: the line after `aws:`.
    let at = format!("tidemark.yaml:{}:3:", EXAMPLE.lines().count() + 2);
    let err = error_of(&format!("{EXAMPLE}aws:\n  max_attempts: 0\n"));
    assert!(err.starts_with(&at) && err.contains("at least 1"), "{err}");
    let err = error_of(&format!("{EXAMPLE}aws:\n  read_timeout: 0s\n"));
    assert!(err.starts_with(&at) && err.contains("longer than"), "{err}");
    let err = error_of(&format!("{EXAMPLE}aws:\n  retries: 2\n"));
    assert!(err.contains("unknown field `retries`"), "{err}");
}

#[test]
fn full_sync_defaults_to_replace() {
    let text = EXAMPLE
        .replacen("cdc_strategy: hybrid", "cdc_strategy: full_sync", 1)
        .replacen("load: merge", "", 1);
    let config = parse(&text).unwrap();
    assert_eq!(
        config.pipelines["default"].tables["shop.orders"].load_mode(),
        LoadMode::Replace
    );
}

#[test]
fn deletes_need_a_merge_of_one_source_table() {
    let config = parse(EXAMPLE).unwrap();
    let customers = &config.pipelines["default"].tables["shop.customers"];
    assert_eq!(customers.deletes, crate::config::DeletePolicy::Soft);
    assert_eq!(customers.reconcile_every(), Duration::from_secs(86_400));
    let orders = &config.pipelines["default"].tables["shop.orders"];
    assert_eq!(orders.deletes, crate::config::DeletePolicy::Ignore);
    assert_eq!(
        orders.reconcile_every(),
        crate::config::DEFAULT_RECONCILE_EVERY
    );

    let with_deletes = |replace: (&str, &str)| {
        EXAMPLE.replacen(replace.0, replace.1, 1).replacen(
            "lookback: 0s",
            "lookback: 0s\n        deletes: hard",
            1,
        )
    };
    let err = error_of(&with_deletes(("load: merge", "load: append")));
    assert!(
        err.contains("`deletes: hard` cannot apply") && err.contains("`load: append`"),
        "{err}"
    );
    let err = error_of(
        &with_deletes(("cdc_strategy: hybrid", "cdc_strategy: full_sync")).replacen(
            "load: merge",
            "",
            1,
        ),
    );
    assert!(err.contains("the default of `full_sync`"), "{err}");
    let err = error_of(&with_deletes(("load: merge", "load: replace")));
    assert!(err.contains("deleted rows leave with it already"), "{err}");
    let custom = with_deletes(("cdc_strategy: hybrid", "cdc_strategy: custom_sql")).replacen(
        "lookback: 0s",
        "lookback: 0s\n        custom_sql: \"SELECT * FROM shop.orders WHERE updated_at > :last_ts AND updated_at <= :ceiling\"",
        1,
    );
    let err = error_of(&custom);
    assert!(err.contains("`custom_sql` statement"), "{err}");
    let err = error_of(&EXAMPLE.replacen("deletes: soft ", "deletes: ignore", 1));
    assert!(
        err.contains("`reconcile_every` says how often deleted rows are looked for"),
        "{err}"
    );
    assert!(
        error_of(&EXAMPLE.replacen("deletes: soft ", "deletes: often", 1))
            .contains("unknown variant `often`")
    );
}

#[test]
fn locator_finds_nested_keys() {
    let locator = KeyLocator::new("a:\n  b: [1, {c: 2}]\n  d:\n    e: 3\n");
    assert_eq!(locator.locate(&["a", "d", "e"]), Some((4, 5)));
    assert_eq!(locator.locate(&["a", "b", "1", "c"]), Some((2, 11)));
    assert_eq!(locator.locate(&["a", "zz"]), Some((1, 1)));
}

#[test]
fn a_bare_table_name_means_the_one_table_of_that_name() {
    let config = parse(&small(
        "pipelines:\n  p:\n    source: src\n    target: wh\n    s3: { bucket: b }\n    tables:\n      shop.orders: { cursor_column: u }\n      shop.items: { cursor_column: u, target_name: shop_items }\n      crm.Items: { cursor_column: u, target_name: crm_items }\n",
    ))
    .unwrap();
    assert_eq!(config.qualify_table(None, "orders").unwrap(), "shop.orders");
    assert_eq!(
        config.qualify_table(Some("p"), "ORDERS").unwrap(),
        "shop.orders"
    );
    assert_eq!(config.qualify_table(None, "Items").unwrap(), "crm.Items");
    assert_eq!(config.qualify_table(None, "x.y").unwrap(), "x.y");
    let several = config.qualify_table(None, "ITEMS").unwrap_err().to_string();
    assert!(
        several.contains("`crm.Items`, `shop.items`") && several.contains("database.table"),
        "{several}"
    );
    let none = config
        .qualify_table(None, "nothing")
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("no configured table is named `nothing`") && none.contains("`shop.orders`"),
        "{none}"
    );
    assert!(config.qualify_table(Some("q"), "orders").is_err());
}

#[test]
fn the_old_tool_s_cursor_keys_are_the_cursor_column() {
    let config = parse(&small(
        "pipelines:\n  p:\n    source: src\n    target: wh\n    s3: { bucket: b }\n    tables:\n      shop.orders: { cdc_timestamp_column: updated_at }\n      shop.events: { cdc_strategy: id_only, cdc_id_column: seq, load: append, lookback: 0s }\n",
    ))
    .unwrap();
    let tables = &config.pipeline("p").unwrap().tables;
    assert_eq!(
        tables["shop.orders"].strategy.cursor_column(),
        Some("updated_at")
    );
    assert_eq!(tables["shop.events"].strategy.cursor_column(), Some("seq"));
}

#[test]
fn depends_on_names_tables_of_the_pipeline_and_closes_no_cycle() {
    let pipeline = |tables: &str| {
        small(&format!(
            "pipelines:\n  p:\n    source: src\n    target: wh\n    s3: {{ bucket: b }}\n    tables:\n{tables}"
        ))
    };
    let ordered = pipeline(
        "      shop.customers: { cursor_column: u }\n      shop.orders:\n        cursor_column: u\n        depends_on: [shop.customers]\n",
    );
    let config = parse(&ordered).unwrap();
    assert_eq!(
        config.pipelines["p"].tables["shop.orders"].depends_on,
        ["shop.customers"]
    );

    let unknown = ordered.replace("[shop.customers]", "[shop.customer]");
    let err = error_of(&unknown);
    let line = line_of(&unknown, "depends_on", 0);
    assert!(err.starts_with(&format!("tidemark.yaml:{line}:")), "{err}");
    assert!(
        err.contains("`shop.customer` is not a table of this pipeline"),
        "{err}"
    );

    let cycle = pipeline(
        "      shop.a:\n        cursor_column: u\n        depends_on: [shop.b]\n      shop.b:\n        cursor_column: u\n        depends_on: [shop.a]\n",
    );
    let err = error_of(&cycle);
    let line = line_of(&cycle, "depends_on", 0);
    assert!(err.starts_with(&format!("tidemark.yaml:{line}:")), "{err}");
    assert!(err.contains("a cycle: shop.a -> shop.b -> shop.a"), "{err}");
    let itself = ordered.replace("[shop.customers]", "[shop.orders]");
    assert!(error_of(&itself).contains("`shop.orders` depends on itself"));
}

#[test]
fn scd_keys_are_checked_at_their_line() {
    let with = |settings: &str| {
        small(&format!(
            "pipelines:\n  p:\n    source: src\n    target: wh\n    s3: {{ bucket: b }}\n    tables:\n      crm.customers:\n        cursor_column: u\n{settings}"
        ))
    };
    let good = with(
        "        table_type: dimension\n        scd_type: type_2\n        business_key: [customer_id]\n        scd_columns: [name, tier]\n        surrogate_key: customer_sk\n        scd: { valid_from: starts, effective: cursor }\n",
    );
    let config = parse(&good).unwrap();
    let table = &config.pipelines["p"].tables["crm.customers"];
    assert_eq!(
        table.key_columns.as_deref(),
        Some(&["customer_id".to_owned()][..])
    );
    assert_eq!(table.current_flag(), Some("is_current"));
    assert_eq!(table.scd.valid_from, "starts");
    // Type 1 is `load: merge`: one row per key.
    let type_1 = parse(&with("        table_type: dimension\n")).unwrap();
    assert_eq!(
        type_1.pipelines["p"].tables["crm.customers"].current_flag(),
        None
    );

    for (settings, marker, says) in [
        (
            "        scd_type: type_2\n",
            "scd_type",
            "add `table_type: dimension`",
        ),
        (
            "        table_type: dimension\n        load: append\n",
            "load: append",
            "not `load: append`",
        ),
        (
            "        table_type: dimension\n        scd_columns: [name]\n",
            "scd_columns",
            "this table keeps none",
        ),
        (
            "        cdc_strategy: id_only\n        table_type: dimension\n        scd_type: type_2\n",
            "scd_type: type_2",
            "`effective: cursor`",
        ),
        (
            "        table_type: dimension\n        scd_type: type_2\n        business_key: [a]\n        key_columns: [b]\n",
            "business_key",
            "name different columns",
        ),
        (
            "        table_type: dimension\n        scd_type: type_2\n        surrogate_key: valid_to\n",
            "surrogate_key",
            "names two history columns",
        ),
    ] {
        let text = with(settings);
        let err = error_of(&text);
        assert!(err.contains(says), "{settings}: {err}");
        let line = line_of(&text, marker, 0);
        assert!(err.starts_with(&format!("tidemark.yaml:{line}:")), "line {line}: {err}");
    }
    // `effective: loaded_at` dates versions without a cursor.
    parse(&with(
        "        cdc_strategy: id_only\n        table_type: dimension\n        scd_type: type_2\n        scd: { effective: loaded_at }\n",
    ))
    .unwrap();
}
