//! The tables of a test pipeline as typed values, rendered to the YAML under `tables:` by
//! serde: no test writes indentation by hand.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

/// One table of pipeline `p`: `{db}.name` and its settings, each a key of the config reference.
#[derive(Debug, Clone)]
pub struct Table {
    name: String,
    settings: BTreeMap<String, Value>,
}

impl Table {
    /// The table `name` of the test's database, with no settings (the config's defaults).
    pub fn new(name: &str) -> Table {
        Table {
            name: format!("{{db}}.{name}"),
            settings: BTreeMap::new(),
        }
    }

    /// The table `database.table`, named in full, with no settings.
    pub fn named(qualified: &str) -> Table {
        Table {
            name: qualified.to_owned(),
            settings: BTreeMap::new(),
        }
    }

    /// `hybrid` on `column` (a DATETIME that changes on every write), with `lag: 0s` so that a
    /// row written just before the sync is read by it.
    pub fn hybrid(name: &str, column: &str) -> Table {
        Table::new(name).cursor_column(column).lag("0s")
    }

    /// The table's name in the source database (and, by default, in the target).
    pub fn source_name(&self) -> &str {
        self.name.trim_start_matches("{db}.")
    }

    /// This table alone, as the YAML under `tables:`.
    pub fn yaml(&self) -> String {
        yaml(std::slice::from_ref(self))
    }

    /// Sets `key` to `value`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Table {
        self.settings.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `key` to the YAML `text` (a list or a mapping, written as in the config file).
    pub fn with_yaml(self, key: &str, text: &str) -> anyhow::Result<Table> {
        Ok(self.with(key, serde_yaml::from_str::<Value>(text)?))
    }

    /// `cdc_strategy`.
    pub fn strategy(self, strategy: &str) -> Table {
        self.with("cdc_strategy", strategy)
    }

    /// `cursor_column`.
    pub fn cursor_column(self, column: &str) -> Table {
        self.with("cursor_column", column)
    }

    /// `lag`.
    pub fn lag(self, lag: &str) -> Table {
        self.with("lag", lag)
    }

    /// `lookback`.
    pub fn lookback(self, lookback: &str) -> Table {
        self.with("lookback", lookback)
    }

    /// `load`.
    pub fn load(self, mode: &str) -> Table {
        self.with("load", mode)
    }

    /// `chunk_rows`.
    pub fn chunk_rows(self, rows: u64) -> Table {
        self.with("chunk_rows", rows)
    }

    /// `key_columns`.
    pub fn key_columns(self, columns: &[&str]) -> Table {
        self.with(
            "key_columns",
            Value::Sequence(columns.iter().map(|c| Value::from(*c)).collect()),
        )
    }
}

/// The YAML of `tables` as [`crate::TestMysql::config`] takes it (indented under `tables:`):
/// each key double-quoted, as a hand-written config has it, and its settings rendered by serde.
pub fn yaml(tables: &[Table]) -> String {
    let mut out = String::new();
    for table in tables {
        out.push_str(&format!("      \"{}\":", table.name));
        if table.settings.is_empty() {
            out.push_str(" {}\n");
            continue;
        }
        let settings: Mapping = table
            .settings
            .iter()
            .map(|(key, value)| (Value::from(key.as_str()), value.clone()))
            .collect();
        let body = serde_yaml::to_string(&settings).expect("a mapping of plain values serializes");
        out.push('\n');
        for line in body.lines() {
            out.push_str(&format!("        {line}\n"));
        }
    }
    out
}
