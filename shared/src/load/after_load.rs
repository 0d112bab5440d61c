//! SQL after a load (`after_load`, per pipeline and per table): each item checked to be one
//! statement, and run in the target, in order, after the table's load committed — the pipeline's
//! statements first, then the table's. A failure leaves the rows loaded (never loaded again) and
//! fails the table; the next sync runs the statements again.

use crate::config::{Pipeline, TableConfig};
use crate::error::{Error, Result};
use crate::naming::TableId;
use crate::services::Services;

/// `text` as one statement (a trailing `;` dropped), or why it is not one: empty, or a second
/// statement after a `;` outside quotes, quoted names and comments.
pub fn single_statement(text: &str) -> std::result::Result<String, String> {
    let trimmed = text.trim();
    let body = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
    if body.is_empty() {
        return Err("the statement is empty".to_owned());
    }
    let mut chars = body.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            (None, '/') if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            (None, ';') => {
                return Err(
                    "it holds more than one statement: give each its own item in the list"
                        .to_owned(),
                )
            }
            (None, _) => {}
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".to_owned());
    }
    Ok(body.to_owned())
}

/// The statements that follow `table`'s load: the pipeline's, then the table's.
pub fn statements<'a>(pipeline: &'a Pipeline, table_config: &'a TableConfig) -> Vec<&'a str> {
    pipeline
        .after_load
        .iter()
        .chain(&table_config.after_load)
        .map(String::as_str)
        .collect()
}

/// Runs the statements that follow `table`'s load, each on its own (autocommit), in order;
/// the first that fails fails the table.
pub async fn run(
    services: &Services,
    pipeline: &Pipeline,
    table_config: &TableConfig,
    table: &TableId,
) -> Result<()> {
    let statements = statements(pipeline, table_config);
    if statements.is_empty() {
        return Ok(());
    }
    let target = services.target(&pipeline.target).await?;
    for (index, statement) in statements.iter().enumerate() {
        let statement = single_statement(statement).map_err(|why| Error::AfterLoad {
            table: table.to_string(),
            message: format!("`after_load` statement {}: {why}", index + 1),
        })?;
        target
            .execute(&statement)
            .await
            .map_err(|err| Error::AfterLoad {
                table: table.to_string(),
                message: format!(
                    "the rows of `{table}` are loaded (they are not loaded again), but `after_load` statement {} of {} failed: {err}; fix the statement or the target, and the next sync runs the statements again",
                    index + 1,
                    statements.len()
                ),
            })?;
        tracing::info!(table = %table, statement = index + 1, "after_load statement ran");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_per_item() {
        assert_eq!(
            single_statement("REFRESH MATERIALIZED VIEW a.b;  ").unwrap(),
            "REFRESH MATERIALIZED VIEW a.b"
        );
        assert!(single_statement("UPDATE t SET v = 'a;b' -- no; more\n WHERE \"c;d\" = 1").is_ok());
        assert!(single_statement("SELECT 1 /* ; */").is_ok());
        for (bad, why) in [
            ("DELETE FROM a; DELETE FROM b", "more than one statement"),
            (" ; ", "empty"),
            ("SELECT 'open", "not closed"),
        ] {
            let err = single_statement(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
