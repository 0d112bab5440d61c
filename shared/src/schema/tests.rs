//! The schema module's tests: the type mapping, the DDL, drift and the fingerprint.

use arrow_schema::{DataType, TimeUnit};

use super::discover::is_json_valid_check;
use super::types::{type_arguments, LONGTEXT_MAX_OCTETS};
use super::*;

fn zoo() -> TableId {
    TableId::parse("shop.zoo").unwrap()
}

/// A source column from the values `information_schema.COLUMNS` reports on MariaDB 10.11.
fn src(name: &str, data_type: &str, column_type: &str) -> SourceColumn {
    let args = type_arguments(column_type);
    let (octets, precision, scale) = match data_type {
        "char" | "varchar" => (args.first().map(|n| n * 4), None, None),
        "binary" | "varbinary" => (args.first().copied(), None, None),
        "tinytext" | "tinyblob" => (Some(255), None, None),
        "text" | "blob" => (Some(65_535), None, None),
        "mediumtext" | "mediumblob" => (Some(16_777_215), None, None),
        "longtext" | "longblob" => (Some(LONGTEXT_MAX_OCTETS), None, None),
        "enum" => (Some(24), None, None),
        "set" => (Some(20), None, None),
        "decimal" => (None, args.first().copied(), args.get(1).copied()),
        "bit" => (None, args.first().copied(), None),
        _ => (None, None, None),
    };
    SourceColumn {
        name: name.to_owned(),
        data_type: data_type.to_owned(),
        column_type: column_type.to_owned(),
        nullable: true,
        octet_length: octets,
        numeric_precision: precision,
        numeric_scale: scale,
        datetime_precision: None,
        json_checked: false,
    }
}

fn map(data_type: &str, column_type: &str) -> Result<ColumnType> {
    map_column_type(
        &zoo(),
        &src("c", data_type, column_type),
        &SchemaOptions::default(),
    )
}

fn text(max_octets: u64, source: TextSource) -> ColumnType {
    ColumnType::Text { max_octets, source }
}

#[test]
fn every_mysql_type_maps_as_design_section_4_says() {
    use ColumnType as T;
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let cases: Vec<(&str, &str, ColumnType, DataType, &str, &str)> = vec![
        (
            "tinyint",
            "tinyint(1)",
            T::Boolean {
                source: BooleanSource::TinyInt,
            },
            DataType::Boolean,
            "BOOLEAN",
            "boolean",
        ),
        (
            "tinyint",
            "tinyint(4)",
            T::Int16,
            DataType::Int16,
            "SMALLINT",
            "smallint",
        ),
        (
            "tinyint",
            "tinyint(3) unsigned",
            T::Int16,
            DataType::Int16,
            "SMALLINT",
            "smallint",
        ),
        (
            "tinyint",
            "tinyint unsigned",
            T::Int16,
            DataType::Int16,
            "SMALLINT",
            "smallint",
        ),
        (
            "smallint",
            "smallint(6)",
            T::Int16,
            DataType::Int16,
            "SMALLINT",
            "smallint",
        ),
        (
            "smallint",
            "smallint(5) unsigned",
            T::Int32,
            DataType::Int32,
            "INTEGER",
            "integer",
        ),
        (
            "mediumint",
            "mediumint(9)",
            T::Int32,
            DataType::Int32,
            "INTEGER",
            "integer",
        ),
        (
            "mediumint",
            "mediumint(8) unsigned",
            T::Int32,
            DataType::Int32,
            "INTEGER",
            "integer",
        ),
        (
            "int",
            "int(11)",
            T::Int32,
            DataType::Int32,
            "INTEGER",
            "integer",
        ),
        (
            "int",
            "int",
            T::Int32,
            DataType::Int32,
            "INTEGER",
            "integer",
        ),
        (
            "int",
            "int(10) unsigned",
            T::Int64,
            DataType::Int64,
            "BIGINT",
            "bigint",
        ),
        (
            "int",
            "int(10) unsigned zerofill",
            T::Int64,
            DataType::Int64,
            "BIGINT",
            "bigint",
        ),
        (
            "bigint",
            "bigint(20)",
            T::Int64,
            DataType::Int64,
            "BIGINT",
            "bigint",
        ),
        (
            "bigint",
            "bigint(20) unsigned",
            T::Decimal {
                precision: 20,
                scale: 0,
            },
            DataType::Decimal128(20, 0),
            "DECIMAL(20, 0)",
            "numeric(20, 0)",
        ),
        (
            "decimal",
            "decimal(38,10)",
            T::Decimal {
                precision: 38,
                scale: 10,
            },
            DataType::Decimal128(38, 10),
            "DECIMAL(38, 10)",
            "numeric(38, 10)",
        ),
        (
            "decimal",
            "decimal(10,0) unsigned",
            T::Decimal {
                precision: 10,
                scale: 0,
            },
            DataType::Decimal128(10, 0),
            "DECIMAL(10, 0)",
            "numeric(10, 0)",
        ),
        (
            "float",
            "float",
            T::Float32,
            DataType::Float32,
            "REAL",
            "real",
        ),
        (
            "float",
            "float(10,2)",
            T::Float32,
            DataType::Float32,
            "REAL",
            "real",
        ),
        (
            "double",
            "double",
            T::Float64,
            DataType::Float64,
            "DOUBLE PRECISION",
            "double precision",
        ),
        (
            "bit",
            "bit(1)",
            T::Boolean {
                source: BooleanSource::Bit,
            },
            DataType::Boolean,
            "BOOLEAN",
            "boolean",
        ),
        (
            "bit",
            "bit(10)",
            T::Bits { width: 10 },
            DataType::Int64,
            "BIGINT",
            "bigint",
        ),
        (
            "bit",
            "bit(63)",
            T::Bits { width: 63 },
            DataType::Int64,
            "BIGINT",
            "bigint",
        ),
        (
            "bit",
            "bit(64)",
            T::Bits { width: 64 },
            DataType::Decimal128(20, 0),
            "DECIMAL(20, 0)",
            "numeric(20, 0)",
        ),
        (
            "year",
            "year(4)",
            T::Int16,
            DataType::Int16,
            "SMALLINT",
            "smallint",
        ),
        ("date", "date", T::Date, DataType::Date32, "DATE", "date"),
        (
            "datetime",
            "datetime(6)",
            T::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            "TIMESTAMP",
            "timestamp",
        ),
        (
            "datetime",
            "datetime",
            T::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            "TIMESTAMP",
            "timestamp",
        ),
        (
            "timestamp",
            "timestamp(3)",
            T::TimestampTz,
            utc.clone(),
            "TIMESTAMPTZ",
            "timestamptz",
        ),
        (
            "time",
            "time(6)",
            text(17, TextSource::Time),
            DataType::Utf8,
            "VARCHAR(17)",
            "text",
        ),
        (
            "char",
            "char(10)",
            text(40, TextSource::Char),
            DataType::Utf8,
            "VARCHAR(40)",
            "text",
        ),
        (
            "char",
            "char(0)",
            text(0, TextSource::Char),
            DataType::Utf8,
            "VARCHAR(1)",
            "text",
        ),
        (
            "varchar",
            "varchar(255)",
            text(1020, TextSource::Varchar),
            DataType::Utf8,
            "VARCHAR(1020)",
            "text",
        ),
        (
            "varchar",
            "varchar(16383)",
            text(65_532, TextSource::Varchar),
            DataType::Utf8,
            "VARCHAR(65532)",
            "text",
        ),
        (
            "varchar",
            "varchar(20000)",
            text(80_000, TextSource::Varchar),
            DataType::Utf8,
            "VARCHAR(65535)",
            "text",
        ),
        (
            "tinytext",
            "tinytext",
            text(255, TextSource::Text),
            DataType::Utf8,
            "VARCHAR(255)",
            "text",
        ),
        (
            "text",
            "text",
            text(65_535, TextSource::Text),
            DataType::Utf8,
            "VARCHAR(65535)",
            "text",
        ),
        (
            "mediumtext",
            "mediumtext",
            text(16_777_215, TextSource::Text),
            DataType::Utf8,
            "VARCHAR(65535)",
            "text",
        ),
        (
            "longtext",
            "longtext",
            text(LONGTEXT_MAX_OCTETS, TextSource::Text),
            DataType::Utf8,
            "VARCHAR(65535)",
            "text",
        ),
        (
            "enum",
            "enum('a','b')",
            text(24, TextSource::Enum),
            DataType::Utf8,
            "VARCHAR(24)",
            "text",
        ),
        (
            "set",
            "set('a','b')",
            text(20, TextSource::Set),
            DataType::Utf8,
            "VARCHAR(20)",
            "text",
        ),
        ("json", "json", T::Json, DataType::Utf8, "SUPER", "jsonb"),
        (
            "binary",
            "binary(16)",
            T::Binary { max_octets: 16 },
            DataType::Binary,
            "VARBYTE(16)",
            "bytea",
        ),
        (
            "varbinary",
            "varbinary(255)",
            T::Binary { max_octets: 255 },
            DataType::Binary,
            "VARBYTE(255)",
            "bytea",
        ),
        (
            "tinyblob",
            "tinyblob",
            T::Binary { max_octets: 255 },
            DataType::Binary,
            "VARBYTE(255)",
            "bytea",
        ),
        (
            "blob",
            "blob",
            T::Binary { max_octets: 65_535 },
            DataType::Binary,
            "VARBYTE(65535)",
            "bytea",
        ),
        (
            "mediumblob",
            "mediumblob",
            T::Binary {
                max_octets: 16_777_215,
            },
            DataType::Binary,
            "VARBYTE(16777215)",
            "bytea",
        ),
        (
            "longblob",
            "longblob",
            T::Binary {
                max_octets: LONGTEXT_MAX_OCTETS,
            },
            DataType::Binary,
            "VARBYTE(16777216)",
            "bytea",
        ),
    ];
    for (data_type, column_type, ty, arrow, redshift, postgres) in cases {
        let mapped = map(data_type, column_type).unwrap();
        assert_eq!(mapped, ty, "{column_type}");
        assert_eq!(mapped.arrow_type(), arrow, "{column_type}");
        assert_eq!(
            mapped.redshift_type(JsonTarget::Super),
            redshift,
            "{column_type}"
        );
        assert_eq!(mapped.postgres_type(), postgres, "{column_type}");
    }
}

#[test]
fn json_in_redshift_can_be_varchar() {
    assert_eq!(
        ColumnType::Json.redshift_type(JsonTarget::Varchar),
        "VARCHAR(65535)"
    );
}

#[test]
fn mariadb_json_is_longtext_with_a_json_valid_check() {
    let mut column = src("doc", "longtext", "longtext");
    column.json_checked = true;
    let ty = map_column_type(&zoo(), &column, &SchemaOptions::default()).unwrap();
    assert_eq!(ty, ColumnType::Json);
    assert!(is_json_valid_check("json_valid(`doc`)", "doc"));
    assert!(is_json_valid_check(" JSON_VALID( `doc` ) ", "doc"));
    assert!(!is_json_valid_check("json_valid(`other`)", "doc"));
    assert!(!is_json_valid_check(
        "json_valid(`doc`) and `doc` <> ''",
        "doc"
    ));
    assert!(is_json_valid_check("json_valid(`we``ird`)", "we`ird"));
}

#[test]
fn tinyint1_can_stay_an_integer() {
    let options = SchemaOptions {
        tinyint1_as_boolean: false,
        ..SchemaOptions::default()
    };
    let ty = map_column_type(&zoo(), &src("flag", "tinyint", "tinyint(1)"), &options).unwrap();
    assert_eq!(ty, ColumnType::Int16);
}

#[test]
fn wide_decimals_are_an_error_that_names_the_fix_unless_forced_to_text() {
    let err = map("decimal", "decimal(65,30)").unwrap_err().to_string();
    for needle in [
        "`c`",
        "`shop.zoo`",
        "decimal(65,30)",
        "as: text",
        "exclude: [c]",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    let options = SchemaOptions {
        as_text: BTreeSet::from(["C".to_owned()]),
        ..SchemaOptions::default()
    };
    let ty = map_column_type(&zoo(), &src("c", "decimal", "decimal(65,30)"), &options).unwrap();
    assert_eq!(ty, text(67, TextSource::Decimal));
}

#[test]
fn spatial_and_unknown_types_are_errors_unless_forced_to_text() {
    for (data_type, column_type) in [
        ("geometry", "geometry"),
        ("point", "point"),
        ("uuid", "uuid"),
    ] {
        let err = map(data_type, column_type).unwrap_err();
        assert!(matches!(err, Error::Schema(_)));
        let err = err.to_string();
        assert!(
            err.contains(column_type) && err.contains("as: text"),
            "{err}"
        );
    }
    let options = SchemaOptions {
        as_text: BTreeSet::from(["shape".to_owned(), "id".to_owned()]),
        ..SchemaOptions::default()
    };
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("shape", "geometry", "geometry"),
            src("id", "uuid", "uuid"),
        ],
        vec![],
        &options,
    )
    .unwrap();
    assert_eq!(
        schema.columns[0].ty,
        text(LONGTEXT_MAX_OCTETS, TextSource::Spatial)
    );
    assert_eq!(
        schema.mysql_select_list(),
        "ST_AsText(`shape`), CAST(`id` AS CHAR)"
    );
}

#[test]
fn forced_text_reads_every_type_through_mysql_text() {
    let options = SchemaOptions {
        as_text: ["n", "bin", "b", "ts", "d", "j", "t", "v"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ..SchemaOptions::default()
    };
    let mut json = src("j", "longtext", "longtext");
    json.json_checked = true;
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("n", "bigint", "bigint(20) unsigned"),
            src("bin", "varbinary", "varbinary(8)"),
            src("b", "bit", "bit(10)"),
            src("ts", "timestamp", "timestamp(6)"),
            src("d", "double", "double"),
            json,
            src("t", "time", "time"),
            src("v", "varchar", "varchar(3)"),
        ],
        vec![],
        &options,
    )
    .unwrap();
    let types: Vec<ColumnType> = schema.columns.iter().map(|c| c.ty.clone()).collect();
    assert_eq!(
        types,
        vec![
            text(20, TextSource::Other),
            text(16, TextSource::Other),
            text(20, TextSource::Other),
            text(26, TextSource::Other),
            text(32, TextSource::Other),
            text(LONGTEXT_MAX_OCTETS, TextSource::Json),
            text(17, TextSource::Time),
            text(12, TextSource::Varchar),
        ]
    );
    assert_eq!(
        schema.mysql_select_list(),
        "CAST(`n` AS CHAR), HEX(`bin`), CAST(`b` + 0 AS CHAR), CAST(`ts` AS CHAR), \
         CAST(`d` AS CHAR), `j`, CAST(`t` AS CHAR), `v`"
    );
}

fn orders() -> TableSchema {
    let mut id = src("Id", "bigint", "bigint(20) unsigned");
    id.nullable = false;
    let mut created = src("created_at", "datetime", "datetime(6)");
    created.nullable = false;
    let mut amount = src("amount", "decimal", "decimal(12,2)");
    amount.nullable = false;
    TableSchema::from_source_columns(
        &TableId::parse("shop.orders").unwrap(),
        vec![
            id,
            src("Customer Name", "varchar", "varchar(100)"),
            amount,
            created,
            src("doc", "json", "json"),
            src("photo", "blob", "blob"),
        ],
        vec!["id".to_owned()],
        &SchemaOptions::default(),
    )
    .unwrap()
}

#[test]
fn names_fold_for_the_warehouse_and_keep_their_source_spelling() {
    let schema = orders();
    assert_eq!(
        schema.column_names(),
        [
            "Id",
            "Customer Name",
            "amount",
            "created_at",
            "doc",
            "photo"
        ]
    );
    assert_eq!(
        schema.target_column_names(),
        [
            "id",
            "customer name",
            "amount",
            "created_at",
            "doc",
            "photo"
        ]
    );
    assert_eq!(schema.primary_key, ["Id"]);
    assert_eq!(
        schema.column("CUSTOMER name").unwrap().name,
        "Customer Name"
    );
}

#[test]
fn zero_dates_make_temporal_columns_nullable_outside_the_primary_key() {
    let schema = orders();
    let nullable: Vec<bool> = schema.columns.iter().map(|c| c.nullable).collect();
    assert_eq!(nullable, [false, true, false, true, true, true]);
    let mut key = src("day", "date", "date");
    key.nullable = false;
    let keyed = TableSchema::from_source_columns(
        &zoo(),
        vec![key],
        vec!["day".to_owned()],
        &SchemaOptions::default(),
    )
    .unwrap();
    assert!(!keyed.columns[0].nullable);
    let arrow = schema.arrow_schema();
    assert_eq!(arrow.field(0).name(), "id");
    assert!(!arrow.field(0).is_nullable());
    assert_eq!(arrow.field(0).data_type(), &DataType::Decimal128(20, 0));
    assert!(arrow.field(3).is_nullable());
}

#[test]
fn only_types_whose_values_can_outgrow_redshift_have_a_limit_to_enforce() {
    let limit = |data_type: &str, column_type: &str| {
        let ty = map(data_type, column_type).unwrap();
        (ty.redshift_max_value_octets(), ty.may_outgrow_redshift())
    };
    assert_eq!(limit("varchar", "varchar(100)"), (Some(400), false));
    assert_eq!(limit("text", "text"), (Some(65_535), false));
    assert_eq!(limit("varchar", "varchar(16384)"), (Some(65_535), true));
    assert_eq!(limit("mediumtext", "mediumtext"), (Some(65_535), true));
    assert_eq!(limit("json", "json"), (Some(65_535), true));
    assert_eq!(limit("mediumblob", "mediumblob"), (Some(16_777_215), false));
    assert_eq!(limit("longblob", "longblob"), (Some(16_777_216), true));
    assert_eq!(limit("int", "int(11)"), (None, false));
}

#[test]
fn oversize_policies_that_write_null_make_those_columns_nullable_outside_the_key() {
    let not_null = |name: &str, data_type: &str| {
        let mut column = src(name, data_type, data_type);
        column.nullable = false;
        column
    };
    let nullable_with = |policy: OversizePolicy| {
        let schema = TableSchema::from_source_columns(
            &zoo(),
            vec![
                not_null("k", "mediumtext"),
                not_null("body", "longtext"),
                not_null("doc", "json"),
                not_null("note", "text"),
                not_null("raw", "longblob"),
            ],
            vec!["k".to_owned()],
            &SchemaOptions {
                oversize_in_redshift: policy,
                ..SchemaOptions::default()
            },
        )
        .unwrap();
        schema
            .columns
            .iter()
            .map(|c| c.nullable)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nullable_with(OversizePolicy::Fail),
        [false, false, false, false, false]
    );
    assert_eq!(
        nullable_with(OversizePolicy::Truncate),
        [false, false, true, false, false],
        "a JSON document is never cut, it becomes NULL"
    );
    assert_eq!(
        nullable_with(OversizePolicy::Null),
        [false, true, true, false, true]
    );
}

#[test]
fn redshift_ddl_sizes_in_bytes_and_places_table_attributes() {
    let dist = RedshiftTableOptions {
        diststyle: None,
        distkey: Some("ID".to_owned()),
        sortkey: vec!["created_at".to_owned(), "id".to_owned()],
    };
    let ddl = orders().redshift_ddl("Analytics", "orders", &dist).unwrap();
    assert_eq!(
        ddl,
        "CREATE TABLE IF NOT EXISTS \"analytics\".\"orders\" (\n    \
         \"id\" DECIMAL(20, 0) NOT NULL,\n    \
         \"customer name\" VARCHAR(400),\n    \
         \"amount\" DECIMAL(12, 2) NOT NULL,\n    \
         \"created_at\" TIMESTAMP,\n    \
         \"doc\" SUPER,\n    \
         \"photo\" VARBYTE(65535),\n    \
         PRIMARY KEY (\"id\")\n)\n\
         DISTSTYLE KEY\nDISTKEY (\"id\")\n\
         SORTKEY (\"created_at\", \"id\")\n\
         ENCODE AUTO"
    );
    let even = RedshiftTableOptions {
        diststyle: Some(DistStyle::Even),
        ..RedshiftTableOptions::default()
    };
    let ddl = orders().redshift_ddl("a", "o", &even).unwrap();
    assert!(ddl.ends_with(")\nDISTSTYLE EVEN\nENCODE AUTO"), "{ddl}");
    let plain = orders()
        .redshift_ddl("a", "o", &RedshiftTableOptions::default())
        .unwrap();
    assert!(
        plain.ends_with("PRIMARY KEY (\"id\")\n)\nENCODE AUTO"),
        "{plain}"
    );
}

#[test]
fn redshift_table_options_are_validated() {
    let bad = [
        RedshiftTableOptions {
            distkey: Some("nope".to_owned()),
            ..Default::default()
        },
        RedshiftTableOptions {
            sortkey: vec!["id".to_owned(), "nope".to_owned()],
            ..Default::default()
        },
        RedshiftTableOptions {
            sortkey: vec!["id".to_owned(), "Id".to_owned()],
            ..Default::default()
        },
        RedshiftTableOptions {
            diststyle: Some(DistStyle::Key),
            ..Default::default()
        },
        RedshiftTableOptions {
            diststyle: Some(DistStyle::All),
            distkey: Some("id".to_owned()),
            ..Default::default()
        },
        RedshiftTableOptions {
            distkey: Some("doc".to_owned()),
            ..Default::default()
        },
        RedshiftTableOptions {
            sortkey: vec!["doc".to_owned()],
            ..Default::default()
        },
    ];
    for dist in bad {
        let err = orders().redshift_ddl("a", "o", &dist);
        assert!(matches!(err, Err(Error::Schema(_))), "{dist:?} → {err:?}");
    }
    let err = orders()
        .redshift_ddl("a", "o", &bad_distkey())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`nope`") && err.contains("created_at"),
        "{err}"
    );
    let mut varchar_json = orders();
    varchar_json.json_in_redshift = JsonTarget::Varchar;
    let sort_on_json = RedshiftTableOptions {
        sortkey: vec!["doc".to_owned()],
        ..Default::default()
    };
    let ddl = varchar_json.redshift_ddl("a", "o", &sort_on_json).unwrap();
    assert!(ddl.contains("\"doc\" VARCHAR(65535),"), "{ddl}");
}

fn bad_distkey() -> RedshiftTableOptions {
    RedshiftTableOptions {
        distkey: Some("nope".to_owned()),
        ..Default::default()
    }
}

#[test]
fn postgres_ddl_uses_postgres_types_and_checks_name_lengths() {
    let ddl = orders().postgres_ddl("analytics", "orders").unwrap();
    assert_eq!(
        ddl,
        "CREATE TABLE IF NOT EXISTS \"analytics\".\"orders\" (\n    \
         \"id\" numeric(20, 0) NOT NULL,\n    \
         \"customer name\" text,\n    \
         \"amount\" numeric(12, 2) NOT NULL,\n    \
         \"created_at\" timestamp,\n    \
         \"doc\" jsonb,\n    \
         \"photo\" bytea,\n    \
         PRIMARY KEY (\"id\")\n)"
    );
    assert!(orders().postgres_ddl("analytics", &"t".repeat(64)).is_err());
    let long = TableSchema::from_source_columns(
        &zoo(),
        vec![src(&"c".repeat(64), "int", "int(11)")],
        vec![],
        &SchemaOptions::default(),
    )
    .unwrap();
    // Names the column, the fix, and how to drop runs committed with it.
    let refused = long.postgres_ddl("a", "b").unwrap_err().to_string();
    assert!(
        refused.contains(&format!("column `{}`", "c".repeat(64)))
            && refused.contains("exclude")
            && refused.contains("--drop-pending"),
        "{refused}"
    );
    assert!(long
        .redshift_ddl("a", "b", &RedshiftTableOptions::default())
        .is_ok());
}

#[test]
fn a_table_without_a_primary_key_has_no_key_clause() {
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![src("a", "int", "int(11)")],
        vec![],
        &SchemaOptions::default(),
    )
    .unwrap();
    assert!(schema.primary_key.is_empty());
    let ddl = schema.postgres_ddl("s", "t").unwrap();
    assert_eq!(
        ddl,
        "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\n    \"a\" integer\n)"
    );
}

#[test]
fn include_exclude_and_overrides_must_name_real_columns() {
    let columns = || {
        vec![
            src("id", "int", "int(11)"),
            src("Email", "varchar", "varchar(10)"),
            src("secret", "varchar", "varchar(10)"),
        ]
    };
    let build = |options: SchemaOptions| {
        TableSchema::from_source_columns(&zoo(), columns(), vec!["id".to_owned()], &options)
    };
    let included = build(SchemaOptions {
        include: Some(vec!["id".to_owned(), "email".to_owned()]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(included.column_names(), ["id", "Email"]);
    let excluded = build(SchemaOptions {
        exclude: vec!["SECRET".to_owned()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(excluded.column_names(), ["id", "Email"]);

    let err = build(SchemaOptions {
        include: Some(vec!["id".to_owned(), "emial".to_owned()]),
        exclude: vec!["nope".to_owned()],
        as_text: BTreeSet::from(["ghost".to_owned()]),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    for needle in ["`emial`", "`nope`", "`ghost`", "id, Email, secret"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    let err = build(SchemaOptions {
        include: Some(vec!["id".to_owned(), "secret".to_owned()]),
        exclude: vec!["secret".to_owned()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("both included and excluded"),
        "{err}"
    );
    let err = build(SchemaOptions {
        exclude: vec!["id".to_owned()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("primary key column `id`"), "{err}");
}

#[test]
fn names_that_fold_together_are_an_error_naming_both() {
    // U+212A KELVIN SIGN lowercases to a plain `k`.
    let err = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("k", "int", "int(11)"),
            src("\u{212a}", "int", "int(11)"),
        ],
        vec![],
        &SchemaOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`k`") && err.contains("`\u{212a}`"), "{err}");
}

#[test]
fn every_unsupported_column_is_reported_at_once() {
    let err = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("shape", "geometry", "geometry"),
            src("ok", "int", "int(11)"),
            src("big", "decimal", "decimal(50,2)"),
        ],
        vec![],
        &SchemaOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`shape`") && err.contains("`big`"), "{err}");
}

#[test]
fn an_empty_column_list_means_the_table_was_not_found() {
    let err = TableSchema::from_source_columns(&zoo(), vec![], vec![], &SchemaOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table `shop.zoo` not found in the source"),
        "{err}"
    );
    assert!(err.contains("SELECT"), "{err}");
}

#[test]
fn the_fingerprint_is_stable_and_sensitive() {
    let schema = orders();
    // Pinned: a change here means every stored fingerprint changes too.
    assert_eq!(schema.fingerprint(), "1b2539f8ed9f2950");
    assert_eq!(schema.fingerprint(), orders().fingerprint());
    let mut other = orders();
    other.columns[1].nullable = false;
    assert_ne!(other.fingerprint(), schema.fingerprint());
    let mut other = orders();
    other.columns[2].ty = ColumnType::Decimal {
        precision: 12,
        scale: 3,
    };
    assert_ne!(other.fingerprint(), schema.fingerprint());
    let mut other = orders();
    other.columns[5].target_name = "picture".to_owned();
    assert_ne!(other.fingerprint(), schema.fingerprint());
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn the_schema_round_trips_through_json() {
    let schema = orders();
    let json = serde_json::to_string(&schema).unwrap();
    assert!(json.contains("\"table\":\"shop.orders\""), "{json}");
    let back: TableSchema = serde_json::from_str(&json).unwrap();
    assert_eq!(back, schema);
}

fn target(
    name: &str,
    data_type: &str,
    length: Option<i64>,
    precision: Option<i64>,
    scale: Option<i64>,
) -> TargetColumn {
    TargetColumn {
        name: name.to_owned(),
        data_type: data_type.to_owned(),
        character_maximum_length: length,
        numeric_precision: precision,
        numeric_scale: scale,
        nullable: true,
        primary_key: None,
    }
}

/// `column`, part of PRIMARY KEY `constraint`.
fn in_key(constraint: &str, column: TargetColumn) -> TargetColumn {
    TargetColumn {
        primary_key: Some(constraint.to_owned()),
        ..column
    }
}

/// `orders()` as SVV_COLUMNS reports the table created by `redshift_ddl`.
fn redshift_orders() -> Vec<TargetColumn> {
    vec![
        in_key(
            "orders_pkey",
            target("id", "numeric", None, Some(20), Some(0)),
        ),
        target("customer name", "character varying", Some(400), None, None),
        target("amount", "numeric", None, Some(12), Some(2)),
        target(
            "created_at",
            "timestamp without time zone",
            None,
            None,
            None,
        ),
        target("doc", "super", None, None, None),
        target("photo", "binary varying", Some(65_535), None, None),
    ]
}

/// `orders()` as PostgreSQL's information_schema reports the table created by `postgres_ddl`.
fn postgres_orders() -> Vec<TargetColumn> {
    vec![
        target("id", "numeric", None, Some(20), Some(0)),
        target("customer name", "text", None, None, None),
        target("amount", "numeric", None, Some(12), Some(2)),
        target(
            "created_at",
            "timestamp without time zone",
            None,
            None,
            None,
        ),
        target("doc", "jsonb", None, None, None),
        target("photo", "bytea", None, None, None),
    ]
}

#[test]
fn a_table_created_from_the_schema_has_no_drift() {
    assert_eq!(
        orders().drift(&redshift_orders(), Warehouse::Redshift),
        vec![]
    );
    assert_eq!(
        orders().drift(&postgres_orders(), Warehouse::Postgres),
        vec![]
    );
}

#[test]
fn wider_targets_are_not_drift() {
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("small", "smallint", "smallint(6)"),
            src("f", "float", "float"),
            src("d", "decimal", "decimal(10,2)"),
            src("v", "varchar", "varchar(10)"),
            src("bits", "bit", "bit(64)"),
        ],
        vec![],
        &SchemaOptions::default(),
    )
    .unwrap();
    let existing = vec![
        target("small", "integer", None, Some(32), Some(0)),
        target("f", "double precision", None, Some(53), None),
        target("d", "numeric", None, Some(18), Some(4)),
        target("v", "character varying", Some(1000), None, None),
        target("bits", "numeric", None, Some(38), Some(0)),
    ];
    assert_eq!(schema.drift(&existing, Warehouse::Redshift), vec![]);
    let unconstrained = vec![
        target("small", "numeric", None, None, None),
        target("f", "real", None, Some(24), None),
        target("d", "numeric", None, None, None),
        target("v", "character varying", None, None, None),
        target("bits", "numeric", None, None, None),
    ];
    assert_eq!(schema.drift(&unconstrained, Warehouse::Postgres), vec![]);
}

#[test]
fn a_widened_redshift_key_varchar_drops_and_declares_its_key_again() {
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("code", "varchar", "varchar(40)"),
            src("region", "varchar", "varchar(10)"),
        ],
        vec!["code".to_owned(), "region".to_owned()],
        &SchemaOptions::default(),
    )
    .unwrap();
    let keyed = |name: &str, length: i64| {
        in_key(
            "b_pkey",
            target(name, "character varying", Some(length), None, None),
        )
    };
    // r_ALTER_TABLE: ALTER COLUMN TYPE cannot change a PRIMARY KEY column.
    let widened = schema.drift(
        &[keyed("code", 80), keyed("region", 40)],
        Warehouse::Redshift,
    );
    assert_eq!(
        drift_ddl("a", "b", &widened, Warehouse::Redshift).unwrap(),
        [
            "ALTER TABLE \"a\".\"b\" DROP CONSTRAINT \"b_pkey\"",
            "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"code\" TYPE VARCHAR(160)",
            "ALTER TABLE \"a\".\"b\" ADD CONSTRAINT \"b_pkey\" PRIMARY KEY (\"code\", \"region\")",
        ]
    );
    // Interrupted after the drop: the next run widens without it and declares the key again.
    let unkeyed = |t: TargetColumn| TargetColumn {
        primary_key: None,
        ..t
    };
    let resumed = schema.drift(
        &[unkeyed(keyed("code", 80)), unkeyed(keyed("region", 40))],
        Warehouse::Redshift,
    );
    assert_eq!(
        drift_ddl("a", "b", &resumed, Warehouse::Redshift).unwrap(),
        [
            "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"code\" TYPE VARCHAR(160)",
            "ALTER TABLE \"a\".\"b\" ADD PRIMARY KEY (\"code\", \"region\")",
        ]
    );
    // An append table declares no key, and gets none; PostgreSQL widens a key in place.
    let append = schema.declaring_key(&[]);
    let plain = [unkeyed(keyed("code", 160)), unkeyed(keyed("region", 40))];
    assert!(append.drift(&plain, Warehouse::Redshift).is_empty());
    assert_eq!(
        drift_ddl(
            "a",
            "b",
            &schema.drift(
                &[keyed("code", 80), keyed("region", 40)],
                Warehouse::Postgres
            ),
            Warehouse::Postgres
        )
        .unwrap(),
        ["ALTER TABLE \"a\".\"b\" ALTER COLUMN \"code\" TYPE text"]
    );
}

#[test]
fn a_widening_is_retyped_and_an_interrupted_redshift_retype_resumes() {
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("id", "bigint", "bigint(20)"),
            src("qty", "bigint", "bigint(20)"),
            src("price", "decimal", "decimal(16,4)"),
        ],
        vec!["id".to_owned()],
        &SchemaOptions::default(),
    )
    .unwrap();
    let id = in_key("b_pkey", target("id", "bigint", None, Some(64), Some(0)));
    let qty = target("qty", "integer", None, Some(32), Some(0));
    let price = target("price", "numeric", None, Some(12), Some(2));
    let fresh = schema.drift(
        &[id.clone(), qty.clone(), price.clone()],
        Warehouse::Redshift,
    );
    assert_eq!(
        drift_ddl("a", "b", &fresh, Warehouse::Redshift).unwrap(),
        [
            "ALTER TABLE \"a\".\"b\" ADD COLUMN \"tidemark_retype_qty\" BIGINT",
            "UPDATE \"a\".\"b\" SET \"tidemark_retype_qty\" = \"qty\"",
            "ALTER TABLE \"a\".\"b\" DROP COLUMN \"qty\"",
            "ALTER TABLE \"a\".\"b\" RENAME COLUMN \"tidemark_retype_qty\" TO \"qty\"",
            "ALTER TABLE \"a\".\"b\" ADD COLUMN \"tidemark_retype_price\" DECIMAL(16, 4)",
            "UPDATE \"a\".\"b\" SET \"tidemark_retype_price\" = \"price\"",
            "ALTER TABLE \"a\".\"b\" DROP COLUMN \"price\"",
            "ALTER TABLE \"a\".\"b\" RENAME COLUMN \"tidemark_retype_price\" TO \"price\"",
        ]
    );
    assert_eq!(
        drift_ddl(
            "a",
            "b",
            &schema.drift(
                &[id.clone(), qty.clone(), price.clone()],
                Warehouse::Postgres
            ),
            Warehouse::Postgres
        )
        .unwrap(),
        [
            "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"qty\" TYPE bigint",
            "ALTER TABLE \"a\".\"b\" ALTER COLUMN \"price\" TYPE numeric(16, 4)",
        ]
    );
    // Crashed after ADD COLUMN: the temporary column is reused, not added again, and is no
    // column "missing in the source".
    let mut temporary = target("tidemark_retype_qty", "bigint", None, Some(64), Some(0));
    let added = schema.drift(
        &[id.clone(), qty, temporary.clone(), price.clone()],
        Warehouse::Redshift,
    );
    let ddl = drift_ddl("a", "b", &added, Warehouse::Redshift).unwrap();
    assert_eq!(
        ddl[0],
        "UPDATE \"a\".\"b\" SET \"tidemark_retype_qty\" = \"qty\""
    );
    assert!(
        !added
            .iter()
            .any(|d| matches!(d, Drift::MissingInSource { .. })),
        "{added:?}"
    );
    // Crashed after DROP COLUMN: only the rename is left.
    temporary.name = "tidemark_retype_qty".to_owned();
    let dropped = schema.drift(&[id, temporary, price], Warehouse::Redshift);
    let ddl = drift_ddl("a", "b", &dropped, Warehouse::Redshift).unwrap();
    assert_eq!(
        ddl[0],
        "ALTER TABLE \"a\".\"b\" RENAME COLUMN \"tidemark_retype_qty\" TO \"qty\""
    );
}

#[test]
fn drift_is_classified_column_by_column() {
    let schema = TableSchema::from_source_columns(
        &zoo(),
        vec![
            src("id", "bigint", "bigint(20)"),
            src("name", "varchar", "varchar(200)"),
            src("price", "decimal", "decimal(12,4)"),
            src("flag", "tinyint", "tinyint(1)"),
            src("added", "date", "date"),
            src("at", "timestamp", "timestamp(6)"),
        ],
        vec!["id".to_owned()],
        &SchemaOptions::default(),
    )
    .unwrap();
    let existing = vec![
        in_key("b_pkey", target("id", "integer", None, Some(32), Some(0))),
        target("name", "character varying", Some(100), None, None),
        target("price", "numeric", None, Some(12), Some(2)),
        target("flag", "smallint", None, Some(16), Some(0)),
        target("at", "timestamp without time zone", None, None, None),
        target("gone", "integer", None, Some(32), Some(0)),
    ];
    let drifts = schema.drift(&existing, Warehouse::Redshift);
    assert_eq!(drifts.len(), 7, "{drifts:#?}");
    assert!(
        matches!(&drifts[0], Drift::Incompatible { column, target_type, source_type, hint }
            if column == "id"
                && target_type == "integer"
                && source_type == "bigint(20)"
                && hint.contains("BIGINT"))
    );
    assert_eq!(
        drifts[1],
        Drift::WidenVarchar {
            column: "name".to_owned(),
            from: 100,
            to: 800
        }
    );
    assert!(
        matches!(&drifts[2], Drift::Incompatible { column, target_type, .. }
        if column == "price" && target_type == "numeric(12,2)")
    );
    assert!(
        matches!(&drifts[3], Drift::Incompatible { column, hint, .. }
        if column == "flag" && hint.contains("tinyint1_as_boolean: false"))
    );
    assert_eq!(
        drifts[4],
        Drift::AddColumn {
            column: "added".to_owned(),
            ddl_type: "DATE".to_owned()
        }
    );
    assert!(matches!(&drifts[5], Drift::Incompatible { column, .. } if column == "at"));
    assert_eq!(
        drifts[6],
        Drift::MissingInSource {
            column: "gone".to_owned()
        }
    );

    let error = drift_error("shop.zoo", &drifts).unwrap();
    assert_eq!(error.kind(), crate::ErrorKind::SchemaDrift);
    let message = error.to_string();
    for needle in [
        "`id`",
        "`price`",
        "`flag`",
        "`at`",
        "exclude: [price]",
        "reload",
    ] {
        assert!(message.contains(needle), "{needle} missing from: {message}");
    }
    // A key column cannot be left out: its fix is a reload, never `exclude`.
    assert!(!message.contains("exclude: [id]"), "{message}");
    assert!(
        !message.contains("`name`") && !message.contains("`gone`"),
        "{message}"
    );
    assert!(drift_error("shop.zoo", &drifts[4..5]).is_none());
    assert!(matches!(
        drift_ddl("a", "b", &drifts, Warehouse::Redshift),
        Err(Error::SchemaDrift { .. })
    ));
}

#[test]
fn json_drift_follows_json_in_redshift() {
    let mut schema = orders();
    let mut existing = redshift_orders();
    existing[4] = target("doc", "character varying", Some(65_535), None, None);
    let drifts = schema.drift(&existing, Warehouse::Redshift);
    assert!(
        matches!(&drifts[..], [Drift::Incompatible { column, hint, .. }]
        if column == "doc" && hint.contains("json_in_redshift")),
        "{drifts:?}"
    );
    schema.json_in_redshift = JsonTarget::Varchar;
    assert_eq!(schema.drift(&existing, Warehouse::Redshift), vec![]);
    existing[4].character_maximum_length = Some(1000);
    assert_eq!(
        schema.drift(&existing, Warehouse::Redshift),
        vec![Drift::WidenVarchar {
            column: "doc".to_owned(),
            from: 1000,
            to: 65_535
        }]
    );
}

#[test]
fn narrower_varbyte_is_incompatible_because_redshift_cannot_widen_it() {
    let mut existing = redshift_orders();
    existing[5].character_maximum_length = Some(100);
    let drifts = orders().drift(&existing, Warehouse::Redshift);
    assert!(matches!(&drifts[..], [Drift::Incompatible { column, .. }] if column == "photo"));
}

#[test]
fn drift_ddl_adds_and_widens() {
    let drifts = vec![
        Drift::AddColumn {
            column: "new col".to_owned(),
            ddl_type: "VARCHAR(40)".to_owned(),
        },
        Drift::WidenVarchar {
            column: "name".to_owned(),
            from: 100,
            to: 800,
        },
        Drift::MissingInSource {
            column: "gone".to_owned(),
        },
    ];
    assert_eq!(
        drift_ddl("Analytics", "orders", &drifts, Warehouse::Redshift).unwrap(),
        [
            "ALTER TABLE \"analytics\".\"orders\" ADD COLUMN \"new col\" VARCHAR(40)",
            "ALTER TABLE \"analytics\".\"orders\" ALTER COLUMN \"name\" TYPE VARCHAR(800)",
        ]
    );
    assert_eq!(
        drift_ddl("analytics", "orders", &drifts[1..], Warehouse::Postgres).unwrap(),
        ["ALTER TABLE \"analytics\".\"orders\" ALTER COLUMN \"name\" TYPE text"]
    );
}

#[test]
fn type_arguments_parse_only_numbers() {
    assert_eq!(type_arguments("decimal(38,10)"), [38, 10]);
    assert_eq!(type_arguments("tinyint(1) unsigned"), [1]);
    assert_eq!(type_arguments("int"), Vec::<u64>::new());
    assert_eq!(type_arguments("enum('1')"), Vec::<u64>::new());
    assert_eq!(base_type("INT(10) unsigned zerofill"), "int");
}
