//! The order of a pipeline's tables by `depends_on`: the waves a sync runs them in, and the
//! cycles and unknown names `config check` refuses.

use std::collections::{BTreeMap, BTreeSet};

/// Why a table's `depends_on` cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyProblem {
    /// It names a table that is not in the pipeline.
    Unknown {
        /// The table whose `depends_on` it is.
        table: String,
        /// The name it gives.
        dependency: String,
    },
    /// It closes a cycle: each table waits for the next, the last for the first.
    Cycle(Vec<String>),
}

impl std::fmt::Display for DependencyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DependencyProblem::Unknown { dependency, .. } => write!(
                f,
                "`{dependency}` is not a table of this pipeline: name a key of its `tables` (`db.table`); a table of another pipeline syncs in that pipeline's own executions"
            ),
            DependencyProblem::Cycle(cycle) if cycle.len() == 1 => {
                write!(f, "`{}` depends on itself: remove it from its `depends_on`", cycle[0])
            }
            DependencyProblem::Cycle(cycle) => write!(
                f,
                "a cycle: {} -> {}; no table of it could ever start: remove one of these dependencies",
                cycle.join(" -> "),
                cycle[0]
            ),
        }
    }
}

/// The problems of a pipeline's `depends_on`, each with the table whose entry it is: unknown
/// names, then each cycle once (reported at its first table in name order).
pub fn problems(depends_on: &BTreeMap<String, Vec<String>>) -> Vec<(String, DependencyProblem)> {
    let mut found = Vec::new();
    for (table, dependencies) in depends_on {
        for dependency in dependencies {
            if !depends_on.contains_key(dependency) {
                found.push((
                    table.clone(),
                    DependencyProblem::Unknown {
                        table: table.clone(),
                        dependency: dependency.clone(),
                    },
                ));
            }
        }
    }
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for table in depends_on.keys() {
        if reported.contains(table) {
            continue;
        }
        if let Some(cycle) = cycle_through(table, depends_on) {
            reported.extend(cycle.iter().cloned());
            found.push((table.clone(), DependencyProblem::Cycle(cycle)));
        }
    }
    found
}

/// A cycle that starts and ends at `start`, if there is one: a depth-first search along
/// `depends_on` that remembers its path.
fn cycle_through(start: &str, depends_on: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    fn walk(
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
        depends_on: &BTreeMap<String, Vec<String>>,
    ) -> bool {
        let current = path.last().cloned().unwrap_or_default();
        for next in depends_on.get(&current).into_iter().flatten() {
            if next == start {
                return true;
            }
            if depends_on.contains_key(next) && seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(start, path, seen, depends_on) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(start, &mut path, &mut seen, depends_on).then_some(path)
}

/// One table of a wave, with the tables it waits for in this sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    /// The table, `db.table`.
    pub table: String,
    /// Its dependencies that run earlier in the same sync: each must succeed first.
    pub after: Vec<String>,
}

/// The waves of one sync of `tables` (in the order given): the first holds every table that
/// waits for none of the others, each later one the tables whose dependencies are all in earlier
/// waves. Only dependencies among `tables` count: a table synced alone does not wait for tables
/// this sync does not run. The config is free of cycles (`problems`); a cycle left anyway puts
/// its tables in a last wave rather than losing them.
pub fn waves(tables: &[String], depends_on: impl Fn(&str) -> Vec<String>) -> Vec<Vec<Ordered>> {
    let selected: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let mut pending: Vec<Ordered> = tables
        .iter()
        .map(|table| Ordered {
            table: table.clone(),
            after: depends_on(table)
                .into_iter()
                .filter(|dependency| selected.contains(dependency.as_str()) && dependency != table)
                .collect(),
        })
        .collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut waves = Vec::new();
    while !pending.is_empty() {
        let (ready, waiting): (Vec<Ordered>, Vec<Ordered>) = pending
            .into_iter()
            .partition(|item| item.after.iter().all(|d| placed.contains(d)));
        if ready.is_empty() {
            waves.push(waiting);
            break;
        }
        placed.extend(ready.iter().map(|item| item.table.clone()));
        waves.push(ready);
        pending = waiting;
    }
    waves
}

/// The waves of a sync of `tables` of `pipeline`, by their `depends_on` (see [`waves`]).
pub fn of_pipeline(pipeline: &crate::config::Pipeline, tables: &[String]) -> Vec<Vec<Ordered>> {
    waves(tables, |table| {
        pipeline
            .tables
            .get(table)
            .map(|config| config.depends_on.clone())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(table, deps)| {
                (
                    (*table).to_owned(),
                    deps.iter().map(|d| (*d).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn names(waves: &[Vec<Ordered>]) -> Vec<Vec<&str>> {
        waves
            .iter()
            .map(|wave| wave.iter().map(|item| item.table.as_str()).collect())
            .collect()
    }

    #[test]
    fn tables_wait_for_every_dependency_and_keep_their_order_within_a_wave() {
        let g = graph(&[
            ("s.orders", &["s.customers", "s.products"]),
            ("s.products", &[]),
            ("s.customers", &[]),
            ("s.daily", &["s.orders"]),
            ("s.audit", &[]),
        ]);
        let tables: Vec<String> = g.keys().cloned().collect();
        let waves = waves(&tables, |t| g[t].clone());
        assert_eq!(
            names(&waves),
            vec![
                vec!["s.audit", "s.customers", "s.products"],
                vec!["s.orders"],
                vec!["s.daily"]
            ]
        );
        assert_eq!(waves[1][0].after, vec!["s.customers", "s.products"]);
    }

    #[test]
    fn a_table_synced_without_its_dependency_does_not_wait_for_it() {
        let g = graph(&[("s.orders", &["s.customers"]), ("s.customers", &[])]);
        let waves = waves(&["s.orders".to_owned()], |t| g[t].clone());
        assert_eq!(names(&waves), vec![vec!["s.orders"]]);
        assert!(waves[0][0].after.is_empty());
    }

    #[test]
    fn no_dependencies_make_one_wave() {
        let tables = vec!["a.x".to_owned(), "a.y".to_owned()];
        assert_eq!(
            names(&waves(&tables, |_| Vec::new())),
            vec![vec!["a.x", "a.y"]]
        );
    }

    #[test]
    fn unknown_names_and_each_cycle_are_reported_once() {
        let g = graph(&[
            ("s.a", &["s.b"]),
            ("s.b", &["s.c"]),
            ("s.c", &["s.a"]),
            ("s.d", &["s.d", "s.nope"]),
            ("s.e", &["s.a"]),
        ]);
        let found = problems(&g);
        let text: Vec<String> = found.iter().map(|(t, p)| format!("{t}: {p}")).collect();
        assert_eq!(found.len(), 3, "{text:#?}");
        assert!(text[0].starts_with("s.d: `s.nope` is not a table of this pipeline"));
        assert_eq!(
            found[1],
            (
                "s.a".to_owned(),
                DependencyProblem::Cycle(vec!["s.a".into(), "s.b".into(), "s.c".into()])
            )
        );
        assert!(
            text[2].starts_with("s.d: `s.d` depends on itself"),
            "{text:#?}"
        );
    }

    #[test]
    fn a_graph_without_cycles_has_no_problems() {
        let g = graph(&[("s.a", &["s.b", "s.c"]), ("s.b", &["s.c"]), ("s.c", &[])]);
        assert!(problems(&g).is_empty());
    }
}
