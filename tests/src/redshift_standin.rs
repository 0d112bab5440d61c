//! A stand-in for the Amazon Redshift Data API, for tests. moto's Data API never finishes a
//! statement (../shared/TOOLING.md), so this small HTTP server speaks the Data API's protocol
//! (AWS JSON 1.1: `POST /`, `X-Amz-Target: RedshiftData.<Operation>`) and runs the statements on
//! the local PostgreSQL. It is a test fixture, not a product: it does what tidemark's loader uses
//! and fails loudly on anything else.
//!
//! - `ExecuteStatement` (named `:parameters` written in as literals) runs in autocommit;
//!   `BatchExecuteStatement` runs its statements in ONE transaction, rolled back at the first
//!   failure (that sub-statement `FAILED`, the rest `ABORTED`). One PostgreSQL connection per
//!   statement id, closed when it ends, so temporary tables live exactly as long as in Redshift.
//! - `DescribeStatement` advances the visible status one step per call — `SUBMITTED`, then
//!   `STARTED`, then `FINISHED`/`FAILED`/`ABORTED` — never ahead of the real execution, so
//!   callers must poll. `Error` carries PostgreSQL's message as Redshift words it (`ERROR: …`).
//! - `GetStatementResult` returns `Records` of typed `Field`s (`longValue` for integers,
//!   `doubleValue`, `booleanValue`, `isNull`, else `stringValue`) with `ColumnMetadata`, for a
//!   statement or a batch's sub-statement (`<id>:<n>`).
//! - `CancelStatement` aborts a running statement (its transaction rolls back).
//! - A repeated `ClientToken` answers the first statement's id and runs nothing.
//!
//! Only Redshift-only syntax is translated, all of it here:
//!
//! | Redshift does | PostgreSQL gets instead |
//! |---|---|
//! | `COPY t FROM 's3://….manifest' IAM_ROLE '…' FORMAT AS PARQUET MANIFEST`: reads the manifest, fails on a missing `mandatory` file or a size other than `meta.content_length`, refuses a column list and a table whose column count differs from the file's ("COPY from columnar data formats", https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html), loads each file's columns by position | [`copy_from_manifest`] does exactly that on the local S3 endpoint and streams the rows with binary `COPY t FROM STDIN` (tidemark's own encoder) |
//! | `VARCHAR(n)` holds n BYTES: COPY fails on a longer string | PostgreSQL's `varchar(n)` counts characters, so [`copy_from_manifest`] checks every string's byte length against its column's n first |
//! | `DISTSTYLE …`, `DISTKEY (…)`, `SORTKEY (…)`, `ENCODE …`: data layout | dropped |
//! | `PRIMARY KEY (…)`: informational, never enforced ("Defining table constraints", https://docs.aws.amazon.com/redshift/latest/dg/t_Defining_constraints.html) | kept, and PostgreSQL enforces it: tidemark declares a key only where it guarantees one row per key (`merge`, `replace`), so a duplicate is a loader defect, which the stand-in turns into a failure. `information_schema.table_constraints` names it, as the guide finds a constraint's name to drop it (r_ALTER_TABLE_examples_basic) |
//! | `SUPER`: semi-structured values | `jsonb` |
//! | `VARBYTE(n)`: binary of at most n bytes | `bytea` |
//! | `JSON_PARSE(col)`: text → `SUPER`; duplicate object keys fail unless `json_parse_dedup_attributes` is on, then the last wins (https://docs.aws.amazon.com/redshift/latest/dg/super-configurations.html) | `pg_temp.tidemark_json_parse(col)`, which does the same ([`JSON_PARSE_FUNCTIONS`]) |
//! | `SET json_parse_dedup_attributes TO ON` | a session setting that function reads |
//! | `JSON_SERIALIZE(col)`: a SUPER's compact JSON text | `jsonb`'s text without the blanks after `:` and `,` (keys and strings free of `": "` and `, "`, as tidemark's checks use) |
//! | `FROM_HEX('…')`: VARBYTE from hex | `decode('…', 'hex')` |
//! | `STRTOL(text, base)`: the text as a BIGINT in that base (https://docs.aws.amazon.com/redshift/latest/dg/r_STRTOL.html) | `pg_temp.tidemark_strtol`, base 16 only, anything else refused ([`STANDIN_FUNCTIONS`]) |
//! | `FROM_VARBYTE(varbyte, format)`: the bytes as text in `hex`, `base64`, `binary` or `utf8` (https://docs.aws.amazon.com/redshift/latest/dg/r_FROM_VARBYTE.html) | `pg_temp.tidemark_from_varbyte`, `hex` only (lowercase digits), anything else refused |
//! | `ALTER TABLE … ALTER COLUMN … TYPE` only to VARCHAR, never inside a transaction block, never on a column of a PRIMARY KEY, UNIQUE or FOREIGN KEY constraint or with a default; one `ADD COLUMN` per `ALTER TABLE` (https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html) | anything else refused ([`refuse_what_redshift_refuses`], [`refuse_an_alter_type_redshift_refuses`]) |
//! | Names are 1 to 127 bytes ("Names and identifiers", https://docs.aws.amazon.com/redshift/latest/dg/r_names.html) | a longer quoted name refused (PostgreSQL would cut it at 63 bytes: names of 64 to 127 bytes are beyond this stand-in) |
//! | COPY: "The maximum size of a single input row from any source is 4 MB" (https://docs.aws.amazon.com/redshift/latest/dg/r_COPY_usage_notes.html) | a row whose values add up to more is refused |
//! | An aggregate window function (`SUM`, `COUNT`, `AVG`, `MIN`, `MAX`, …) whose window has an ORDER BY needs a frame clause ("Window function syntax summary", https://docs.aws.amazon.com/redshift/latest/dg/r_Window_function_synopsis.html) | refused without `ROWS …` ([`aggregate_window_without_frame`]); PostgreSQL would default the frame |
//! | `TRUNCATE` commits the transaction it runs in (https://docs.aws.amazon.com/redshift/latest/dg/r_TRUNCATE.html) | refused: the loader must never send it |
//! | Data API: 1 to 40 statements a request, each under 100 KB (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html) | `ValidationException` |
//! | `svv_columns`: every column, Redshift type names | `information_schema.columns`, `jsonb` named `super` and `bytea` `binary varying` |
//!
//! Everything else runs as written: where PostgreSQL and Redshift disagree on SQL the loader
//! writes, the test fails instead of the table growing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::{pin_mut, SinkExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use regex::{Captures, Regex};
use serde_json::{json, Value};
use tidemark::load::pg_copy;
use tidemark::naming::TableId;
use tidemark::schema::{BooleanSource, Column, ColumnType, JsonTarget, TableSchema, TextSource};
use tidemark::storage::{self, Bucket};
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

/// One row of the translation table: a Redshift-only construct and its PostgreSQL rewrite.
struct Translation {
    /// The construct (regex), matched outside string literals and quoted identifiers.
    pattern: &'static str,
    /// Its replacement; `$arg` is the construct's `arg` group.
    replacement: &'static str,
}

/// The textual rows of the module's table, applied in order (COPY is [`copy_from_manifest`]).
const TRANSLATIONS: &[Translation] = &[
    Translation {
        pattern: r#"\b(?:DISTSTYLE\s+\w+|DISTKEY\s*\((?:"(?:[^"]|"")*"|[^)"])*\)|(?:COMPOUND\s+|INTERLEAVED\s+)?SORTKEY\s*\((?:"(?:[^"]|"")*"|[^)"])*\)|ENCODE\s+\w+)"#,
        replacement: "",
    },
    Translation {
        pattern: r"\bSUPER\b",
        replacement: "jsonb",
    },
    Translation {
        pattern: r"\bVARBYTE\b(?:\s*\(\s*\d+\s*\))?",
        replacement: "bytea",
    },
    Translation {
        pattern: r#"\bJSON_PARSE\s*\(\s*(?P<arg>"(?:[^"]|"")*"|\w+)\s*\)"#,
        replacement: "pg_temp.tidemark_json_parse(CAST($arg AS text))",
    },
    Translation {
        pattern: r#"\bJSON_SERIALIZE\s*\(\s*(?P<arg>"(?:[^"]|"")*"|\w+)\s*\)"#,
        replacement: "replace(replace(CAST($arg AS text), '\": ', '\":'), ', \"', ',\"')",
    },
    Translation {
        pattern: r"\bFROM_HEX\s*\(\s*(?P<arg>'[0-9a-fA-F]*')\s*\)",
        replacement: "decode($arg, 'hex')",
    },
    Translation {
        pattern: r"\bSTRTOL\s*\(",
        replacement: "pg_temp.tidemark_strtol(",
    },
    Translation {
        pattern: r"\bFROM_VARBYTE\s*\(",
        replacement: "pg_temp.tidemark_from_varbyte(",
    },
    Translation {
        pattern: r"\bSET\s+json_parse_dedup_attributes\s+(?:TO|=)\s+(?P<arg>ON|OFF|TRUE|FALSE)\b",
        replacement: "SET tidemark_standin.json_parse_dedup_attributes TO '$arg'",
    },
    Translation {
        pattern: r"\b(?:pg_catalog\.)?svv_columns\b",
        replacement: "(SELECT table_schema, table_name, column_name, ordinal_position, \
             CAST(CASE data_type WHEN 'jsonb' THEN 'super' WHEN 'bytea' THEN 'binary varying' \
             ELSE data_type END AS VARCHAR(128)) AS data_type, character_maximum_length, \
             numeric_precision, numeric_scale, is_nullable FROM information_schema.columns) AS svv_columns",
    },
];

/// Redshift's JSON_PARSE on every statement's session, as PL/pgSQL in `pg_temp` (gone with the
/// session): the document as `jsonb`, keeping the last of duplicate keys only when
/// `json_parse_dedup_attributes` is on, and refusing them otherwise ("Parsing options for
/// SUPER", https://docs.aws.amazon.com/redshift/latest/dg/super-configurations.html).
/// PostgreSQL's `jsonb` alone keeps the last silently; its `json` keeps every key, so the
/// duplicates can be found.
const JSON_PARSE_FUNCTIONS: &str = r#"
CREATE FUNCTION pg_temp.tidemark_json_duplicates(doc json) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE item json;
BEGIN
    IF json_typeof(doc) = 'object' THEN
        IF (SELECT count(*) <> count(DISTINCT key) FROM json_object_keys(doc) AS key) THEN
            RETURN true;
        END IF;
        FOR item IN SELECT value FROM json_each(doc) LOOP
            IF pg_temp.tidemark_json_duplicates(item) THEN RETURN true; END IF;
        END LOOP;
    ELSIF json_typeof(doc) = 'array' THEN
        FOR item IN SELECT value FROM json_array_elements(doc) LOOP
            IF pg_temp.tidemark_json_duplicates(item) THEN RETURN true; END IF;
        END LOOP;
    END IF;
    RETURN false;
END $f$;
CREATE FUNCTION pg_temp.tidemark_json_parse(doc text) RETURNS jsonb LANGUAGE plpgsql AS $f$
BEGIN
    IF doc IS NULL THEN RETURN NULL; END IF;
    IF lower(coalesce(current_setting('tidemark_standin.json_parse_dedup_attributes', true), 'off')) NOT IN ('on', 'true')
        AND pg_temp.tidemark_json_duplicates(CAST(doc AS json)) THEN
        RAISE EXCEPTION 'JSON parsing error: duplicate key in an object (set json_parse_dedup_attributes to keep the last)';
    END IF;
    RETURN CAST(doc AS jsonb);
END $f$;
"#;

/// Redshift's STRTOL and FROM_VARBYTE on every statement's session, as far as tidemark uses
/// them (verify's fingerprints): base 16, and the `hex` format. Anything else fails loudly.
const STANDIN_FUNCTIONS: &str = r#"
CREATE FUNCTION pg_temp.tidemark_strtol(num text, base integer) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN
    IF base <> 16 THEN RAISE EXCEPTION 'the stand-in imitates STRTOL in base 16 only, not %', base; END IF;
    IF num IS NULL THEN RETURN NULL; END IF;
    IF num !~ '^[0-9a-fA-F]{1,15}$' THEN RAISE EXCEPTION 'invalid input for STRTOL: "%"', num; END IF;
    RETURN CAST(CAST('x' || lpad(num, 16, '0') AS bit(64)) AS bigint);
END $f$;
CREATE FUNCTION pg_temp.tidemark_from_varbyte(bytes bytea, format text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    IF lower(format) <> 'hex' THEN RAISE EXCEPTION 'the stand-in imitates FROM_VARBYTE with hex only, not %', format; END IF;
    RETURN encode(bytes, 'hex');
END $f$;
"#;

/// String literals and quoted identifiers, which no translation may touch.
const QUOTED: &str = r#"'(?:[^']|'')*'|"(?:[^"]|"")*""#;

static COMPILED: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    TRANSLATIONS
        .iter()
        .map(|t| (protected(t.pattern), t.replacement))
        .collect()
});

static ALTER_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    let ident = r#"(?:"(?:[^"]|"")*"|\w+)"#;
    Regex::new(&format!(r#"(?is)^\s*ALTER\s+TABLE\s+(?P<table>{ident}(?:\.{ident})?)\s+ALTER\s+COLUMN\s+(?P<column>{ident})\s+TYPE\s+(?P<type>\w+)"#))
        .expect("the ALTER TYPE pattern compiles")
});

/// Statements PostgreSQL would run but Redshift refuses, refused here as Redshift words it:
/// `ALTER COLUMN … TYPE` to anything but VARCHAR (r_ALTER_TABLE: "ALTER COLUMN column_name TYPE
/// updated_varchar_data_type_size", https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html).
fn refuse_what_redshift_refuses(sql: &str) -> Result<(), String> {
    let words = translate_outside_quotes_upper(sql);
    // r_ALTER_TABLE: "You can add only one column in each ALTER TABLE statement."
    if words.starts_with("ALTER TABLE") && words.matches(" ADD COLUMN ").count() > 1 {
        return Err("ERROR: ALTER TABLE ADD COLUMN adds one column per statement".to_owned());
    }
    // r_TRUNCATE: "TRUNCATE commits the transaction in which it is run": inside a load's batch
    // it would commit half a load. tidemark never sends it; the stand-in refuses it.
    if words.starts_with("TRUNCATE") {
        return Err("ERROR: the Redshift stand-in refuses TRUNCATE: in Redshift it commits the transaction it runs in (https://docs.aws.amazon.com/redshift/latest/dg/r_TRUNCATE.html); delete rows with DELETE".to_owned());
    }
    if let Some(long) = QUOTED_NAME
        .find_iter(sql)
        .map(|name| name.as_str())
        .find(|name| name.len() - 2 > REDSHIFT_NAME_MAX_BYTES)
    {
        return Err(format!(
            "ERROR: the name {long} is {} bytes long; names are at most {REDSHIFT_NAME_MAX_BYTES} bytes",
            long.len() - 2
        ));
    }
    if let Some(function) = aggregate_window_without_frame(&words) {
        return Err(format!(
            "ERROR: Aggregate window functions with an ORDER BY clause require a frame clause ({function} … OVER (… ORDER BY …) without ROWS)"
        ));
    }
    if let Some(alter) = ALTER_TYPE.captures(sql) {
        if !alter["type"].eq_ignore_ascii_case("varchar") {
            return Err(format!(
                "ERROR: target data type \"{}\" is not supported: ALTER COLUMN TYPE changes only VARCHAR columns",
                &alter["type"]
            ));
        }
    }
    Ok(())
}

/// r_Window_function_synopsis ("Window function syntax summary",
/// https://docs.aws.amazon.com/redshift/latest/dg/r_Window_function_synopsis.html): an aggregate
/// window function whose window has an ORDER BY needs a frame clause (`ROWS …`), which
/// PostgreSQL would default. The first such function's name in `words` (upper-cased outside
/// quotes), if any.
fn aggregate_window_without_frame(words: &str) -> Option<&str> {
    const AGGREGATES: [&str; 7] = ["SUM", "COUNT", "AVG", "MIN", "MAX", "STDDEV", "VARIANCE"];
    let bytes = words.as_bytes();
    let mut from = 0;
    while let Some(found) = words[from..].find("OVER") {
        let over = from + found;
        from = over + 4;
        let open = over + 4 + words[over + 4..].len() - words[over + 4..].trim_start().len();
        if bytes.get(open) != Some(&b'(') {
            continue;
        }
        // The window: up to the parenthesis that closes it.
        let mut depth = 0;
        let close = (open..bytes.len()).find(|&i| {
            match bytes[i] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            depth == 0
        })?;
        let window = &words[open..close];
        if !window.contains("ORDER BY") || window.contains("ROWS ") || window.contains("RANGE ") {
            continue;
        }
        // The function: the name before the call's parentheses, which end just before OVER.
        let call_end = words[..over].trim_end().len();
        if bytes.get(call_end.wrapping_sub(1)) != Some(&b')') {
            continue;
        }
        let mut depth = 0;
        let call_open = (0..call_end).rev().find(|&i| {
            match bytes[i] {
                b')' => depth += 1,
                b'(' => depth -= 1,
                _ => {}
            }
            depth == 0
        })?;
        let name = words[..call_open]
            .trim_end()
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        if AGGREGATES.contains(&name) {
            return Some(name);
        }
    }
    None
}

/// Redshift's longest name, in bytes (r_names).
const REDSHIFT_NAME_MAX_BYTES: usize = 127;

/// A quoted identifier (literals are not matched: they use single quotes).
static QUOTED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""(?:[^"]|"")*""#).expect("the quoted-name pattern compiles"));

/// r_ALTER_TABLE on `ALTER COLUMN … TYPE`: "You can't alter columns with UNIQUE, PRIMARY KEY, or
/// FOREIGN KEY"; "You can't alter columns with default values"; it cannot run "inside a
/// transaction block (BEGIN ... END)". PostgreSQL allows all three, so the stand-in asks its
/// catalog first.
async fn refuse_an_alter_type_redshift_refuses(
    client: &tokio_postgres::Client,
    sql: &str,
    in_transaction: bool,
) -> Result<(), String> {
    let Some(alter) = ALTER_TYPE.captures(sql) else {
        return Ok(());
    };
    if in_transaction {
        return Err(
            "ERROR: ALTER TABLE ALTER COLUMN cannot run inside a transaction block".to_owned(),
        );
    }
    let column = unquote(&alter["column"]);
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint AS c JOIN pg_attribute AS a \
               ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
               WHERE c.conrelid = to_regclass($1) AND a.attname = $2 AND c.contype IN ('p', 'u', 'f')), \
             EXISTS (SELECT 1 FROM pg_attrdef AS d JOIN pg_attribute AS a \
               ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
               WHERE d.adrelid = to_regclass($1) AND a.attname = $2)",
            &[&&alter["table"], &column],
        )
        .await
        .map_err(redshift_error)?;
    let (constrained, defaulted): (bool, bool) = (row.get(0), row.get(1));
    if constrained {
        return Err(format!("ERROR: cannot alter column \"{column}\": it is part of a PRIMARY KEY, UNIQUE or FOREIGN KEY constraint"));
    }
    if defaulted {
        return Err(format!(
            "ERROR: cannot alter column \"{column}\": it has a default value"
        ));
    }
    Ok(())
}

/// An identifier as written in SQL, unquoted.
fn unquote(identifier: &str) -> String {
    match identifier
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) => inner.replace("\"\"", "\""),
        None => identifier.to_ascii_lowercase(),
    }
}

/// `sql` upper-cased with string literals and quoted identifiers blanked and whitespace folded,
/// for matching keywords.
fn translate_outside_quotes_upper(sql: &str) -> String {
    let blanked = Regex::new(QUOTED)
        .map(|quoted| quoted.replace_all(sql, "''").into_owned())
        .unwrap_or_else(|_| sql.to_owned());
    format!(
        "{} ",
        blanked
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase()
    )
}

static COPY: LazyLock<Regex> = LazyLock::new(|| {
    let ident = r#"(?:"(?:[^"]|"")*"|\w+)"#;
    Regex::new(&format!(
        r#"(?is)^\s*COPY\s+(?P<table>{ident}(?:\.{ident})?)\s*(?:\((?P<columns>(?:"(?:[^"]|"")*"|[^)"])*)\))?\s*FROM\s+'(?P<manifest>[^']*)'\s+IAM_ROLE\s+'(?P<role>[^']*)'\s+FORMAT\s+AS\s+PARQUET\s+MANIFEST\s*;?\s*$"#
    ))
    .expect("the COPY pattern compiles")
});

/// `pattern` (case-insensitive) as a `hit` group after the quoted alternatives, so that a match
/// starting at a quote is a literal or identifier and is kept as it is.
fn protected(pattern: &str) -> Regex {
    Regex::new(&format!("(?i){QUOTED}|(?P<hit>{pattern})")).expect("a translation compiles")
}

/// `sql` with every row of [`TRANSLATIONS`] applied outside literals and quoted identifiers.
pub fn translate(sql: &str) -> String {
    COMPILED
        .iter()
        .fold(sql.to_owned(), |text, (regex, replacement)| {
            regex
                .replace_all(&text, |caps: &Captures| match caps.name("hit") {
                    None => caps[0].to_owned(),
                    Some(_) => {
                        let mut out = String::new();
                        caps.expand(replacement, &mut out);
                        out
                    }
                })
                .into_owned()
        })
}

/// `sql` with the Data API's named parameters (`:name`) written in as string literals, which
/// Redshift casts as it needs.
fn bind_parameters(sql: &str, parameters: &[(String, String)]) -> String {
    parameters
        .iter()
        .fold(sql.to_owned(), |text, (name, value)| {
            let regex = protected(&format!(":{}\\b", regex::escape(name)));
            let literal = format!("'{}'", value.replace('\'', "''"));
            regex
                .replace_all(&text, |caps: &Captures| match caps.name("hit") {
                    None => caps[0].to_owned(),
                    Some(_) => literal.clone(),
                })
                .into_owned()
        })
}

/// Where a statement (or sub-statement) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Submitted,
    Started,
    Finished,
    Failed,
    Aborted,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Submitted => "SUBMITTED",
            Phase::Started => "STARTED",
            Phase::Finished => "FINISHED",
            Phase::Failed => "FAILED",
            Phase::Aborted => "ABORTED",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Phase::Submitted => 0,
            Phase::Started => 1,
            _ => 2,
        }
    }

    /// What a caller may see after `describes` calls: one step per call, never ahead of `self`.
    fn visible(self, describes: u32) -> Phase {
        let step = match describes {
            0 | 1 => Phase::Submitted,
            2 => Phase::Started,
            _ => return self,
        };
        if self.rank() <= step.rank() {
            self
        } else {
            step
        }
    }
}

/// A result set, as PostgreSQL's text protocol returned it.
#[derive(Debug, Clone)]
struct ResultSet {
    columns: Vec<(String, Type)>,
    rows: Vec<Vec<Option<String>>>,
}

#[derive(Debug)]
struct SubStatement {
    sql: String,
    phase: Phase,
    error: Option<String>,
    rows: i64,
    result: Option<ResultSet>,
}

#[derive(Debug)]
struct Record {
    batch: bool,
    subs: Vec<SubStatement>,
    phase: Phase,
    error: Option<String>,
    describes: u32,
    created_at: f64,
    updated_at: f64,
    target: Value,
    task: Option<tokio::task::AbortHandle>,
}

/// A Data API error: `__type` and `message`.
struct ApiError {
    code: &'static str,
    message: String,
}

impl ApiError {
    fn validation(message: impl Into<String>) -> Self {
        ApiError {
            code: "ValidationException",
            message: message.into(),
        }
    }
}

struct State {
    postgres_url: String,
    s3: aws_sdk_s3::Client,
    statements: Mutex<HashMap<String, Record>>,
    tokens: Mutex<HashMap<String, String>>,
}

/// The running stand-in; stops serving when dropped.
pub struct RedshiftStandin {
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RedshiftStandin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RedshiftStandin {
    /// Serves on 127.0.0.1 (a free port), running statements on `TIDEMARK_PG_URL` and reading
    /// COPY manifests and files from the S3 endpoint of the environment (the local stack).
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            postgres_url: crate::postgres_url(),
            s3: storage::client_from_env().await,
            statements: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        });
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(serve(&state, request).await) }
                    });
                    // A client that hangs up mid-request is no concern of the test.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RedshiftStandin { url, server })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> &str {
        &self.url
    }

    /// A Data API client for the stand-in: `shared`'s settings with the endpoint overridden, so
    /// S3 and Secrets Manager stay on the local stack.
    pub fn client(&self, shared: &aws_config::SdkConfig) -> aws_sdk_redshiftdata::Client {
        let config = aws_sdk_redshiftdata::config::Builder::from(shared)
            .endpoint_url(&self.url)
            .build();
        aws_sdk_redshiftdata::Client::from_conf(config)
    }
}

/// A `kind: redshift, access: data_api` connection whose target tables live in `schema` of the
/// stand-in's PostgreSQL.
pub fn data_api_connection(schema: &str) -> tidemark::config::RedshiftConnection {
    tidemark::config::RedshiftConnection {
        access: tidemark::config::RedshiftAccess::DataApi {
            target: tidemark::config::DataApiTarget::Workgroup("standin".to_owned()),
            tunnel: None,
        },
        database: "dev".to_owned(),
        schema: schema.to_owned(),
        db_user: None,
        secret_arn: None,
        iam_role: "arn:aws:iam::123456789012:role/tidemark-copy".to_owned(),
        password: None,
        statement_timeout: tidemark::config::HumanDuration(std::time::Duration::from_secs(60)),
        tls: tidemark::config::TlsMode::Disabled,
        tls_ca_file: None,
        tls_ca_secret: None,
    }
}

/// Services for `config` with its warehouse connection `wh` loading into `schema` of the local
/// PostgreSQL: as the configured `kind: postgres` target when `standin` is `None`, else as a
/// `kind: redshift, access: data_api` target whose Data API calls go to `standin`.
pub async fn services_with_target(
    mut config: tidemark::config::Config,
    schema: &str,
    standin: Option<&RedshiftStandin>,
) -> anyhow::Result<tidemark::services::Services> {
    use tidemark::config::Connection;
    match standin {
        None => {
            let Some(Connection::Postgres(target)) = config.connections.get_mut("wh") else {
                anyhow::bail!("the configuration has no postgres target `wh`");
            };
            target.schema = schema.to_owned();
        }
        Some(_) => {
            config.connections.insert(
                "wh".into(),
                Connection::Redshift(Box::new(data_api_connection(schema))),
            );
        }
    }
    let services = tidemark::services::Services::from_env(config, None).await;
    Ok(match standin {
        None => services,
        Some(standin) => {
            let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            services.with_redshift_data(standin.client(&shared))
        }
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

async fn serve(state: &Arc<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("RedshiftData."))
        .unwrap_or_default()
        .to_owned();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => return respond(Err(ApiError::validation(format!("unreadable body: {err}")))),
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(err) => return respond(Err(ApiError::validation(format!("invalid JSON: {err}")))),
    };
    respond(match operation.as_str() {
        "ExecuteStatement" => submit(state, &input, false),
        "BatchExecuteStatement" => submit(state, &input, true),
        "DescribeStatement" => describe(state, &input),
        "GetStatementResult" => result(state, &input),
        "CancelStatement" => cancel(state, &input),
        other => Err(ApiError {
            code: "UnknownOperationException",
            message: format!("the stand-in does not implement `{other}`"),
        }),
    })
}

fn respond(outcome: Result<Value, ApiError>) -> Response<Full<Bytes>> {
    let (status, body) = match outcome {
        Ok(body) => (StatusCode::OK, body),
        Err(err) => (
            StatusCode::BAD_REQUEST,
            json!({"__type": err.code, "message": err.message}),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(id) = uuid::Uuid::new_v4().to_string().parse() {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

fn text<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

fn submit(state: &Arc<State>, input: &Value, batch: bool) -> Result<Value, ApiError> {
    let database = text(input, "Database")
        .ok_or_else(|| ApiError::validation("Database must be specified"))?;
    let mut target = json!({"Database": database});
    match (
        text(input, "WorkgroupName"),
        text(input, "ClusterIdentifier"),
    ) {
        (Some(workgroup), None) => target["WorkgroupName"] = json!(workgroup),
        (None, Some(cluster)) => target["ClusterIdentifier"] = json!(cluster),
        _ => {
            return Err(ApiError::validation(
                "Exactly one of ClusterIdentifier and WorkgroupName must be specified",
            ))
        }
    }
    for field in ["DbUser", "SecretArn"] {
        if let Some(value) = text(input, field) {
            target[field] = json!(value);
        }
    }
    let sqls: Vec<String> = if batch {
        input
            .get("Sqls")
            .and_then(Value::as_array)
            .map(|sqls| {
                sqls.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        let parameters: Vec<(String, String)> = input
            .get("Parameters")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((text(p, "name")?.to_owned(), text(p, "value")?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        text(input, "Sql")
            .map(|sql| vec![bind_parameters(sql, &parameters)])
            .unwrap_or_default()
    };
    if sqls.is_empty() || sqls.len() > 40 {
        return Err(ApiError::validation(
            "a request runs between 1 and 40 SQL statements",
        ));
    }
    if sqls.iter().any(|sql| sql.len() >= 100_000) {
        return Err(ApiError::validation(
            "Cannot process query string larger than 100kB",
        ));
    }
    let token = text(input, "ClientToken").map(str::to_owned);
    let mut tokens = state
        .tokens
        .lock()
        .expect("the token map is never poisoned");
    if let Some(id) = token.as_ref().and_then(|t| tokens.get(t)) {
        let mut answer = target;
        answer["Id"] = json!(id);
        return Ok(answer);
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(token) = token {
        tokens.insert(token, id.clone());
    }
    drop(tokens);
    let created_at = now();
    let record = Record {
        batch,
        subs: sqls
            .iter()
            .map(|sql| SubStatement {
                sql: sql.clone(),
                phase: Phase::Submitted,
                error: None,
                rows: -1,
                result: None,
            })
            .collect(),
        phase: Phase::Submitted,
        error: None,
        describes: 0,
        created_at,
        updated_at: created_at,
        target: target.clone(),
        task: None,
    };
    state.statements().insert(id.clone(), record);
    let task = tokio::spawn(run(state.clone(), id.clone(), sqls, batch));
    state.update(&id, |record| record.task = Some(task.abort_handle()));
    let mut answer = target;
    answer["Id"] = json!(id);
    answer["CreatedAt"] = json!(created_at);
    Ok(answer)
}

impl State {
    fn statements(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.statements
            .lock()
            .expect("the statement map is never poisoned")
    }

    /// Runs `action` on the statement a request's `Id` names.
    fn with_statement<T>(
        &self,
        input: &Value,
        action: impl FnOnce(&str, &mut Record) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let id = statement_id(input)?;
        let mut statements = self.statements();
        let record = statements.get_mut(id).ok_or_else(|| not_found(id))?;
        action(id, record)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Record)) {
        if let Some(record) = self.statements().get_mut(id) {
            change(record);
            record.updated_at = now();
        }
    }
}

/// What one statement did.
struct Done {
    rows: i64,
    result: Option<ResultSet>,
}

async fn run(state: Arc<State>, id: String, sqls: Vec<String>, batch: bool) {
    state.update(&id, |r| r.phase = Phase::Started);
    let outcome: Result<(), String> = async {
        let (client, connection) =
            tokio_postgres::connect(&state.postgres_url, tokio_postgres::NoTls)
                .await
                .map_err(|err| format!("FATAL: could not connect to the database: {err}"))?;
        tokio::spawn(async move {
            // The connection ends with the statement; its error has no one to go to.
            let _ = connection.await;
        });
        client
            .batch_execute(JSON_PARSE_FUNCTIONS)
            .await
            .map_err(redshift_error)?;
        client
            .batch_execute(STANDIN_FUNCTIONS)
            .await
            .map_err(redshift_error)?;
        if batch {
            client
                .batch_execute("BEGIN")
                .await
                .map_err(redshift_error)?;
        }
        for (index, sql) in sqls.iter().enumerate() {
            state.update(&id, |r| r.subs[index].phase = Phase::Started);
            match run_statement(&state, &client, sql, batch).await {
                Ok(done) => state.update(&id, |r| {
                    let sub = &mut r.subs[index];
                    sub.phase = Phase::Finished;
                    sub.rows = done.rows;
                    sub.result = done.result;
                }),
                Err(message) => {
                    state.update(&id, |r| {
                        r.subs[index].phase = Phase::Failed;
                        r.subs[index].error = Some(message.clone());
                    });
                    if batch {
                        // Dropping the connection would roll back too; say it explicitly.
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    return Err(message);
                }
            }
        }
        if batch {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(redshift_error)?;
        }
        Ok(())
    }
    .await;
    state.update(&id, |record| {
        match outcome {
            Ok(()) => record.phase = Phase::Finished,
            Err(message) => {
                record.phase = Phase::Failed;
                record.error = Some(message);
            }
        }
        for sub in &mut record.subs {
            if sub.phase.rank() < 2 {
                sub.phase = Phase::Aborted;
            }
        }
    });
}

/// PostgreSQL's error as Redshift words it.
fn redshift_error(err: tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("ERROR: {}\n  Detail: {detail}", db.message()),
            None => format!("ERROR: {}", db.message()),
        },
        None => format!("ERROR: {err}"),
    }
}

async fn run_statement(
    state: &State,
    client: &tokio_postgres::Client,
    sql: &str,
    in_transaction: bool,
) -> Result<Done, String> {
    if sql
        .trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("COPY"))
    {
        let copy = COPY.captures(sql).ok_or_else(|| {
            "ERROR: the Redshift stand-in runs only `COPY t FROM 's3://….manifest' IAM_ROLE '…' FORMAT AS PARQUET MANIFEST`".to_owned()
        })?;
        let rows = copy_from_manifest(state, client, &copy).await?;
        return Ok(Done {
            rows: i64::try_from(rows).unwrap_or(i64::MAX),
            result: None,
        });
    }
    refuse_what_redshift_refuses(sql)?;
    refuse_an_alter_type_redshift_refuses(client, sql, in_transaction).await?;
    let sql = translate(sql);
    let first_word = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let columns = if matches!(first_word.as_str(), "SELECT" | "WITH" | "(SELECT") {
        let statement = client.prepare(&sql).await.map_err(redshift_error)?;
        statement
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().clone()))
            .collect()
    } else {
        Vec::new()
    };
    let messages = client.simple_query(&sql).await.map_err(redshift_error)?;
    let mut rows = Vec::new();
    let mut affected = 0;
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => affected += n,
            _ => {}
        }
    }
    let count = if columns.is_empty() {
        affected
    } else {
        rows.len() as u64
    };
    Ok(Done {
        rows: i64::try_from(count).unwrap_or(i64::MAX),
        result: (!columns.is_empty()).then_some(ResultSet { columns, rows }),
    })
}

/// `s3://bucket/key` → (bucket, key).
fn s3_location(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?.split_once('/')
}

async fn get_object(state: &State, uri: &str) -> Result<Option<Bytes>, String> {
    let (bucket, key) =
        s3_location(uri).ok_or_else(|| format!("ERROR: `{uri}` is not an s3:// URL"))?;
    Bucket::new(state.s3.clone(), bucket)
        .get(key)
        .await
        .map(|object| object.map(|o| o.body))
        .map_err(|err| format!("ERROR: S3ServiceException: {err} (reading {uri})"))
}

/// Redshift's `COPY … FORMAT AS PARQUET MANIFEST`, on the local S3 endpoint: every entry checked
/// first (mandatory files present, sizes equal to `meta.content_length`), then each file's
/// columns loaded by position into the listed columns. Returns the rows loaded.
async fn copy_from_manifest(
    state: &State,
    client: &tokio_postgres::Client,
    copy: &Captures<'_>,
) -> Result<u64, String> {
    let manifest_uri = &copy["manifest"];
    if !copy["role"].starts_with("arn:aws:iam::") {
        return Err(format!(
            "ERROR: Invalid credentials. IAM_ROLE must be an IAM role ARN, not `{}`",
            &copy["role"]
        ));
    }
    let body = get_object(state, manifest_uri).await?.ok_or_else(|| {
        format!("ERROR: Problem reading manifest file - S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey (manifest {manifest_uri})")
    })?;
    let manifest: Value = serde_json::from_slice(&body).map_err(|_| {
        format!("ERROR: Manifest file is not in correct json format: {manifest_uri}")
    })?;
    let entries = manifest
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("ERROR: Manifest file has no \"entries\": {manifest_uri}"))?;
    let mut files = Vec::new();
    for entry in entries {
        let url = text(entry, "url")
            .ok_or_else(|| format!("ERROR: Manifest entry without \"url\" in {manifest_uri}"))?;
        let mandatory = entry
            .get("mandatory")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let length = entry
            .pointer("/meta/content_length")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("ERROR: COPY from Parquet needs meta.content_length in every manifest entry; {url} has none"))?;
        let Some(object) = get_object(state, url).await? else {
            if mandatory {
                return Err(format!("ERROR: Manifest file entry is mandatory but the file was not found: {url} (S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey)"));
            }
            continue;
        };
        if object.len() as u64 != length {
            return Err(format!("ERROR: Spectrum Scan Error: File '{url}' has an invalid content length: meta.content_length is {length} but the object is {} bytes", object.len()));
        }
        files.push((url.to_owned(), object));
    }
    if files.is_empty() {
        return Err(format!(
            "ERROR: no file of manifest {manifest_uri} exists; COPY needs at least one"
        ));
    }
    // "COPY from columnar data formats": no column list among the columnar parameters, and the
    // table's column count must equal the file's.
    if copy.name("columns").is_some() {
        return Err("ERROR: COPY from a columnar format (PARQUET) takes no column list: columns map by position, and the table must have exactly the file's columns".to_owned());
    }
    let octet_limits = varchar_octet_limits(client, &copy["table"]).await?;
    let table_columns = octet_limits.len();
    let statement = format!("COPY {} FROM STDIN WITH (FORMAT binary)", &copy["table"]);
    let mut loaded = 0;
    for (url, body) in files {
        let scan_error =
            |reason: String| format!("ERROR: Spectrum Scan Error: File '{url}': {reason}");
        let reader = ParquetRecordBatchReaderBuilder::try_new(body)
            .map_err(|err| scan_error(format!("not a Parquet file ({err})")))?;
        let schema = positional_schema(reader.schema()).map_err(|e| scan_error(e.to_string()))?;
        if schema.columns.len() != table_columns {
            return Err(scan_error(format!(
                "Unmatched number of columns between table and file. Table columns: {table_columns}, Data columns: {}",
                schema.columns.len()
            )));
        }
        let batches = reader.build().map_err(|err| scan_error(err.to_string()))?;
        let sink = client.copy_in(&statement).await.map_err(redshift_error)?;
        pin_mut!(sink);
        sink.send(pg_copy::header()).await.map_err(redshift_error)?;
        for batch in batches {
            let batch = batch.map_err(|err| scan_error(err.to_string()))?;
            check_octet_lengths(&batch, &octet_limits).map_err(scan_error)?;
            check_row_sizes(&batch).map_err(scan_error)?;
            let mut buf = BytesMut::new();
            pg_copy::encode_batch(&batch, &schema, &mut buf)
                .map_err(|e| scan_error(e.to_string()))?;
            sink.send(buf.freeze()).await.map_err(redshift_error)?;
        }
        sink.send(pg_copy::trailer())
            .await
            .map_err(redshift_error)?;
        loaded += sink.as_mut().finish().await.map_err(redshift_error)?;
    }
    Ok(loaded)
}

/// Every column of `table` in order, with the name and declared length of each that is a
/// `varchar(n)` (`None` for the others): Redshift's n is bytes.
async fn varchar_octet_limits(
    client: &tokio_postgres::Client,
    table: &str,
) -> Result<Vec<Option<(String, usize)>>, String> {
    let columns = client
        .query(
            "SELECT attname::text, CASE WHEN atttypid = 'varchar'::regtype AND atttypmod > 4 \
             THEN atttypmod - 4 END FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[&table],
        )
        .await
        .map_err(redshift_error)?;
    if columns.is_empty() {
        return Err(format!("ERROR: relation {table} does not exist"));
    }
    Ok(columns
        .iter()
        .map(|row| {
            let length: Option<i32> = row.get(1);
            length
                .and_then(|length| usize::try_from(length).ok())
                .map(|length| (row.get::<_, String>(0), length))
        })
        .collect())
}

/// Redshift's refusal of a string longer, in bytes, than its VARCHAR column.
fn check_octet_lengths(
    batch: &arrow_array::RecordBatch,
    limits: &[Option<(String, usize)>],
) -> Result<(), String> {
    use arrow_array::cast::AsArray;
    for (column, limit) in batch.columns().iter().zip(limits) {
        let (Some((name, length)), Some(strings)) = (limit, column.as_string_opt::<i32>()) else {
            continue;
        };
        if let Some(longest) = strings.iter().flatten().map(str::len).max() {
            if longest > *length {
                return Err(format!(
                    "The length of the data column {name} is longer than the length defined in the table. Table: {length}, Data: {longest}"
                ));
            }
        }
    }
    Ok(())
}

/// COPY's largest input row (r_COPY_usage_notes: "The maximum size of a single input row from any
/// source is 4 MB"), counted as the sum of the row's value sizes.
const MAX_COPY_ROW_BYTES: usize = 4 * 1024 * 1024;

fn check_row_sizes(batch: &arrow_array::RecordBatch) -> Result<(), String> {
    use arrow_array::cast::AsArray;
    let mut sizes = vec![0usize; batch.num_rows()];
    for column in batch.columns() {
        for (row, size) in sizes.iter_mut().enumerate() {
            *size += if let Some(strings) = column.as_string_opt::<i32>() {
                strings.value_length(row) as usize
            } else if let Some(bytes) = column.as_binary_opt::<i32>() {
                bytes.value_length(row) as usize
            } else {
                column.data_type().primitive_width().unwrap_or(0)
            };
        }
    }
    match sizes
        .iter()
        .enumerate()
        .find(|(_, size)| **size > MAX_COPY_ROW_BYTES)
    {
        Some((row, size)) => Err(format!(
            "row {row} of a batch is {size} bytes; a COPY input row is at most 4 MB"
        )),
        None => Ok(()),
    }
}

/// The file's columns as a schema for tidemark's binary COPY encoder: Redshift maps Parquet
/// columns by position and physical type, so names are ignored and each Arrow type gets the
/// encoding of the staging column type it loads into.
fn positional_schema(arrow: &arrow_schema::Schema) -> anyhow::Result<TableSchema> {
    use arrow_schema::{DataType, TimeUnit};
    let columns = arrow
        .fields()
        .iter()
        .map(|field| {
            let ty = match field.data_type() {
                DataType::Boolean => ColumnType::Boolean {
                    source: BooleanSource::TinyInt,
                },
                DataType::Int16 => ColumnType::Int16,
                DataType::Int32 => ColumnType::Int32,
                DataType::Int64 => ColumnType::Int64,
                DataType::Decimal128(precision, scale) => ColumnType::Decimal {
                    precision: *precision,
                    scale: *scale,
                },
                DataType::Float32 => ColumnType::Float32,
                DataType::Float64 => ColumnType::Float64,
                DataType::Date32 => ColumnType::Date,
                DataType::Timestamp(TimeUnit::Microsecond, None) => ColumnType::Timestamp,
                DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => ColumnType::TimestampTz,
                DataType::Utf8 => ColumnType::Text {
                    max_octets: 0,
                    source: TextSource::Varchar,
                },
                DataType::Binary => ColumnType::Binary { max_octets: 0 },
                other => anyhow::bail!(
                    "column `{}` has Parquet type {other}, which the stand-in cannot load",
                    field.name()
                ),
            };
            Ok(Column {
                name: field.name().clone(),
                target_name: field.name().clone(),
                column_type: String::new(),
                ty,
                nullable: true,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(TableSchema {
        table: TableId::parse("standin.copy").context("a fixed table name")?,
        columns,
        primary_key: Vec::new(),
        json_in_redshift: JsonTarget::Super,
    })
}

fn statement_id(input: &Value) -> Result<&str, ApiError> {
    text(input, "Id").ok_or_else(|| ApiError::validation("Id must be specified"))
}

fn not_found(id: &str) -> ApiError {
    ApiError {
        code: "ResourceNotFoundException",
        message: format!("Query does not exist: {id}"),
    }
}

fn describe(state: &State, input: &Value) -> Result<Value, ApiError> {
    state.with_statement(input, describe_record)
}

fn describe_record(id: &str, record: &mut Record) -> Result<Value, ApiError> {
    record.describes += 1;
    let visible = record.phase.visible(record.describes);
    let finished = visible == Phase::Finished;
    let mut answer = record.target.clone();
    answer["Id"] = json!(id);
    answer["Status"] = json!(visible.name());
    answer["CreatedAt"] = json!(record.created_at);
    answer["UpdatedAt"] = json!(record.updated_at);
    answer["RedshiftPid"] = json!(0);
    answer["RedshiftQueryId"] = json!(0);
    if visible == Phase::Failed {
        answer["Error"] = json!(record.error.clone().unwrap_or_default());
    }
    if record.batch {
        answer["HasResultSet"] = json!(false);
        answer["SubStatements"] = record
            .subs
            .iter()
            .enumerate()
            .map(|(index, sub)| {
                let phase = sub.phase.visible(record.describes);
                let mut data = json!({
                    "Id": format!("{id}:{}", index + 1),
                    "Status": phase.name(),
                    "QueryString": sub.sql,
                    "HasResultSet": phase == Phase::Finished && sub.result.is_some(),
                    "ResultRows": if phase == Phase::Finished { sub.rows } else { -1 },
                    "CreatedAt": record.created_at,
                    "UpdatedAt": record.updated_at,
                    "RedshiftQueryId": 0,
                });
                if let (Phase::Failed, Some(error)) = (phase, &sub.error) {
                    data["Error"] = json!(error);
                }
                data
            })
            .collect();
    } else {
        let sub = &record.subs[0];
        answer["QueryString"] = json!(sub.sql);
        answer["HasResultSet"] = json!(finished && sub.result.is_some());
        answer["ResultRows"] = json!(if finished { sub.rows } else { -1 });
    }
    Ok(answer)
}

fn result(state: &State, input: &Value) -> Result<Value, ApiError> {
    let id = statement_id(input)?;
    let (parent, index) = match id.rsplit_once(':') {
        Some((parent, n)) => (
            parent,
            n.parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| not_found(id))?,
        ),
        None => (id, 0),
    };
    let statements = state.statements();
    let record = statements.get(parent).ok_or_else(|| not_found(id))?;
    let no_result = || {
        ApiError::validation(
            "Query does not have result. Please check query status with DescribeStatement.",
        )
    };
    if record.batch && parent == id {
        return Err(no_result());
    }
    let sub = record.subs.get(index).ok_or_else(|| not_found(id))?;
    let set = match (&sub.phase, &sub.result) {
        (Phase::Finished, Some(set)) => set,
        _ => return Err(no_result()),
    };
    let records: Vec<Value> = set
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&set.columns)
                .map(|(value, (_, ty))| field(value.as_deref(), ty))
                .collect()
        })
        .collect();
    let metadata: Vec<Value> = set
        .columns
        .iter()
        .map(|(name, ty)| {
            json!({"name": name, "label": name, "typeName": ty.name(), "nullable": 1,
                   "isSigned": true, "precision": 0, "scale": 0, "length": 0,
                   "schemaName": "", "tableName": ""})
        })
        .collect();
    Ok(json!({"Records": records, "ColumnMetadata": metadata, "TotalNumRows": set.rows.len()}))
}

/// A value as the Data API types it: integers `longValue`, floats `doubleValue`, booleans
/// `booleanValue`, NULL `isNull`, everything else (numerics, dates, text) `stringValue`.
fn field(value: Option<&str>, ty: &Type) -> Value {
    let Some(value) = value else {
        return json!({"isNull": true});
    };
    let typed = match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 => {
            value.parse::<i64>().ok().map(|n| json!({"longValue": n}))
        }
        Type::FLOAT4 | Type::FLOAT8 => value.parse::<f64>().ok().map(|n| json!({"doubleValue": n})),
        Type::BOOL => Some(json!({"booleanValue": value == "t"})),
        _ => None,
    };
    typed.unwrap_or_else(|| json!({"stringValue": value}))
}

fn cancel(state: &State, input: &Value) -> Result<Value, ApiError> {
    state.with_statement(input, |_, record| cancel_record(record))
}

fn cancel_record(record: &mut Record) -> Result<Value, ApiError> {
    if record.phase.rank() == 2 {
        return Err(ApiError::validation(format!(
            "Could not cancel a query that is already in {} state.",
            record.phase.name()
        )));
    }
    if let Some(task) = record.task.take() {
        // Dropping the task drops its connection: PostgreSQL rolls the transaction back.
        task.abort();
    }
    record.phase = Phase::Aborted;
    for sub in &mut record.subs {
        if sub.phase.rank() < 2 {
            sub.phase = Phase::Aborted;
        }
    }
    record.updated_at = now();
    Ok(json!({"Status": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_redshift_refuses_is_refused() {
        let too_long = format!("CREATE TABLE \"{}\" (a INT)", "n".repeat(128));
        for refused in [
            "ALTER TABLE \"a\".\"t\" ALTER COLUMN \"n\" TYPE BIGINT",
            "ALTER TABLE t ADD COLUMN a INT, ADD COLUMN b INT",
            "truncate t",
            too_long.as_str(),
            "SELECT SUM(\"c\") OVER (PARTITION BY \"k\" ORDER BY \"t\") FROM x",
            "select count(*) over (order by t) from x",
        ] {
            assert!(refuse_what_redshift_refuses(refused).is_err(), "{refused}");
        }
        for allowed in [
            "ALTER TABLE \"a\".\"t\" ALTER COLUMN \"n\" TYPE VARCHAR(40)",
            "ALTER TABLE t ADD COLUMN \"add column x\" INT",
            "DELETE FROM t WHERE note = 'truncate'",
            "SELECT SUM(c) OVER (PARTITION BY k ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM x",
            "SELECT MIN(c) OVER (PARTITION BY k), LAG(c) OVER (PARTITION BY k ORDER BY t), ROW_NUMBER() OVER (ORDER BY t) FROM x",
            "SELECT 'SUM(a) OVER (ORDER BY b)' FROM x",
        ] {
            assert!(refuse_what_redshift_refuses(allowed).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn only_redshift_syntax_outside_quotes_is_translated() {
        let ddl = "CREATE TABLE IF NOT EXISTS \"a\".\"super\" (\n    \"id\" BIGINT NOT NULL,\n    \"doc\" SUPER,\n    \"bin\" VARBYTE(16),\n    PRIMARY KEY (\"id\")\n)\nDISTSTYLE KEY\nDISTKEY (\"id\")\nSORTKEY (\"updated_at\", \"id\")\nENCODE AUTO";
        assert_eq!(
            translate(ddl).trim_end(),
            "CREATE TABLE IF NOT EXISTS \"a\".\"super\" (\n    \"id\" BIGINT NOT NULL,\n    \"doc\" jsonb,\n    \"bin\" bytea,\n    PRIMARY KEY (\"id\")\n)"
        );
        assert_eq!(
            translate("SELECT JSON_PARSE(\"payload\"), 'JSON_PARSE(x) SUPER' FROM t"),
            "SELECT pg_temp.tidemark_json_parse(CAST(\"payload\" AS text)), 'JSON_PARSE(x) SUPER' FROM t"
        );
        assert!(translate("SELECT 1 FROM svv_columns WHERE x")
            .contains("information_schema.columns) AS svv_columns WHERE x"));
    }

    #[test]
    fn parameters_become_literals_outside_quotes() {
        assert_eq!(
            bind_parameters(
                "SELECT ':schema' WHERE s = :schema AND t = :table",
                &[
                    ("schema".into(), "o'k".into()),
                    ("table".into(), "t".into())
                ]
            ),
            "SELECT ':schema' WHERE s = 'o''k' AND t = 't'"
        );
    }

    #[test]
    fn statuses_advance_one_step_per_describe_and_never_run_ahead() {
        assert_eq!(Phase::Finished.visible(1), Phase::Submitted);
        assert_eq!(Phase::Finished.visible(2), Phase::Started);
        assert_eq!(Phase::Finished.visible(3), Phase::Finished);
        assert_eq!(Phase::Started.visible(5), Phase::Started);
        assert_eq!(Phase::Submitted.visible(2), Phase::Submitted);
    }

    #[test]
    fn copy_statements_are_recognised() {
        let sql = "COPY \"tidemark_copy\"\nFROM 's3://b/k.manifest'\nIAM_ROLE 'arn:aws:iam::1:role/r'\nFORMAT AS PARQUET\nMANIFEST";
        let caps = COPY.captures(sql).expect("matches");
        assert_eq!(&caps["table"], "\"tidemark_copy\"");
        assert!(caps.name("columns").is_none());
        assert_eq!(&caps["manifest"], "s3://b/k.manifest");
        let listed = "COPY \"tidemark_staging\" (\"id\", \"a, b\")\nFROM 's3://b/k.manifest'\nIAM_ROLE 'arn:aws:iam::1:role/r'\nFORMAT AS PARQUET\nMANIFEST";
        let caps = COPY
            .captures(listed)
            .expect("a column list is recognised, to be refused");
        assert_eq!(&caps["columns"], "\"id\", \"a, b\"");
    }
}
