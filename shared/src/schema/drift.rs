//! Drift: how an existing target table differs from the source schema, which differences
//! tidemark applies by itself (added columns, widened VARCHARs and keys, retypes), which need an
//! operator, and the DDL that applies them in each warehouse.

use std::fmt;

use crate::error::{Error, Result};
use crate::naming;

use super::types::{
    is_tinyint1, redshift_varbyte_length, redshift_varchar_length, REDSHIFT_VARCHAR_MAX_OCTETS,
    UNSIGNED_64_DIGITS,
};
use super::*;

/// A column of an existing target table, as `information_schema.columns` (PostgreSQL) or
/// `SVV_COLUMNS` (Redshift) report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// The column's name.
    pub name: String,
    /// e.g. `character varying`, `integer`, `numeric`, `timestamp without time zone`.
    pub data_type: String,
    /// A VARCHAR's length (characters in PostgreSQL, bytes in Redshift).
    pub character_maximum_length: Option<i64>,
    /// A number's precision (digits, or bits for PostgreSQL's integers and floats).
    pub numeric_precision: Option<i64>,
    /// A number's scale.
    pub numeric_scale: Option<i64>,
    /// `false` when the column is NOT NULL (`is_nullable = 'NO'`); `true` when it takes NULL or
    /// the catalog did not say.
    pub nullable: bool,
    /// The name of the PRIMARY KEY constraint the column is part of, if any.
    pub primary_key: Option<String>,
}

/// One difference between the source schema and an existing target table. Column names are
/// TARGET names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A source column the target lacks: `ALTER TABLE … ADD COLUMN column ddl_type`.
    AddColumn {
        /// The column.
        column: String,
        /// Its warehouse type.
        ddl_type: String,
    },
    /// A VARCHAR that must grow to hold the source's longest value.
    WidenVarchar {
        /// The column.
        column: String,
        /// Its length now.
        from: i64,
        /// The length it needs.
        to: i64,
    },
    /// A target column whose type cannot hold the source's values: needs an operator.
    Incompatible {
        /// The column.
        column: String,
        /// Its type in the target.
        target_type: String,
        /// Its type in the source (MySQL's `COLUMN_TYPE`).
        source_type: String,
        /// What to do.
        hint: String,
    },
    /// A target column no source column feeds (dropped or excluded in the source, or added by
    /// the loader): loads leave it NULL. Informational, never an error.
    MissingInSource {
        /// The column.
        column: String,
    },
    /// A column whose source type widened in a way every old value survives (INT → BIGINT,
    /// DECIMAL(8,2) → DECIMAL(12,4)): PostgreSQL changes it in place; Redshift, which changes
    /// only VARCHAR in place, creates `temporary` with the new type, copies, drops the old column
    /// and renames.
    Retype {
        /// The column.
        column: String,
        /// Its new warehouse type.
        ddl_type: String,
        /// Redshift's temporary column ([`retype_temporary`]).
        temporary: String,
        /// An interrupted retype already created `temporary`.
        temporary_exists: bool,
        /// A TIMESTAMPTZ that becomes a zone-less TIMESTAMP (MySQL TIMESTAMP → DATETIME): old
        /// values become their UTC wall-clock time, until the backfill the change starts
        /// ([`TableSchema::backfill_reason`]) brings the source's own.
        from_utc: bool,
    },
    /// A Redshift retype interrupted after dropping the old column: only the rename is left.
    FinishRetype {
        /// The column.
        column: String,
        /// The temporary column to rename to it.
        temporary: String,
    },
    /// A NOT NULL target column that must take NULL now: PostgreSQL drops the constraint;
    /// Redshift, which cannot change a column's nullability, rebuilds the column like a
    /// [`Drift::Retype`] to the same, nullable, type.
    DropNotNull {
        /// The column.
        column: String,
        /// Its warehouse type.
        ddl_type: String,
        /// Redshift's temporary column ([`retype_temporary`]).
        temporary: String,
        /// An interrupted rebuild already created `temporary`.
        temporary_exists: bool,
    },
    /// Redshift: a VARCHAR to widen is part of PRIMARY KEY `constraint`, and r_ALTER_TABLE
    /// refuses ALTER COLUMN TYPE on such a column. The constraint is dropped before the
    /// widenings and declared again after them over `columns`, each statement autocommitted.
    WidenKeyOf {
        /// The PRIMARY KEY constraint's name.
        constraint: String,
        /// Its columns.
        columns: Vec<String>,
    },
    /// Redshift: the target declares no PRIMARY KEY, though the load mode guarantees one over
    /// `columns` (a `merge`/`replace` table whose key was dropped by an interrupted
    /// [`Drift::WidenKeyOf`]): declared again. Redshift never enforces it; its planner uses it.
    DeclareKey {
        /// The key's columns.
        columns: Vec<String>,
    },
}

/// The temporary name of a column being retyped in Redshift (see [`Drift::Retype`]).
pub fn retype_temporary(column: &str) -> String {
    format!("tidemark_retype_{column}")
}

/// How well an existing target column holds a source column.
pub(super) enum Fit {
    Holds,
    Widen {
        from: i64,
        to: i64,
    },
    /// The source's type holds every value of the target's (a widened INT or DECIMAL, a
    /// TIMESTAMP become DATETIME: `from_utc`).
    Retype {
        from_utc: bool,
    },
    Incompatible {
        extra_hint: &'static str,
    },
}

impl Fit {
    pub(super) fn incompatible() -> Self {
        Fit::Incompatible { extra_hint: "" }
    }

    pub(super) fn varchar(length: Option<i64>, needed: u64) -> Self {
        let needed = i64::try_from(needed).unwrap_or(i64::MAX);
        match length {
            Some(from) if from < needed => Fit::Widen { from, to: needed },
            _ => Fit::Holds,
        }
    }
}

/// Decimal digits an integer-valued source type needs; `None` for non-integers.
pub(super) fn integer_digits(ty: &ColumnType) -> Option<u8> {
    match ty {
        ColumnType::Int16 => Some(5),
        ColumnType::Int32 => Some(10),
        ColumnType::Int64 => Some(19),
        ColumnType::Bits { width } if *width < 64 => Some(19),
        _ => None,
    }
}

/// Whether numeric(precision, scale) holds every numeric(p, s) value. Unconstrained `numeric`
/// (PostgreSQL, no precision) holds everything.
pub(super) fn numeric_holds(precision: Option<i64>, scale: Option<i64>, p: i64, s: i64) -> bool {
    match precision {
        None => true,
        Some(precision) => {
            let scale = scale.unwrap_or(0);
            scale >= s && precision - scale >= p - s
        }
    }
}

/// What kind of column the warehouse reports, from `data_type` (PostgreSQL's and Redshift's
/// information_schema spellings, plus common short aliases).
pub(super) enum TargetFamily {
    Boolean,
    Integer {
        digits: u8,
    },
    Numeric {
        precision: Option<i64>,
        scale: Option<i64>,
    },
    Real,
    Double,
    Date,
    Timestamp,
    TimestampTz,
    Varchar {
        length: Option<i64>,
    },
    UnboundedText,
    Super,
    Json,
    Varbyte {
        length: Option<i64>,
    },
    Bytea,
    Other,
}

impl TargetFamily {
    pub(super) fn of(target: &TargetColumn) -> Self {
        match target.data_type.trim().to_ascii_lowercase().as_str() {
            "boolean" | "bool" => TargetFamily::Boolean,
            "smallint" | "int2" => TargetFamily::Integer { digits: 5 },
            "integer" | "int" | "int4" => TargetFamily::Integer { digits: 10 },
            "bigint" | "int8" => TargetFamily::Integer { digits: 19 },
            "numeric" | "decimal" => TargetFamily::Numeric {
                precision: target.numeric_precision,
                scale: target.numeric_scale,
            },
            "real" | "float4" => TargetFamily::Real,
            "double precision" | "float8" | "float" => TargetFamily::Double,
            "date" => TargetFamily::Date,
            "timestamp without time zone" | "timestamp" => TargetFamily::Timestamp,
            "timestamp with time zone" | "timestamptz" => TargetFamily::TimestampTz,
            "character varying" | "varchar" | "nvarchar" => TargetFamily::Varchar {
                length: target.character_maximum_length,
            },
            "text" => TargetFamily::UnboundedText,
            "super" => TargetFamily::Super,
            "jsonb" | "json" => TargetFamily::Json,
            "binary varying" | "varbyte" | "varbinary" => TargetFamily::Varbyte {
                length: target.character_maximum_length,
            },
            "bytea" => TargetFamily::Bytea,
            _ => TargetFamily::Other,
        }
    }
}

/// `character varying(10)`, `numeric(20,0)`, `integer`.
pub(super) fn describe_target(target: &TargetColumn) -> String {
    match (
        target.character_maximum_length,
        target.numeric_precision,
        target.numeric_scale,
    ) {
        (Some(length), _, _) => format!("{}({length})", target.data_type),
        (None, Some(p), Some(s))
            if matches!(
                target.data_type.to_ascii_lowercase().as_str(),
                "numeric" | "decimal"
            ) =>
        {
            format!("{}({p},{s})", target.data_type)
        }
        _ => target.data_type.clone(),
    }
}

/// The non-retryable [`Error::SchemaDrift`] for every incompatible column, or `None` when the
/// drift can be applied automatically (added columns, widened VARCHARs, missing columns).
pub fn drift_error(table: impl fmt::Display, drifts: &[Drift]) -> Option<Error> {
    let details: Vec<String> = drifts
        .iter()
        .filter_map(|drift| match drift {
            Drift::Incompatible {
                column,
                target_type,
                source_type,
                hint,
            } => Some(format!(
                "column `{column}` is `{target_type}` in the target but `{source_type}` in the \
                 source: {hint}"
            )),
            _ => None,
        })
        .collect();
    if details.is_empty() {
        None
    } else {
        Some(Error::SchemaDrift {
            table: table.to_string(),
            details: details.join("; "),
        })
    }
}

/// The statements that apply the automatic part of `drifts` to `schema.table`: one
/// `ADD COLUMN` per added column, one `ALTER COLUMN … TYPE` per widened VARCHAR (PostgreSQL
/// widens to `text`, its type for all text). Missing-in-source columns need nothing. Fails with
/// [`drift_error`] if any drift is incompatible. In Redshift each statement must run outside a
/// transaction block, before the load.
pub fn drift_ddl(
    schema: &str,
    table: &str,
    drifts: &[Drift],
    warehouse: Warehouse,
) -> Result<Vec<String>> {
    let schema = naming::target_identifier(schema)?;
    let table = naming::target_identifier(table)?;
    if let Some(error) = drift_error(format!("{schema}.{table}"), drifts) {
        return Err(error);
    }
    let qualified = naming::quote_warehouse_qualified(&schema, &table);
    let key_list = |columns: &[String]| {
        columns
            .iter()
            .map(|c| naming::quote_warehouse(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A key to widen is dropped first and declared again last (r_ALTER_TABLE: ALTER COLUMN TYPE
    // cannot change a PRIMARY KEY column).
    let drop_key = drifts.iter().filter_map(|drift| match drift {
        Drift::WidenKeyOf { constraint, .. } => Some(format!(
            "ALTER TABLE {qualified} DROP CONSTRAINT {}",
            naming::quote_warehouse(constraint)
        )),
        _ => None,
    });
    let declare_key = drifts.iter().filter_map(|drift| match drift {
        Drift::WidenKeyOf {
            constraint,
            columns,
        } => Some(format!(
            "ALTER TABLE {qualified} ADD CONSTRAINT {} PRIMARY KEY ({})",
            naming::quote_warehouse(constraint),
            key_list(columns)
        )),
        Drift::DeclareKey { columns } => Some(format!(
            "ALTER TABLE {qualified} ADD PRIMARY KEY ({})",
            key_list(columns)
        )),
        _ => None,
    });
    let declare_key: Vec<String> = declare_key.collect();
    Ok(drop_key
        .chain(drifts.iter().filter_map(|drift| match drift {
            Drift::AddColumn { column, ddl_type } => Some(format!(
                "ALTER TABLE {qualified} ADD COLUMN {} {ddl_type}",
                naming::quote_warehouse(column)
            )),
            Drift::WidenVarchar { column, to, .. } => {
                let ty = match warehouse {
                    Warehouse::Redshift => format!("VARCHAR({to})"),
                    Warehouse::Postgres => "text".to_owned(),
                };
                Some(format!(
                    "ALTER TABLE {qualified} ALTER COLUMN {} TYPE {ty}",
                    naming::quote_warehouse(column)
                ))
            }
            Drift::Incompatible { .. }
            | Drift::MissingInSource { .. }
            | Drift::Retype { .. }
            | Drift::FinishRetype { .. }
            | Drift::DropNotNull { .. }
            | Drift::WidenKeyOf { .. }
            | Drift::DeclareKey { .. } => None,
        }))
        .chain(
            drifts
                .iter()
                .flat_map(|drift| retype_ddl(&qualified, drift, warehouse)),
        )
        .chain(declare_key)
        .collect())
}

/// The statements of a retype. PostgreSQL: `ALTER COLUMN … TYPE`. Redshift (r_ALTER_TABLE: only
/// VARCHAR changes in place, outside a transaction): add the temporary column (unless an
/// interrupted retype did), copy, drop the old column, rename — each autocommitted, and each
/// safe to repeat from where a crash left it (see [`Drift::FinishRetype`]).
pub(super) fn retype_ddl(qualified: &str, drift: &Drift, warehouse: Warehouse) -> Vec<String> {
    match (drift, warehouse) {
        (Drift::DropNotNull { column, .. }, Warehouse::Postgres) => vec![format!(
            "ALTER TABLE {qualified} ALTER COLUMN {} DROP NOT NULL",
            naming::quote_warehouse(column)
        )],
        (
            Drift::DropNotNull {
                column,
                ddl_type,
                temporary,
                temporary_exists,
            },
            Warehouse::Redshift,
        ) => retype_ddl(
            qualified,
            &Drift::Retype {
                column: column.clone(),
                ddl_type: ddl_type.clone(),
                temporary: temporary.clone(),
                temporary_exists: *temporary_exists,
                from_utc: false,
            },
            warehouse,
        ),
        (
            Drift::Retype {
                column,
                ddl_type,
                from_utc,
                ..
            },
            Warehouse::Postgres,
        ) => {
            let column = naming::quote_warehouse(column);
            let using = if *from_utc {
                format!(" USING {}", utc_wall_clock(&column))
            } else {
                String::new()
            };
            vec![format!(
                "ALTER TABLE {qualified} ALTER COLUMN {column} TYPE {ddl_type}{using}"
            )]
        }
        (
            Drift::Retype {
                column,
                ddl_type,
                temporary,
                temporary_exists,
                from_utc,
            },
            Warehouse::Redshift,
        ) => {
            let (column, temporary) = (
                naming::quote_warehouse(column),
                naming::quote_warehouse(temporary),
            );
            let value = if *from_utc {
                utc_wall_clock(&column)
            } else {
                column.clone()
            };
            let mut ddl = Vec::new();
            if !temporary_exists {
                ddl.push(format!(
                    "ALTER TABLE {qualified} ADD COLUMN {temporary} {ddl_type}"
                ));
            }
            ddl.push(format!("UPDATE {qualified} SET {temporary} = {value}"));
            ddl.push(format!("ALTER TABLE {qualified} DROP COLUMN {column}"));
            ddl.push(format!(
                "ALTER TABLE {qualified} RENAME COLUMN {temporary} TO {column}"
            ));
            ddl
        }
        (Drift::FinishRetype { column, temporary }, _) => vec![format!(
            "ALTER TABLE {qualified} RENAME COLUMN {} TO {}",
            naming::quote_warehouse(temporary),
            naming::quote_warehouse(column)
        )],
        _ => Vec::new(),
    }
}

/// A TIMESTAMPTZ column's values as zone-less UTC wall-clock time, whatever the session's time
/// zone (PostgreSQL; Redshift's AT TIME ZONE likewise returns TIMESTAMP for a TIMESTAMPTZ).
pub(super) fn utc_wall_clock(quoted_column: &str) -> String {
    format!("{quoted_column} AT TIME ZONE 'UTC'")
}

impl TableSchema {
    /// How an existing target table differs from this schema. Compatible differences (a wider
    /// integer, a longer VARCHAR, more decimal digits) are not drift. See [`drift_error`] and
    /// [`drift_ddl`] for what to do with the result.
    pub fn drift(&self, existing: &[TargetColumn], warehouse: Warehouse) -> Vec<Drift> {
        let mut drifts = Vec::new();
        for column in &self.columns {
            let temporary = retype_temporary(&column.target_name);
            let interrupted = existing.iter().find(|t| t.name == temporary);
            let Some(target) = existing.iter().find(|t| t.name == column.target_name) else {
                match interrupted {
                    Some(_) => drifts.push(Drift::FinishRetype {
                        column: column.target_name.clone(),
                        temporary,
                    }),
                    None => drifts.push(Drift::AddColumn {
                        column: column.target_name.clone(),
                        ddl_type: column.ty.warehouse_type(warehouse, self.json_in_redshift),
                    }),
                }
                continue;
            };
            match self.fit(column, target, warehouse) {
                // The type holds, but the target refuses NULL where the source (or tidemark:
                // zero dates, `oversize_in_redshift: null`) may now write one.
                Fit::Holds if column.nullable && !target.nullable => {
                    drifts.push(Drift::DropNotNull {
                        column: column.target_name.clone(),
                        ddl_type: column.ty.warehouse_type(warehouse, self.json_in_redshift),
                        temporary_exists: interrupted.is_some(),
                        temporary,
                    })
                }
                Fit::Holds => {}
                Fit::Retype { .. }
                    if warehouse == Warehouse::Redshift
                        && (contains_name(&self.primary_key, &column.name)
                            || target.primary_key.is_some()
                            || temporary.len() > naming::REDSHIFT_IDENTIFIER_MAX_BYTES) =>
                {
                    let needed = column.ty.warehouse_type(warehouse, self.json_in_redshift);
                    drifts.push(Drift::Incompatible {
                        column: column.target_name.clone(),
                        target_type: describe_target(target),
                        source_type: column.column_type.clone(),
                        hint: format!(
                            "the source widened it to `{needed}`; Redshift changes only VARCHAR in \
                             place, and a key column cannot be dropped and re-added: recreate the \
                             target with `{needed}` (drop it, `tidemark watermark reset`, sync)"
                        ),
                    });
                }
                Fit::Retype { from_utc } => drifts.push(Drift::Retype {
                    column: column.target_name.clone(),
                    ddl_type: column.ty.warehouse_type(warehouse, self.json_in_redshift),
                    temporary_exists: interrupted.is_some(),
                    temporary,
                    from_utc,
                }),
                Fit::Widen { from, to } => drifts.push(Drift::WidenVarchar {
                    column: column.target_name.clone(),
                    from,
                    to,
                }),
                Fit::Incompatible { extra_hint } => {
                    let needed = column.ty.warehouse_type(warehouse, self.json_in_redshift);
                    drifts.push(Drift::Incompatible {
                        column: column.target_name.clone(),
                        target_type: describe_target(target),
                        source_type: column.column_type.clone(),
                        hint: format!(
                            "the source needs `{needed}` and a warehouse column cannot change to \
                             that in place: recreate column `{}` of the target as `{needed}` and \
                             reload the table, or leave the column out with \
                             `columns: {{ exclude: [{}] }}` in the table's config{extra_hint}",
                            column.target_name, column.name
                        ),
                    });
                }
            }
        }
        for target in existing {
            if !self.columns.iter().any(|c| {
                c.target_name == target.name || retype_temporary(&c.target_name) == target.name
            }) {
                drifts.push(Drift::MissingInSource {
                    column: target.name.clone(),
                });
            }
        }
        if warehouse == Warehouse::Redshift {
            if let Some(drift) = self.key_drift(existing, &drifts) {
                drifts.push(drift);
            }
        }
        drifts
    }

    /// Redshift's PRIMARY KEY around `drifts`: dropped and declared again when a VARCHAR of it
    /// widens ([`Drift::WidenKeyOf`]); declared when the target lost it ([`Drift::DeclareKey`]).
    /// `self.primary_key` is the key the load mode declares (see [`TableSchema::declaring_key`]).
    fn key_drift(&self, existing: &[TargetColumn], drifts: &[Drift]) -> Option<Drift> {
        let widened_key = drifts.iter().find_map(|drift| match drift {
            Drift::WidenVarchar { column, .. } => existing
                .iter()
                .find(|t| &t.name == column)
                .and_then(|t| t.primary_key.clone()),
            _ => None,
        });
        if let Some(constraint) = widened_key {
            let columns = existing
                .iter()
                .filter(|t| t.primary_key.as_ref() == Some(&constraint))
                .map(|t| t.name.clone())
                .collect();
            return Some(Drift::WidenKeyOf {
                constraint,
                columns,
            });
        }
        let declared: Vec<String> = self
            .primary_key
            .iter()
            .filter_map(|key| self.column(key).map(|c| c.target_name.clone()))
            .collect();
        let lost = !existing.is_empty() && existing.iter().all(|t| t.primary_key.is_none());
        (lost && !declared.is_empty() && declared.len() == self.primary_key.len())
            .then_some(Drift::DeclareKey { columns: declared })
    }

    fn fit(&self, column: &Column, target: &TargetColumn, warehouse: Warehouse) -> Fit {
        let family = TargetFamily::of(target);
        if let Some(digits) = integer_digits(&column.ty) {
            return match family {
                TargetFamily::Integer { digits: held } if held >= digits => Fit::Holds,
                // A narrower integer column: every value it holds fits the wider type.
                TargetFamily::Integer { .. } => Fit::Retype { from_utc: false },
                TargetFamily::Numeric { precision, scale }
                    if numeric_holds(precision, scale, i64::from(digits), 0) =>
                {
                    Fit::Holds
                }
                TargetFamily::Boolean if is_tinyint1(&column.column_type) => Fit::Incompatible {
                    extra_hint: "; if the target was loaded with booleans, set \
                                 `tinyint1_as_boolean: true` for this table",
                },
                _ => Fit::incompatible(),
            };
        }
        match (&column.ty, family) {
            (ColumnType::Boolean { .. }, TargetFamily::Boolean) => Fit::Holds,
            (ColumnType::Boolean { .. }, TargetFamily::Integer { .. }) => Fit::Incompatible {
                extra_hint: "; if the target was loaded with integers, set \
                             `tinyint1_as_boolean: false` for this table",
            },
            (
                ColumnType::Decimal { precision, scale },
                TargetFamily::Numeric {
                    precision: p,
                    scale: s,
                },
            ) if numeric_holds(p, s, i64::from(*precision), i64::from(*scale)) => Fit::Holds,
            // A narrower decimal whose every value the source's new type holds.
            (
                ColumnType::Decimal { precision, scale },
                TargetFamily::Numeric {
                    precision: Some(p),
                    scale: s,
                },
            ) if numeric_holds(
                Some(i64::from(*precision)),
                Some(i64::from(*scale)),
                p,
                s.unwrap_or(0),
            ) =>
            {
                Fit::Retype { from_utc: false }
            }
            // MySQL TIMESTAMP → DATETIME: the range only grows (1970–2038 → 1000–9999).
            (ColumnType::Timestamp, TargetFamily::TimestampTz) => Fit::Retype { from_utc: true },
            (ColumnType::Bits { width: 64 }, TargetFamily::Numeric { precision, scale })
                if numeric_holds(precision, scale, i64::from(UNSIGNED_64_DIGITS), 0) =>
            {
                Fit::Holds
            }
            (ColumnType::Float32, TargetFamily::Real | TargetFamily::Double)
            | (ColumnType::Float64, TargetFamily::Double)
            | (ColumnType::Date, TargetFamily::Date)
            | (ColumnType::Timestamp, TargetFamily::Timestamp)
            | (ColumnType::TimestampTz, TargetFamily::TimestampTz)
            | (ColumnType::Text { .. }, TargetFamily::UnboundedText)
            | (ColumnType::Binary { .. }, TargetFamily::Bytea) => Fit::Holds,
            (ColumnType::Text { max_octets, .. }, TargetFamily::Varchar { length }) => {
                let needed = match warehouse {
                    Warehouse::Redshift => redshift_varchar_length(*max_octets),
                    Warehouse::Postgres => *max_octets,
                };
                Fit::varchar(length, needed)
            }
            (ColumnType::Json, family) => match (warehouse, self.json_in_redshift, family) {
                (Warehouse::Redshift, JsonTarget::Super, TargetFamily::Super)
                | (Warehouse::Postgres, _, TargetFamily::Json) => Fit::Holds,
                (Warehouse::Redshift, JsonTarget::Varchar, TargetFamily::Varchar { length }) => {
                    Fit::varchar(length, REDSHIFT_VARCHAR_MAX_OCTETS)
                }
                (Warehouse::Redshift, _, TargetFamily::Super | TargetFamily::Varchar { .. }) => {
                    Fit::Incompatible {
                        extra_hint: "; or set `json_in_redshift` for this table to match the \
                                     existing column",
                    }
                }
                _ => Fit::incompatible(),
            },
            (ColumnType::Binary { max_octets }, TargetFamily::Varbyte { length })
                if length.is_none_or(|l| {
                    u64::try_from(l).is_ok_and(|l| l >= redshift_varbyte_length(*max_octets))
                }) =>
            {
                Fit::Holds
            }
            _ => Fit::incompatible(),
        }
    }
}
