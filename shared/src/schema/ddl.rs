//! The DDL a target table is created with, in Redshift's and PostgreSQL's dialects.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::naming;

use super::{Column, ColumnType, DistStyle, JsonTarget, RedshiftTableOptions, TableSchema};

impl TableSchema {
    /// `CREATE TABLE IF NOT EXISTS` for Redshift. `schema` and `table` are folded like every
    /// warehouse name; distkey/sortkey name source columns.
    pub fn redshift_ddl(
        &self,
        schema: &str,
        table: &str,
        dist: &RedshiftTableOptions,
    ) -> Result<String> {
        let mut sql =
            self.create_table(schema, table, |c| c.ty.redshift_type(self.json_in_redshift))?;
        let distkey = dist
            .distkey
            .as_deref()
            .map(|name| self.key_column("distkey", name))
            .transpose()?;
        match (dist.diststyle, distkey) {
            (None | Some(DistStyle::Key), Some(column)) => sql.push_str(&format!(
                "\nDISTSTYLE KEY\nDISTKEY ({})",
                naming::quote_warehouse(&column.target_name)
            )),
            (Some(DistStyle::Key), None) => {
                return Err(Error::Schema(format!(
                    "`diststyle: key` for `{}` needs a `distkey` column",
                    self.table
                )))
            }
            (Some(style), Some(_)) => {
                return Err(Error::Schema(format!(
                    "`distkey` for `{}` needs `diststyle: key` (or no diststyle), not `{}`",
                    self.table,
                    style.keyword().to_ascii_lowercase()
                )))
            }
            (Some(style), None) => sql.push_str(&format!("\nDISTSTYLE {}", style.keyword())),
            (None, None) => {}
        }
        if !dist.sortkey.is_empty() {
            let mut seen = BTreeSet::new();
            let mut keys = Vec::with_capacity(dist.sortkey.len());
            for name in &dist.sortkey {
                let column = self.key_column("sortkey", name)?;
                if !seen.insert(column.target_name.as_str()) {
                    return Err(Error::Schema(format!(
                        "sortkey of `{}` names `{name}` twice",
                        self.table
                    )));
                }
                keys.push(naming::quote_warehouse(&column.target_name));
            }
            sql.push_str(&format!("\nSORTKEY ({})", keys.join(", ")));
        }
        sql.push_str("\nENCODE AUTO");
        Ok(sql)
    }

    /// This schema with `key` (source names) as the primary key its DDL declares.
    pub fn declaring_key(&self, key: &[String]) -> TableSchema {
        TableSchema {
            primary_key: key.to_vec(),
            ..self.clone()
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for PostgreSQL; also checks every name fits PostgreSQL.
    pub fn postgres_ddl(&self, schema: &str, table: &str) -> Result<String> {
        for column in &self.columns {
            naming::check_postgres_identifier(&column.target_name).map_err(|_| {
                Error::Schema(format!(
                    "column `{}` of `{}` is too long for a PostgreSQL name ({} bytes at most); runs committed with it cannot load: leave it out with `columns: {{ exclude: [{}] }}`, then drop those runs with `tidemark watermark reset -t {} --drop-pending --yes` and sync again",
                    column.name,
                    self.table,
                    naming::POSTGRES_IDENTIFIER_MAX_BYTES,
                    column.name,
                    self.table
                ))
            })?;
        }
        naming::check_postgres_identifier(&naming::target_identifier(schema)?)?;
        naming::check_postgres_identifier(&naming::target_identifier(table)?)?;
        self.create_table(schema, table, |c| c.ty.postgres_type())
    }

    fn create_table(
        &self,
        schema: &str,
        table: &str,
        column_type: impl Fn(&Column) -> String,
    ) -> Result<String> {
        let qualified = naming::quote_warehouse_qualified(
            &naming::target_identifier(schema)?,
            &naming::target_identifier(table)?,
        );
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "    {} {}{}",
                    naming::quote_warehouse(&c.target_name),
                    column_type(c),
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .collect();
        if !self.primary_key.is_empty() {
            let keys = self
                .primary_key
                .iter()
                .map(|key| {
                    self.column(key)
                        .map(|c| naming::quote_warehouse(&c.target_name))
                        .ok_or_else(|| {
                            Error::Schema(format!(
                                "primary key column `{key}` is not a column of `{}`",
                                self.table
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            lines.push(format!("    PRIMARY KEY ({})", keys.join(", ")));
        }
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {qualified} (\n{}\n)",
            lines.join(",\n")
        ))
    }

    /// A distkey/sortkey column: must exist, and must not be SUPER.
    fn key_column(&self, role: &str, name: &str) -> Result<&Column> {
        let column = self.column(name).ok_or_else(|| {
            Error::Schema(format!(
                "{role} `{name}` is not an extracted column of `{}`; the columns are: {}",
                self.table,
                self.column_names().join(", ")
            ))
        })?;
        if column.ty == ColumnType::Json && self.json_in_redshift == JsonTarget::Super {
            return Err(Error::Schema(format!(
                "{role} `{name}` of `{}` is JSON, which Redshift stores as SUPER, and a SUPER \
                 column cannot be a distribution or sort key",
                self.table
            )));
        }
        Ok(column)
    }
}
