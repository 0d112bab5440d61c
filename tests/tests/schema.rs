//! The schema module against the real local MariaDB and PostgreSQL: discovery of every type, the
//! golden DDL, DDL that executes, edge values that fit the DDL, drift against a real table, and
//! the errors an operator sees.

use std::collections::BTreeSet;

use anyhow::Context;
use arrow_schema::{DataType, TimeUnit};
use mysql_async::prelude::Queryable;
use tidemark::naming;
use tidemark::schema::{
    self, BooleanSource, ColumnType, DistStyle, JsonTarget, RedshiftTableOptions, SchemaOptions,
    TableSchema, TargetColumn, TextSource, Warehouse,
};
use tidemark::Error;
use tidemark_tests::{assert_golden, type_zoo, TestMysql, TestPostgres};
use tokio_postgres::types::{ToSql, Type};

async fn zoo_schema(mysql: &TestMysql, options: &SchemaOptions) -> anyhow::Result<TableSchema> {
    let mut conn = mysql.conn().await?;
    type_zoo::create(&mut conn).await?;
    Ok(schema::discover(&mut conn, &mysql.table(type_zoo::TABLE), options).await?)
}

/// The distribution the golden Redshift DDL is written with.
fn zoo_dist() -> RedshiftTableOptions {
    RedshiftTableOptions {
        diststyle: None,
        distkey: Some("id".to_owned()),
        sortkey: vec!["created_at".to_owned(), "id".to_owned()],
    }
}

#[tokio::test]
async fn the_type_zoo_is_discovered_field_by_field() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let schema = zoo_schema(mysql, &SchemaOptions::default()).await?;

        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let expected: Vec<(&str, DataType, bool)> = vec![
            ("id", DataType::Int32, false),
            ("flag", DataType::Boolean, true),
            ("ti", DataType::Int16, true),
            ("ti_u", DataType::Int16, true),
            ("si", DataType::Int16, true),
            ("si_u", DataType::Int32, true),
            ("mi", DataType::Int32, true),
            ("mi_u", DataType::Int32, true),
            ("i", DataType::Int32, true),
            ("i_u", DataType::Int64, true),
            ("bi", DataType::Int64, true),
            ("bi_u", DataType::Decimal128(20, 0), true),
            ("dec_wide", DataType::Decimal128(38, 10), true),
            ("dec_money", DataType::Decimal128(12, 2), false),
            ("f", DataType::Float32, true),
            ("d", DataType::Float64, true),
            ("bit1", DataType::Boolean, true),
            ("bit10", DataType::Int64, true),
            ("bit64", DataType::Decimal128(20, 0), true),
            ("yr", DataType::Int16, true),
            ("dt", DataType::Date32, true),
            ("dtm", micros.clone(), true),
            ("dtm6", micros.clone(), true),
            ("ts6", utc, true),
            ("tm", DataType::Utf8, true),
            ("tm6", DataType::Utf8, true),
            ("latin", DataType::Utf8, true),
            ("ch", DataType::Utf8, true),
            ("vc", DataType::Utf8, true),
            ("tt", DataType::Utf8, true),
            ("tx", DataType::Utf8, true),
            ("mt", DataType::Utf8, true),
            ("lt", DataType::Utf8, true),
            ("en", DataType::Utf8, true),
            ("st", DataType::Utf8, true),
            ("js", DataType::Utf8, true),
            ("bn", DataType::Binary, true),
            ("vb", DataType::Binary, true),
            ("tb", DataType::Binary, true),
            ("bl", DataType::Binary, true),
            ("mb", DataType::Binary, true),
            ("lb", DataType::Binary, true),
            ("mixed case", DataType::Utf8, true),
            // NOT NULL in MySQL, but zero dates extract as NULL (DESIGN §4).
            ("created_at", micros, true),
        ];
        let arrow = schema.arrow_schema();
        assert_eq!(arrow.fields().len(), expected.len());
        for (field, (name, data_type, nullable)) in arrow.fields().iter().zip(&expected) {
            assert_eq!(field.name(), name);
            assert_eq!(field.data_type(), data_type, "{name}");
            assert_eq!(field.is_nullable(), *nullable, "{name}");
        }

        assert_eq!(schema.primary_key, ["id"]);
        assert_eq!(schema.column_names()[42], "Mixed Case");
        let ty = |name: &str| schema.column(name).map(|c| c.ty.clone());
        assert_eq!(
            ty("flag"),
            Some(ColumnType::Boolean {
                source: BooleanSource::TinyInt
            })
        );
        assert_eq!(
            ty("bit1"),
            Some(ColumnType::Boolean {
                source: BooleanSource::Bit
            })
        );
        assert_eq!(ty("bit10"), Some(ColumnType::Bits { width: 10 }));
        // MariaDB's JSON is LONGTEXT plus a json_valid CHECK.
        assert_eq!(
            schema.column("js").map(|c| c.column_type.as_str()),
            Some("longtext")
        );
        assert_eq!(ty("js"), Some(ColumnType::Json));
        assert_eq!(
            ty("lt"),
            Some(ColumnType::Text {
                max_octets: 4_294_967_295,
                source: TextSource::Text
            })
        );
        // Lengths are bytes: 10 latin1 characters, 10 utf8mb4 characters.
        assert_eq!(
            ty("latin"),
            Some(ColumnType::Text {
                max_octets: 10,
                source: TextSource::Varchar
            })
        );
        assert_eq!(
            ty("ch"),
            Some(ColumnType::Text {
                max_octets: 40,
                source: TextSource::Char
            })
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_type_zoo_ddl_matches_the_golden_files() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let schema = zoo_schema(mysql, &SchemaOptions::default()).await?;
        let redshift = schema.redshift_ddl("analytics", "type_zoo", &zoo_dist())?;
        assert_golden("redshift/type_zoo.sql", &format!("{redshift};\n"))?;
        let postgres = schema.postgres_ddl("analytics", "type_zoo")?;
        assert_golden("postgres/type_zoo.sql", &format!("{postgres};\n"))?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_postgres_ddl_executes_and_holds_every_edge_value() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        TestPostgres::run(async |pg| {
            let schema = zoo_schema(mysql, &SchemaOptions::default()).await?;
            let ddl = schema.postgres_ddl(pg.schema(), "type_zoo")?;
            pg.client()
                .batch_execute(&ddl)
                .await
                .context("creating the table")?;
            pg.client()
                .batch_execute(&ddl)
                .await
                .context("IF NOT EXISTS makes a second run a no-op")?;

            // Read every value as MySQL's exact text and write it through a text → column-type
            // cast: this proves the target types hold each source type's whole range.
            let source_rows = zoo_as_text(mysql, &schema).await?;
            let qualified = naming::quote_warehouse_qualified(pg.schema(), "type_zoo");
            let placeholders: Vec<String> = schema
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| match c.ty {
                    ColumnType::Binary { .. } => format!("decode(${}, 'hex')", i + 1),
                    _ => format!("${}::{}", i + 1, c.ty.postgres_type()),
                })
                .collect();
            let columns: Vec<String> = schema
                .target_column_names()
                .iter()
                .map(|n| naming::quote_warehouse(n))
                .collect();
            let insert = pg
                .client()
                .prepare_typed(
                    &format!(
                        "INSERT INTO {qualified} ({}) VALUES ({})",
                        columns.join(", "),
                        placeholders.join(", ")
                    ),
                    &vec![Type::TEXT; columns.len()],
                )
                .await?;
            for row in &source_rows {
                let params: Vec<&(dyn ToSql + Sync)> =
                    row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                pg.client()
                    .execute(&insert, &params)
                    .await
                    .with_context(|| format!("inserting row {:?}", row.first()))?;
            }

            // Read it back as text and compare where the text forms are canonical on both sides.
            let readback: Vec<String> = schema
                .columns
                .iter()
                .map(|c| {
                    let quoted = naming::quote_warehouse(&c.target_name);
                    match c.ty {
                        ColumnType::Binary { .. } => format!("upper(encode({quoted}, 'hex'))"),
                        _ => format!("{quoted}::text"),
                    }
                })
                .collect();
            let rows = pg
                .client()
                .query(
                    &format!("SELECT {} FROM {qualified} ORDER BY 1", readback.join(", ")),
                    &[],
                )
                .await?;
            assert_eq!(rows.len(), source_rows.len());
            for (target_row, source_row) in rows.iter().zip(&source_rows) {
                for (i, column) in schema.columns.iter().enumerate() {
                    let target: Option<String> = target_row.get(i);
                    let source = &source_row[i];
                    assert_eq!(
                        target.is_some(),
                        source.is_some(),
                        "{} row {:?}",
                        column.name,
                        source_row[0]
                    );
                    let canonical = matches!(
                        column.ty,
                        ColumnType::Int16
                            | ColumnType::Int32
                            | ColumnType::Int64
                            | ColumnType::Decimal { .. }
                            | ColumnType::Bits { .. }
                            | ColumnType::Text { .. }
                            | ColumnType::Binary { .. }
                    );
                    if canonical {
                        assert_eq!(&target, source, "{} row {:?}", column.name, source_row[0]);
                    }
                }
            }
            // The zero dates became NULL; the NOT NULL `created_at` accepted that.
            let zero_row = &source_rows[2];
            let created_at = schema
                .target_column_names()
                .iter()
                .position(|n| *n == "created_at");
            assert_eq!(created_at.map(|i| zero_row[i].clone()), Some(None));

            Ok(())
        })
        .await
    })
    .await
}

/// Every zoo row, each value as the text PostgreSQL's cast accepts (zero dates as NULL, binary
/// as hex, timestamps with their UTC offset).
async fn zoo_as_text(
    mysql: &TestMysql,
    schema: &TableSchema,
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let select: Vec<String> = schema
        .columns
        .iter()
        .map(|c| {
            let quoted = naming::quote_mysql(&c.name);
            match c.ty {
                ColumnType::Boolean {
                    source: BooleanSource::Bit,
                }
                | ColumnType::Bits { .. } => format!("CAST({quoted} + 0 AS CHAR)"),
                // `+ 0` prints YEAR 0000 as the number it extracts as.
                ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64 => {
                    format!("CAST({quoted} + 0 AS CHAR)")
                }
                ColumnType::Binary { .. } => format!("HEX({quoted})"),
                ColumnType::Text { .. } | ColumnType::Json => c.mysql_select_expr(),
                _ => format!("CAST({quoted} AS CHAR)"),
            }
        })
        .collect();
    let mut conn = mysql.conn().await?;
    let rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT {} FROM {} ORDER BY 1",
            select.join(", "),
            naming::quote_mysql(type_zoo::TABLE)
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        let mut values = Vec::with_capacity(schema.columns.len());
        for (i, column) in schema.columns.iter().enumerate() {
            let value: Option<String> = row.take(i).context("column value")?;
            let value = match column.ty {
                ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
                    if value.as_deref().is_some_and(is_zero_date) =>
                {
                    None
                }
                ColumnType::TimestampTz => value.map(|v| format!("{v}+00")),
                _ => value,
            };
            values.push(value);
        }
        out.push(values);
    }
    Ok(out)
}

/// `0000-00-00`, or a date with a zero month or day.
fn is_zero_date(value: &str) -> bool {
    let date = value.get(..10).unwrap_or(value);
    date.starts_with("0000") || date.get(4..8) == Some("-00-") || date.ends_with("-00")
}

#[tokio::test]
async fn wide_decimals_need_as_text() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop("CREATE TABLE wide (id INT PRIMARY KEY, amount DECIMAL(65,30))")
            .await?;
        let table = mysql.table("wide");

        let err = schema::discover(&mut conn, &table, &SchemaOptions::default())
            .await
            .expect_err("decimal(65,30) cannot be Decimal128");
        assert!(matches!(err, Error::Schema(_)), "{err:?}");
        let message = err.to_string();
        for needle in [
            "`amount`",
            "decimal(65,30)",
            "as: text",
            "exclude: [amount]",
        ] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }

        let options = SchemaOptions {
            as_text: BTreeSet::from(["amount".to_owned()]),
            ..SchemaOptions::default()
        };
        let schema = schema::discover(&mut conn, &table, &options).await?;
        assert_eq!(
            schema.column("amount").map(|c| c.ty.clone()),
            Some(ColumnType::Text {
                max_octets: 67,
                source: TextSource::Decimal
            })
        );
        assert!(schema
            .redshift_ddl("a", "wide", &RedshiftTableOptions::default())?
            .contains("\"amount\" VARCHAR(67)"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        let table = mysql.table("no_such_table");
        let err = schema::discover(&mut conn, &table, &SchemaOptions::default())
            .await
            .expect_err("the table does not exist");
        let message = err.to_string();
        assert!(
            message.contains(&format!("table `{table}` not found in the source")),
            "{message}"
        );
        assert!(message.contains("SELECT"), "{message}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_table_without_a_primary_key_has_an_empty_key() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE events (happened_at DATETIME(6) NOT NULL, what VARCHAR(10), \
             UNIQUE KEY (what))",
        )
        .await?;
        conn.query_drop("CREATE TABLE pairs (b INT NOT NULL, a INT NOT NULL, PRIMARY KEY (a, b))")
            .await?;
        let events =
            schema::discover(&mut conn, &mysql.table("events"), &SchemaOptions::default()).await?;
        assert!(events.primary_key.is_empty());
        assert!(!events.postgres_ddl("s", "events")?.contains("PRIMARY KEY"));
        let pairs =
            schema::discover(&mut conn, &mysql.table("pairs"), &SchemaOptions::default()).await?;
        assert_eq!(
            pairs.primary_key,
            ["a", "b"],
            "index order, not column order"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn include_and_exclude_pick_columns() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE users (id INT PRIMARY KEY, Email VARCHAR(100), password_hash BINARY(32), \
             shape GEOMETRY, created_at DATETIME)",
        )
        .await?;
        let table = mysql.table("users");
        let conn = &mut conn;
        async fn discover_with(
            conn: &mut mysql_async::Conn,
            table: &tidemark::naming::TableId,
            options: SchemaOptions,
        ) -> tidemark::Result<TableSchema> {
            schema::discover(conn, table, &options).await
        }

        let included = discover_with(
            conn,
            &table,
            SchemaOptions {
                include: Some(vec!["id".into(), "email".into(), "created_at".into()]),
                ..Default::default()
            },
        )
        .await?;
        assert_eq!(included.column_names(), ["id", "Email", "created_at"]);

        let excluded = discover_with(
            conn,
            &table,
            SchemaOptions {
                exclude: vec!["password_hash".into(), "shape".into()],
                ..Default::default()
            },
        )
        .await?;
        assert_eq!(excluded.column_names(), ["id", "Email", "created_at"]);

        let spatial = discover_with(
            conn,
            &table,
            SchemaOptions {
                exclude: vec!["password_hash".into()],
                ..Default::default()
            },
        )
        .await
        .expect_err("geometry has no mapping")
        .to_string();
        assert!(
            spatial.contains("`shape`") && spatial.contains("geometry"),
            "{spatial}"
        );

        let typo = discover_with(
            conn,
            &table,
            SchemaOptions {
                include: Some(vec!["id".into(), "emial".into()]),
                ..Default::default()
            },
        )
        .await
        .expect_err("a typo must not pass")
        .to_string();
        assert!(typo.contains("`emial`"), "{typo}");

        let typo = discover_with(
            conn,
            &table,
            SchemaOptions {
                exclude: vec!["shape".into(), "pasword_hash".into()],
                ..Default::default()
            },
        )
        .await
        .expect_err("a typo must not pass")
        .to_string();
        assert!(typo.contains("`pasword_hash`"), "{typo}");

        let key = discover_with(
            conn,
            &table,
            SchemaOptions {
                exclude: vec!["id".into(), "shape".into()],
                ..Default::default()
            },
        )
        .await
        .expect_err("the key cannot be excluded")
        .to_string();
        assert!(key.contains("primary key column `id`"), "{key}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn only_a_json_valid_check_on_the_column_itself_makes_json() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop("CREATE TABLE docs (id INT PRIMARY KEY, doc JSON)")
            .await?;
        conn.query_drop(
            "CREATE TABLE notes (id INT PRIMARY KEY, doc LONGTEXT, \
             other LONGTEXT CHECK (other <> ''))",
        )
        .await?;
        let docs =
            schema::discover(&mut conn, &mysql.table("docs"), &SchemaOptions::default()).await?;
        assert_eq!(docs.columns[1].ty, ColumnType::Json);
        let notes =
            schema::discover(&mut conn, &mysql.table("notes"), &SchemaOptions::default()).await?;
        for column in &notes.columns[1..] {
            assert!(
                matches!(column.ty, ColumnType::Text { .. }),
                "{}: {:?}",
                column.name,
                column.ty
            );
        }
        Ok(())
    })
    .await
}

/// The target's columns as PostgreSQL's information_schema reports them.
async fn target_columns(pg: &TestPostgres, table: &str) -> anyhow::Result<Vec<TargetColumn>> {
    let rows = pg
        .client()
        .query(
            "SELECT column_name::text, data_type::text, character_maximum_length::bigint, \
                    numeric_precision::bigint, numeric_scale::bigint, is_nullable::text \
             FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&pg.schema(), &table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| TargetColumn {
            name: row.get(0),
            data_type: row.get(1),
            character_maximum_length: row.get(2),
            numeric_precision: row.get(3),
            numeric_scale: row.get(4),
            nullable: row.get::<_, String>(5) != "NO",
            primary_key: None,
        })
        .collect())
}

#[tokio::test]
async fn drift_against_a_real_postgres_table() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        TestPostgres::run(async |pg| {
            let options = SchemaOptions::default();
            let schema = zoo_schema(mysql, &options).await?;
            pg.client()
                .batch_execute(&schema.postgres_ddl(pg.schema(), "type_zoo")?)
                .await?;
            let existing = target_columns(pg, "type_zoo").await?;
            assert_eq!(existing.len(), schema.columns.len());
            assert_eq!(schema.drift(&existing, Warehouse::Postgres), vec![]);

            // The source grows a column and changes a type.
            let mut conn = mysql.conn().await?;
            conn.query_drop(
                "ALTER TABLE type_zoo ADD COLUMN note VARCHAR(30), MODIFY i BIGINT, \
                 MODIFY dec_money VARCHAR(20) NOT NULL DEFAULT '0'",
            )
            .await?;
            let table = mysql.table(type_zoo::TABLE);
            let changed = schema::discover(&mut conn, &table, &options).await?;
            let drifts = changed.drift(&existing, Warehouse::Postgres);
            let error = schema::drift_error(&table, &drifts)
                .context("text into a decimal column is drift")?;
            let message = error.to_string();
            assert!(
                message.contains("`dec_money`") && !message.contains("`i`"),
                "a widened integer is no drift error: {message}"
            );
            assert_eq!(error.kind(), tidemark::ErrorKind::SchemaDrift);

            // Without the incompatible column, the rest is applied automatically: the added
            // column, and the widened integer in place.
            let without_money = SchemaOptions {
                exclude: vec!["dec_money".into()],
                ..SchemaOptions::default()
            };
            let changed = schema::discover(&mut conn, &table, &without_money).await?;
            let drifts = changed.drift(&existing, Warehouse::Postgres);
            assert!(schema::drift_error(&table, &drifts).is_none(), "{drifts:?}");
            for statement in
                schema::drift_ddl(pg.schema(), "type_zoo", &drifts, Warehouse::Postgres)?
            {
                pg.client().batch_execute(&statement).await?;
            }
            let existing = target_columns(pg, "type_zoo").await?;
            let left: Vec<_> = changed.drift(&existing, Warehouse::Postgres);
            assert_eq!(
                left,
                vec![schema::Drift::MissingInSource {
                    column: "dec_money".to_owned()
                }]
            );
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn redshift_options_change_only_the_redshift_ddl() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let options = SchemaOptions {
            json_in_redshift: JsonTarget::Varchar,
            tinyint1_as_boolean: false,
            ..SchemaOptions::default()
        };
        let schema = zoo_schema(mysql, &options).await?;
        let ddl = schema.redshift_ddl(
            "analytics",
            "type_zoo",
            &RedshiftTableOptions {
                diststyle: Some(DistStyle::All),
                distkey: None,
                sortkey: vec!["js".to_owned()],
            },
        )?;
        assert!(ddl.contains("\"js\" VARCHAR(65535),"), "{ddl}");
        assert!(ddl.contains("\"flag\" SMALLINT,"), "{ddl}");
        assert!(ddl.contains("DISTSTYLE ALL\nSORTKEY (\"js\")"), "{ddl}");
        assert!(schema.postgres_ddl("a", "b")?.contains("\"js\" jsonb,"));
        Ok(())
    })
    .await
}
