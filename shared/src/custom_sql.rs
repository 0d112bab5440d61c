//! The `custom_sql` strategy's statement: checking that it is one SELECT, and turning its named
//! placeholders (`:last_ts`, `:last_id`, `:ceiling`, `:limit`) into bound `?` parameters.
//!
//! This is a lexer, not a parser: it knows where string literals, quoted identifiers and comments
//! begin and end, so that a `;`, `?` or `:name` inside them is left alone. It never keeps a
//! keyword blocklist — the statement runs inside `START TRANSACTION READ ONLY`, and that is the
//! guard against writes — and it never pastes a value into the SQL.

use crate::error::{Error, Result};

/// One named placeholder of a custom statement, in the order its `?` appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// `:last_ts` — the cursor column's value of the last row read.
    LastTs,
    /// `:last_id` — the key column's value of the last row read.
    LastId,
    /// `:ceiling` — the run's timestamp ceiling.
    Ceiling,
    /// `:limit` — the most rows the statement may return.
    Limit,
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "last_ts" => Some(Placeholder::LastTs),
            "last_id" => Some(Placeholder::LastId),
            "ceiling" => Some(Placeholder::Ceiling),
            "limit" => Some(Placeholder::Limit),
            _ => None,
        }
    }
}

/// A custom statement ready to prepare: `?` in place of every placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CustomQuery {
    /// The statement with `?` parameters, without a trailing `;`.
    pub sql: String,
    /// What each `?` is bound to, in order.
    pub params: Vec<Placeholder>,
}

impl CustomQuery {
    /// Whether the statement pages itself with `:limit` (otherwise it runs once).
    pub fn pages(&self) -> bool {
        self.params.contains(&Placeholder::Limit)
    }

    /// Whether the statement needs the last row's key.
    pub fn uses_last_id(&self) -> bool {
        self.params.contains(&Placeholder::LastId)
    }
}

/// A `custom_sql` statement that passed [`validate_custom_sql`]: the text as written (what the
/// config shows) and its rewritten form (what extraction prepares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomStatement {
    text: String,
    query: CustomQuery,
}

impl CustomStatement {
    /// Checks and rewrites `text` (see [`validate_custom_sql`] for the rules).
    pub fn parse(text: &str) -> Result<CustomStatement> {
        Ok(CustomStatement {
            text: text.to_owned(),
            query: rewrite(text)?,
        })
    }

    /// The statement as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The statement with `?` parameters, and what each is bound to.
    pub(crate) fn query(&self) -> &CustomQuery {
        &self.query
    }
}

/// Checks a `custom_sql` statement without a server: exactly one statement (one trailing `;` is
/// fine), starting with `SELECT` or `WITH`, using only the placeholders `:last_ts`, `:last_id`,
/// `:ceiling` and `:limit`, with no `?` of its own and no MySQL executable comment (`/*! … */`).
///
/// It deliberately does not look for "dangerous" keywords: the statement runs inside
/// `START TRANSACTION READ ONLY`, which makes the server refuse any write. (Give the source user
/// no `FILE` privilege, so that `SELECT … INTO OUTFILE` is refused too.)
pub fn validate_custom_sql(sql: &str) -> Result<()> {
    rewrite(sql).map(|_| ())
}

/// Validates and rewrites a custom statement.
fn rewrite(sql: &str) -> Result<CustomQuery> {
    let tokens = lex(sql)?;
    let mut out = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut first_word: Option<&str> = None;
    let mut ended_at: Option<usize> = None;
    for token in &tokens {
        if let Some(end) = ended_at {
            if !matches!(token.kind, Kind::Space | Kind::Comment) {
                return Err(invalid(format!(
                    "it holds more than one statement (text continues after the `;` at byte {end}); \
                     write a single SELECT"
                )));
            }
            continue;
        }
        match token.kind {
            Kind::Semicolon => {
                ended_at = Some(token.start);
                continue;
            }
            Kind::Word if first_word.is_none() => first_word = Some(token.text(sql)),
            Kind::Space | Kind::Comment => {}
            _ if first_word.is_none() => {
                return Err(invalid(format!(
                    "it must start with SELECT or WITH, not `{}`",
                    token.text(sql)
                )))
            }
            _ => {}
        }
        match token.kind {
            Kind::Placeholder => {
                let name = &token.text(sql)[1..];
                let placeholder = Placeholder::from_name(name).ok_or_else(|| {
                    invalid(format!(
                        "`:{name}` is not a placeholder tidemark fills; use `:last_ts`, `:last_id`, \
                         `:ceiling` and `:limit`"
                    ))
                })?;
                params.push(placeholder);
                out.push('?');
            }
            Kind::Question => {
                return Err(invalid(
                    "`?` parameters are not supported: use the named placeholders `:last_ts`, \
                     `:last_id`, `:ceiling` and `:limit`"
                        .to_owned(),
                ))
            }
            _ => out.push_str(token.text(sql)),
        }
    }
    refuse_aggregates(sql, &tokens)?;
    match first_word {
        Some(word) if word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("with") => {}
        Some(word) => {
            return Err(invalid(format!(
                "it must be a single SELECT (or WITH … SELECT) statement, not `{word}`"
            )))
        }
        None => return Err(invalid("it is empty".to_owned())),
    }
    Ok(CustomQuery {
        sql: out.trim_end().to_owned(),
        params,
    })
}

/// Aggregate functions whose value over one incremental run is a partial result.
const AGGREGATES: [&str; 8] = [
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "group_concat",
    "json_arrayagg",
    "json_objectagg",
];

/// Refuses `GROUP BY` and aggregate calls: `custom_sql` runs incrementally, so an aggregate sees
/// only one run's rows and its partial result would overwrite the whole total in the target
/// (6375 became 495). Anywhere in the statement — a lexer cannot tell a harmless subquery.
fn refuse_aggregates(sql: &str, tokens: &[Token]) -> Result<()> {
    let words: Vec<(usize, &str)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == Kind::Word)
        .map(|(i, t)| (i, t.text(sql)))
        .collect();
    let next_significant = |index: usize| {
        tokens[index + 1..]
            .iter()
            .find(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
            .map(|t| t.text(sql))
    };
    for (index, word) in &words {
        let found = if word.eq_ignore_ascii_case("group")
            && next_significant(*index).is_some_and(|w| w.eq_ignore_ascii_case("by"))
        {
            Some("GROUP BY".to_owned())
        } else if AGGREGATES.iter().any(|a| word.eq_ignore_ascii_case(a))
            && next_significant(*index) == Some("(")
        {
            Some(format!("{}()", word.to_ascii_uppercase()))
        } else {
            None
        };
        if let Some(found) = found {
            return Err(invalid(format!(
                "it uses {found}: each run reads only the rows changed since the last one, so an aggregate over them is partial and would overwrite the whole total in the target; select the rows themselves (aggregate in the warehouse), or read a source view of the totals with `cdc_strategy: full_sync`"
            )));
        }
    }
    Ok(())
}

fn invalid(reason: String) -> Error {
    Error::InvalidRequest(format!("`custom_sql` is not usable: {reason}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Comment,
    Word,
    Literal,
    Placeholder,
    Question,
    Semicolon,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Token {
    fn text<'a>(&self, sql: &'a str) -> &'a str {
        &sql[self.start..self.end]
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    is_word_start(c) || c.is_ascii_digit() || c == b'$'
}

/// Splits the statement into the tokens this module cares about. Works on bytes: every
/// delimiter is ASCII, so slicing at token boundaries never splits a UTF-8 character.
fn lex(sql: &str) -> Result<Vec<Token>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                Kind::Space
            }
            b'#' => {
                i = line_end(bytes, i);
                Kind::Comment
            }
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && bytes
                    .get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                i = line_end(bytes, i);
                Kind::Comment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                if bytes.get(i + 2) == Some(&b'!') || bytes[i + 2..].starts_with(b"M!") {
                    return Err(invalid(
                        "MySQL executable comments (`/*! … */`) are not supported".to_owned(),
                    ));
                }
                let close = sql[i + 2..]
                    .find("*/")
                    .ok_or_else(|| invalid("a `/*` comment is never closed".to_owned()))?;
                i = i + 2 + close + 2;
                Kind::Comment
            }
            b'\'' | b'"' | b'`' => {
                i = quoted_end(bytes, i, c)?;
                Kind::Literal
            }
            b':' if bytes.get(i + 1).copied().is_some_and(is_word_start) => {
                i += 1;
                while i < bytes.len() && is_word_char(bytes[i]) {
                    i += 1;
                }
                Kind::Placeholder
            }
            b'?' => {
                i += 1;
                Kind::Question
            }
            b';' => {
                i += 1;
                Kind::Semicolon
            }
            c if is_word_start(c) || c.is_ascii_digit() => {
                while i < bytes.len() && is_word_char(bytes[i]) {
                    i += 1;
                }
                Kind::Word
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Ok(tokens)
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p + 1)
}

/// The end of a quoted literal or identifier opened at `start` by `quote`: a doubled quote stays
/// inside, and in strings (not backtick identifiers) a backslash escapes the next byte.
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> Result<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if c == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(invalid(format!(
        "a `{}` quote is never closed",
        char::from(quote)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_bound_parameters_in_order() {
        let query = rewrite(
            "SELECT * FROM t WHERE ts >= :last_ts AND (ts > :last_ts OR id > :last_id) \
             AND ts <= :ceiling ORDER BY ts, id LIMIT :limit;",
        )
        .unwrap();
        assert_eq!(
            query.sql,
            "SELECT * FROM t WHERE ts >= ? AND (ts > ? OR id > ?) AND ts <= ? ORDER BY ts, id LIMIT ?"
        );
        assert_eq!(
            query.params,
            [
                Placeholder::LastTs,
                Placeholder::LastTs,
                Placeholder::LastId,
                Placeholder::Ceiling,
                Placeholder::Limit
            ]
        );
        assert!(query.pages() && query.uses_last_id());
    }

    #[test]
    fn aggregates_are_refused_because_a_run_sees_only_its_rows() {
        for sql in [
            "SELECT customer_id, SUM(amount) AS total FROM t WHERE ts > :last_ts GROUP BY customer_id",
            "SELECT c.id, (SELECT count (*) FROM o WHERE o.c = c.id) AS n FROM c",
            "select max(ts) from t group\n  by x",
        ] {
            let err = rewrite(sql).unwrap_err().to_string();
            assert!(err.contains("partial") && err.contains("full_sync"), "{sql}: {err}");
        }
        // Column names and quoted text that merely look like aggregates pass.
        rewrite(
            "SELECT t.count, t.`sum(x)`, 'GROUP BY' AS note, max_price FROM t WHERE ts > :last_ts",
        )
        .unwrap();
    }

    #[test]
    fn quoted_text_and_comments_are_left_alone() {
        let sql = "WITH x AS (SELECT 1 AS `a:b;c`) -- not :here;\n\
                   SELECT ':last_ts; ?', \"it''s :x\", 'a\\'; :y', @v := 1 /* :z ; */ # :w\n\
                   FROM x WHERE 1 = 1";
        let query = rewrite(sql).unwrap();
        assert_eq!(query.sql, sql);
        assert!(query.params.is_empty());
        assert!(!query.pages());
    }

    #[test]
    fn only_one_select_or_with_statement_passes() {
        assert!(validate_custom_sql("  /* lead */ select 1").is_ok());
        assert!(validate_custom_sql("SELECT 1 ; -- trailing\n").is_ok());
        for (bad, needle) in [
            ("", "empty"),
            ("   -- only a comment", "empty"),
            ("DELETE FROM t", "`DELETE`"),
            ("INSERT INTO t SELECT 1", "`INSERT`"),
            ("SELECT 1; DROP TABLE t", "more than one statement"),
            ("SELECT 1;;", "more than one statement"),
            ("(SELECT 1)", "must start with SELECT or WITH"),
            ("SELECT * FROM t WHERE id > ?", "`?` parameters"),
            ("SELECT * FROM t WHERE id > :since", "`:since`"),
            ("SELECT 'open", "never closed"),
            ("SELECT 1 /* open", "never closed"),
            ("SELECT 1 /*! ; DROP TABLE t */", "executable comments"),
            (
                "SELECT 1 /*M!100000 ; DROP TABLE t */",
                "executable comments",
            ),
            ("CALL p()", "`CALL`"),
        ] {
            let err = validate_custom_sql(bad).expect_err(bad).to_string();
            assert!(err.contains(needle), "{bad}: {err}");
            assert!(err.starts_with("`custom_sql` is not usable"), "{err}");
        }
    }

    #[test]
    fn multibyte_text_survives() {
        let query = rewrite("SELECT 'é😀' AS `ü`, x FROM t WHERE n = :LIMIT").unwrap();
        assert_eq!(query.sql, "SELECT 'é😀' AS `ü`, x FROM t WHERE n = ?");
        assert_eq!(query.params, [Placeholder::Limit]);
    }
}
