//! `tidemark connections test --deep TARGET`: what only the warehouse itself can settle. In a
//! scratch schema it creates and drops, it loads generated tables through the real load path —
//! rows decoded as extraction decodes MySQL's, written as the target's Parquet profile, loaded
//! by the same SQL (COPY for Redshift) — reads every value back in the warehouse, and reports one
//! line per check: passed, failed with the warehouse's words, or skipped with why.

use chrono::Utc;
use mysql_async::Value;
use serde::Serialize;

use crate::config::{Connection, DroppedColumns, LoadMode, RedshiftConnection};
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::extract::decode::{BatchBuilder, ValueRules};
use crate::load::sql::{self, LoadPlan, PlannedRun};
use crate::load::target::TargetClient;
use crate::naming::{self, RunId, TableId};
use crate::parquet_sink::{FileCompression, ParquetSink, SinkBatch, SinkOptions};
use crate::schema::{
    ColumnType, JsonTarget, NulPolicy, OversizePolicy, RedshiftTableOptions, SchemaOptions,
    SourceColumn, TableSchema, Warehouse,
};
use crate::services::Services;
use crate::storage::Bucket;

/// What became of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    /// The warehouse holds exactly what was loaded.
    Passed,
    /// The load failed (the warehouse's words) or a value came back different.
    Failed(String),
    /// Not run here, and why.
    Skipped(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it went.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Runs every check against connection `name`, staging files under the `data/` and `copy/`
/// areas of the first pipeline that loads into it (where the COPY role reads). The scratch schema and the staged files are removed afterwards,
/// whatever the outcome.
pub async fn run(services: &Services, name: &str) -> Result<Vec<Check>> {
    let connection = services.config.connections.get(name).ok_or_else(|| {
        Error::InvalidRequest(format!("`{name}` is not a connection of the configuration"))
    })?;
    let warehouse = match connection {
        Connection::Postgres(_) => Warehouse::Postgres,
        Connection::Redshift(_) => Warehouse::Redshift,
        Connection::Mysql(_) => {
            return Err(Error::InvalidRequest(format!(
                "`{name}` is a MySQL source; `--deep` checks a warehouse"
            )))
        }
    };
    let pipeline = services
        .config
        .pipelines
        .values()
        .find(|p| p.target == name)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "no pipeline loads into `{name}`: `--deep` stages its files in such a pipeline's bucket, where the warehouse already reads"
            ))
        })?;
    let entropy = uuid::Uuid::new_v4().simple().to_string();
    let scratch = Scratch {
        warehouse,
        redshift: match connection {
            Connection::Redshift(redshift) => Some(redshift.as_ref()),
            _ => None,
        },
        schema: format!("tidemark_deep_check_{}", &entropy[..12]),
        prefix: pipeline.s3.prefix.trim_matches('/').to_owned(),
        id: entropy[..12].to_owned(),
        bucket: services.bucket(pipeline),
    };
    let mut session = services.target(name).await?;
    let mut checks = Vec::new();
    checks.extend(type_zoo(&scratch, &mut session).await);
    checks.push(duplicate_json_keys(&scratch, &mut session).await);
    checks.push(large_binary(&scratch, &mut session).await);
    checks.push(widened_key(&scratch, &mut session).await);
    let dropped = session
        .execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            naming::quote_warehouse(&scratch.schema)
        ))
        .await;
    for area in ["data", "copy"] {
        let staged: Vec<String> = scratch
            .bucket
            .list(&scratch.staging(area, ""))
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        scratch.bucket.delete_many(&staged).await?;
    }
    dropped?;
    Ok(checks)
}

/// Where the checks load.
struct Scratch<'a> {
    warehouse: Warehouse,
    redshift: Option<&'a RedshiftConnection>,
    /// The scratch schema, created by the first load and dropped at the end.
    schema: String,
    /// The pipeline's S3 prefix: files go under `<prefix>/data/deep-check/<id>/`, COPY
    /// manifests under `<prefix>/copy/deep-check/<id>/`, where the COPY role already reads.
    prefix: String,
    id: String,
    bucket: Bucket,
}

impl Scratch<'_> {
    /// `<prefix>/<area>/deep-check/<id>/<rest>`.
    fn staging(&self, area: &str, rest: &str) -> String {
        format!("{}/{area}/deep-check/{}/{rest}", self.prefix, self.id)
    }
}

/// One generated column: its MySQL declaration, a row at each end of its range, and how the
/// warehouse must hold each.
struct ZooColumn {
    name: &'static str,
    data_type: &'static str,
    column_type: &'static str,
    /// `CHARACTER_OCTET_LENGTH`, precision and scale, as `information_schema` reports them.
    octets: Option<u64>,
    precision: Option<u64>,
    scale: Option<u64>,
    /// The largest value and the warehouse literal it must equal.
    high: (Value, &'static str),
    /// The smallest value and its literal.
    low: (Value, &'static str),
}

fn bytes(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

/// Every MySQL type family at its limits: decimals of precision 5, 12, 18, 20 and 38 with
/// negatives, datetimes from year 1000 to 9999.999999, a NUL byte and a 4-byte character.
fn zoo_columns() -> Vec<ZooColumn> {
    let column = |name, data_type, column_type, high, low| ZooColumn {
        name,
        data_type,
        column_type,
        octets: None,
        precision: None,
        scale: None,
        high,
        low,
    };
    let decimal =
        |name, column_type, precision, scale, high: &'static str, low: &'static str| ZooColumn {
            precision: Some(precision),
            scale: Some(scale),
            ..column(
                name,
                "decimal",
                column_type,
                (bytes(high), high),
                (bytes(low), low),
            )
        };
    vec![
        column(
            "tiny",
            "tinyint",
            "tinyint(4)",
            (Value::Int(127), "127"),
            (Value::Int(-128), "-128"),
        ),
        column(
            "small",
            "smallint",
            "smallint(6)",
            (Value::Int(32767), "32767"),
            (Value::Int(-32768), "-32768"),
        ),
        column(
            "medium",
            "mediumint",
            "mediumint(9)",
            (Value::Int(8_388_607), "8388607"),
            (Value::Int(-8_388_608), "-8388608"),
        ),
        column(
            "regular",
            "int",
            "int(11)",
            (Value::Int(2_147_483_647), "2147483647"),
            (Value::Int(-2_147_483_648), "-2147483648"),
        ),
        column(
            "big",
            "bigint",
            "bigint(20)",
            (Value::Int(i64::MAX), "9223372036854775807"),
            (Value::Int(i64::MIN), "-9223372036854775808"),
        ),
        column(
            "unsigned_big",
            "bigint",
            "bigint(20) unsigned",
            (Value::UInt(u64::MAX), "18446744073709551615"),
            (Value::UInt(0), "0"),
        ),
        decimal("dec5", "decimal(5,2)", 5, 2, "999.99", "-999.99"),
        decimal(
            "dec12",
            "decimal(12,4)",
            12,
            4,
            "99999999.9999",
            "-99999999.9999",
        ),
        decimal(
            "dec18",
            "decimal(18,6)",
            18,
            6,
            "999999999999.999999",
            "-999999999999.999999",
        ),
        decimal(
            "dec20",
            "decimal(20,0)",
            20,
            0,
            "99999999999999999999",
            "-99999999999999999999",
        ),
        decimal(
            "dec38",
            "decimal(38,10)",
            38,
            10,
            "9999999999999999999999999999.9999999999",
            "-9999999999999999999999999999.9999999999",
        ),
        column(
            "single",
            "float",
            "float",
            (Value::Float(f32::MAX), "3.4028235e38"),
            (Value::Float(f32::MIN), "-3.4028235e38"),
        ),
        column(
            "double",
            "double",
            "double",
            (Value::Double(f64::MAX), "1.7976931348623157e308"),
            (Value::Double(f64::MIN), "-1.7976931348623157e308"),
        ),
        column(
            "flag",
            "tinyint",
            "tinyint(1)",
            (Value::Int(1), "TRUE"),
            (Value::Int(0), "FALSE"),
        ),
        column(
            "day",
            "date",
            "date",
            (Value::Date(9999, 12, 31, 0, 0, 0, 0), "9999-12-31"),
            (Value::Date(1000, 1, 1, 0, 0, 0, 0), "1000-01-01"),
        ),
        column(
            "moment",
            "datetime",
            "datetime(6)",
            (
                Value::Date(9999, 12, 31, 23, 59, 59, 999_999),
                "9999-12-31 23:59:59.999999",
            ),
            (Value::Date(1000, 1, 1, 0, 0, 0, 0), "1000-01-01 00:00:00"),
        ),
        column(
            "instant",
            "timestamp",
            "timestamp(6)",
            (
                Value::Date(2038, 1, 19, 3, 14, 7, 999_999),
                "2038-01-19 03:14:07.999999+00",
            ),
            (
                Value::Date(1970, 1, 1, 0, 0, 1, 0),
                "1970-01-01 00:00:01+00",
            ),
        ),
        column(
            "clock",
            "time",
            "time(6)",
            (bytes("838:59:59.000000"), "838:59:59.000000"),
            (bytes("-838:59:59.000000"), "-838:59:59.000000"),
        ),
        ZooColumn {
            octets: Some(200),
            ..column(
                "text",
                "varchar",
                "varchar(50)",
                (bytes("a\0b\u{1F680}"), "ab\u{1F680}"),
                (bytes(""), ""),
            )
        },
        ZooColumn {
            octets: Some(16),
            ..column(
                "binary",
                "varbinary",
                "varbinary(16)",
                (Value::Bytes(vec![0, 1, 0xfe, 0xff]), "0001feff"),
                (Value::Bytes(vec![0]), "00"),
            )
        },
    ]
}

/// A literal as the report shows it: the empty string quoted.
fn shown(literal: &str) -> String {
    if literal.is_empty() {
        "''".to_owned()
    } else {
        literal.to_owned()
    }
}

fn source_column(column: &ZooColumn) -> SourceColumn {
    SourceColumn {
        name: column.name.to_owned(),
        data_type: column.data_type.to_owned(),
        column_type: column.column_type.to_owned(),
        nullable: true,
        octet_length: column.octets,
        numeric_precision: column.precision,
        numeric_scale: column.scale,
        datetime_precision: Some(6)
            .filter(|_| matches!(column.data_type, "datetime" | "timestamp" | "time")),
        json_checked: false,
    }
}

fn key_column() -> SourceColumn {
    SourceColumn {
        name: "id".to_owned(),
        data_type: "bigint".to_owned(),
        column_type: "bigint(20)".to_owned(),
        nullable: false,
        ..SourceColumn::default()
    }
}

/// The table's schema as extraction would map it, keyed by `id` (or `key`).
fn table_schema(table: &str, columns: Vec<SourceColumn>, key: &str) -> Result<TableSchema> {
    TableSchema::from_source_columns(
        &TableId::parse(&format!("deep_check.{table}"))?,
        columns,
        vec![key.to_owned()],
        &SchemaOptions::default(),
    )
}

/// The loaded values as the warehouse must hold them: `literal` as a value of `column`'s type.
fn equals(warehouse: Warehouse, ty: &ColumnType, column: &str, literal: &str) -> String {
    let column = naming::quote_warehouse(column);
    let quoted = literal.replace('\'', "''");
    match (ty, warehouse) {
        (ColumnType::Boolean { .. }, _) => format!("{column} = {literal}"),
        (ColumnType::Binary { .. }, Warehouse::Redshift) => {
            format!("{column} = FROM_HEX('{quoted}')")
        }
        (ColumnType::Binary { .. }, Warehouse::Postgres) => {
            format!("{column} = decode('{quoted}', 'hex')")
        }
        (ColumnType::Json, Warehouse::Redshift) => {
            format!("JSON_SERIALIZE({column}) = '{quoted}'")
        }
        (ColumnType::Json, Warehouse::Postgres) => {
            format!("{column} = CAST('{quoted}' AS jsonb)")
        }
        _ => format!(
            "{column} = CAST('{quoted}' AS {})",
            ty.warehouse_type(warehouse, JsonTarget::Super)
        ),
    }
}

async fn type_zoo(scratch: &Scratch<'_>, session: &mut TargetClient) -> Vec<Check> {
    let columns = zoo_columns();
    let outcome = async {
        let schema = table_schema(
            "zoo",
            std::iter::once(key_column())
                .chain(columns.iter().map(source_column))
                .collect(),
            "id",
        )?;
        let row = |id: i64, pick: &dyn Fn(&ZooColumn) -> Option<Value>| {
            std::iter::once(Some(Value::Int(id)))
                .chain(columns.iter().map(pick))
                .collect::<Vec<_>>()
        };
        let rows = vec![
            row(1, &|c| Some(c.high.0.clone())),
            row(2, &|c| Some(c.low.0.clone())),
            row(3, &|_| None),
        ];
        load(scratch, session, "zoo", &schema, rows).await?;
        let sums: Vec<String> = schema
            .columns
            .iter()
            .skip(1)
            .zip(&columns)
            .map(|(mapped, zoo)| {
                let at = |id: i64, test: String| {
                    format!("SUM(CASE WHEN \"id\" = {id} AND {test} THEN 1 ELSE 0 END)")
                };
                let name = &mapped.target_name;
                let high = at(1, equals(scratch.warehouse, &mapped.ty, name, zoo.high.1));
                let low = at(2, equals(scratch.warehouse, &mapped.ty, name, zoo.low.1));
                let null = at(3, format!("{} IS NULL", naming::quote_warehouse(name)));
                format!("CAST({high} + {low} + {null} AS BIGINT)")
            })
            .collect();
        let found = session
            .first_row(&format!(
                "SELECT {} FROM {}",
                sums.join(", "),
                qualified(scratch, "zoo")
            ))
            .await?;
        Ok::<Vec<String>, Error>(found)
    }
    .await;
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| Check {
            name: format!(
                "{} `{}` at its limits ({} and {}) and NULL",
                column.column_type,
                column.name,
                shown(column.high.1),
                shown(column.low.1)
            ),
            outcome: match &outcome {
                Err(err) => Outcome::Failed(err.to_string()),
                Ok(found) if found.get(i).map(String::as_str) == Some("3") => Outcome::Passed,
                Ok(found) => Outcome::Failed(format!(
                    "{} of the 3 rows came back equal",
                    found.get(i).map_or("none", String::as_str)
                )),
            },
        })
        .collect()
}

async fn duplicate_json_keys(scratch: &Scratch<'_>, session: &mut TargetClient) -> Check {
    let name = "JSON with duplicate keys keeps the last value, as MySQL reads it".to_owned();
    let outcome = async {
        let document = SourceColumn {
            name: "doc".to_owned(),
            data_type: "longtext".to_owned(),
            column_type: "longtext".to_owned(),
            nullable: true,
            octet_length: Some(4_294_967_295),
            json_checked: true,
            ..SourceColumn::default()
        };
        let schema = table_schema("json_doc", vec![key_column(), document], "id")?;
        let rows = vec![vec![
            Some(Value::Int(1)),
            Some(bytes(r#"{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}"#)),
        ]];
        load(scratch, session, "json_doc", &schema, rows).await?;
        let test = equals(
            scratch.warehouse,
            &ColumnType::Json,
            "doc",
            r#"{"a":3,"b":{"c":2}}"#,
        );
        count_where(scratch, session, "json_doc", &test).await
    }
    .await;
    Check {
        name,
        outcome: one_row(outcome),
    }
}

/// A 5 MB value: PostgreSQL holds it; Redshift's COPY reads rows of at most 4 MB, so extraction
/// refuses such a row under `oversize_in_redshift: fail` before anything is committed.
async fn large_binary(scratch: &Scratch<'_>, session: &mut TargetClient) -> Check {
    const SIZE: usize = 5 * 1024 * 1024;
    let name = "a 5 MB binary value".to_owned();
    let blob = SourceColumn {
        name: "blob".to_owned(),
        data_type: "longblob".to_owned(),
        column_type: "longblob".to_owned(),
        nullable: true,
        octet_length: Some(4_294_967_295),
        ..SourceColumn::default()
    };
    let rows = vec![vec![Some(Value::Int(1)), Some(Value::Bytes(vec![7; SIZE]))]];
    let outcome = async {
        let schema = table_schema("large_binary", vec![key_column(), blob], "id")?;
        match load(scratch, session, "large_binary", &schema, rows).await {
            Err(err) if scratch.warehouse == Warehouse::Redshift => {
                return Ok(if err.to_string().contains("at most 4194304 bytes") {
                    Outcome::Skipped("Redshift's COPY reads rows of at most 4 MB: extraction refuses the row under `oversize_in_redshift: fail`, as documented".to_owned())
                } else {
                    Outcome::Failed(err.to_string())
                });
            }
            other => other?,
        }
        let size = session.first_row(&format!(
                "SELECT CAST(octet_length(\"blob\") AS BIGINT) FROM {}",
                qualified(scratch, "large_binary")
            ),
        )
        .await?;
        Ok::<Outcome, Error>(if size.first() == Some(&SIZE.to_string()) {
            Outcome::Passed
        } else {
            Outcome::Failed(format!("{size:?} bytes came back, not {SIZE}"))
        })
    }
    .await;
    Check {
        name,
        outcome: outcome.unwrap_or_else(|err| Outcome::Failed(err.to_string())),
    }
}

/// A VARCHAR key loaded, then widened by the source, then loaded again with a longer key.
async fn widened_key(scratch: &Scratch<'_>, session: &mut TargetClient) -> Check {
    let name = "a VARCHAR key widened after the first load".to_owned();
    let code = |length: u64| SourceColumn {
        name: "code".to_owned(),
        data_type: "varchar".to_owned(),
        column_type: format!("varchar({length})"),
        nullable: false,
        octet_length: Some(length * 4),
        ..SourceColumn::default()
    };
    let long = "a-key-of-forty-characters-0123456789abcd";
    let outcome = async {
        let narrow = table_schema("widened_key", vec![code(10)], "code")?;
        load(
            scratch,
            session,
            "widened_key",
            &narrow,
            vec![vec![Some(bytes("short"))]],
        )
        .await?;
        let wide = table_schema("widened_key", vec![code(40)], "code")?;
        load(
            scratch,
            session,
            "widened_key",
            &wide,
            vec![vec![Some(bytes(long))]],
        )
        .await?;
        count_where(
            scratch,
            session,
            "widened_key",
            &format!("\"code\" IN ('short', '{long}')"),
        )
        .await
    }
    .await;
    Check {
        name,
        outcome: match outcome {
            Ok(2) => Outcome::Passed,
            Ok(n) => Outcome::Failed(format!("{n} of the 2 keys came back")),
            Err(err) => Outcome::Failed(err.to_string()),
        },
    }
}

fn one_row(count: Result<i64>) -> Outcome {
    match count {
        Ok(1) => Outcome::Passed,
        Ok(n) => Outcome::Failed(format!("{n} rows came back equal, not 1")),
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

fn qualified(scratch: &Scratch<'_>, table: &str) -> String {
    naming::quote_warehouse_qualified(&scratch.schema, table)
}

async fn count_where(
    scratch: &Scratch<'_>,
    session: &mut TargetClient,
    table: &str,
    test: &str,
) -> Result<i64> {
    let row = session
        .first_row(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE {test}",
            qualified(scratch, table)
        ))
        .await?;
    row.first()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::unexpected_answer("the warehouse", "`COUNT(*)`", format!("{row:?}")))
}

/// Writes `rows` as one run of Parquet files (decoded and encoded as extraction does for this
/// warehouse) and loads it into `scratch.schema`.`table` with `merge`, as the load step does.
async fn load(
    scratch: &Scratch<'_>,
    session: &mut TargetClient,
    table: &str,
    schema: &TableSchema,
    rows: Vec<Vec<Option<Value>>>,
) -> Result<()> {
    let rules = ValueRules {
        oversize: (scratch.warehouse == Warehouse::Redshift).then_some(OversizePolicy::Fail),
        nul: NulPolicy::Strip,
    };
    let mut builder = BatchBuilder::new(schema, rows.len(), rules, &schema.primary_key)?;
    for (n, row) in rows.into_iter().enumerate() {
        builder.append(row, || format!("generated row {}", n + 1))?;
    }
    let (batch, altered) = builder.finish()?;
    let run_id = RunId::new(Utc::now(), uuid::Uuid::new_v4().as_u128() as u64);
    let file_prefix = scratch.staging("data", &format!("{table}/{run_id}"));
    let sink = ParquetSink::start(
        scratch.bucket.clone(),
        schema.arrow_schema(),
        &SinkOptions {
            target_file_bytes: 64 * 1024 * 1024,
            part_bytes: crate::parquet_sink::MIN_PART_BYTES,
            row_group_rows: 1024,
            row_group_bytes: 32 * 1024 * 1024,
            compression: FileCompression::for_warehouse(scratch.warehouse),
        },
        0,
        move |seq| format!("{file_prefix}/part-{seq:05}.parquet"),
    )?;
    sink.write(SinkBatch {
        batch,
        min_cursor: Cursor::default(),
        max_cursor: Cursor::default(),
        altered,
        end_file: true,
    })
    .await?;
    let files: Vec<_> = sink
        .finish()
        .await?
        .files
        .into_iter()
        .map(|f| f.file)
        .collect();
    let copy_manifest_key = scratch.staging("copy", &format!("{table}/{run_id}.manifest"));
    scratch
        .bucket
        .put(
            &copy_manifest_key,
            sql::copy_manifest(&files, |k| scratch.bucket.uri(k))
                .into_bytes()
                .into(),
        )
        .await?;
    let plan = LoadPlan {
        pipeline: "deep-check".to_owned(),
        source_table: format!("deep_check.{table}"),
        schema: scratch.schema.clone(),
        target: table.to_owned(),
        mode: LoadMode::Merge,
        key_columns: schema
            .primary_key
            .iter()
            .filter_map(|k| schema.column(k).map(|c| c.target_name.clone()))
            .collect(),
        cursor_column: None,
        runs: vec![PlannedRun {
            run_id,
            manifest_key: String::new(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            copy_manifest_uri: scratch.bucket.uri(&copy_manifest_key),
            deletion: false,
            version_time: None,
        }],
        table_schema: schema.clone(),
        iam_role: scratch
            .redshift
            .map(|r| r.iam_role.clone())
            .unwrap_or_default(),
        loaded_at: Utc::now(),
        dropped_columns: DroppedColumns::Keep,
        deletes: Default::default(),
        keep_newer: false,
        scd: None,
    };
    session
        .load_now(
            &plan,
            &scratch.bucket,
            &RedshiftTableOptions::default(),
            scratch.redshift,
            format!("tidemark-deep-check-{table}"),
        )
        .await?;
    Ok(())
}
