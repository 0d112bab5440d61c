//! What `tidemark sync` shows on stderr while it runs: a progress bar per table on a terminal
//! (indicatif), one plain line per stage otherwise (logs, CI). Stdout stays for the answer.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidemark::asl::TaskFailure;
use tidemark::extract::{ExtractResult, PlanResult};
use tidemark::quality::Verdict;
use tidemark::run::RunContext;
use tidemark::steps::load::{LoadStatus, LoadSubmission};
use tidemark::steps::local_sync::StepObserver;
use tidemark::steps::watermark::CommitResult;
use tidemark::watermark::LoadedRun;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Display {
    /// A live bar per table (stderr is a terminal).
    Bars,
    /// One line per stage of each table.
    Lines,
    /// Nothing (`--quiet`).
    Off,
}

impl Display {
    /// Bars on a terminal, lines elsewhere, nothing when quiet.
    pub(crate) fn for_stderr(quiet: bool) -> Display {
        match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => Display::Off,
            (false, true) => Display::Bars,
            (false, false) => Display::Lines,
        }
    }
}

/// One table's progress.
struct TableProgress {
    bar: Option<ProgressBar>,
    /// Rows and files written so far, per chunk (an extract answer counts its chunk's total).
    chunks: BTreeMap<u32, (u64, u32)>,
}

impl TableProgress {
    fn extracted(&self) -> (u64, u32) {
        self.chunks
            .values()
            .fold((0, 0), |(rows, files), (r, f)| (rows + r, files + f))
    }
}

/// Turns the steps of a local execution into progress. See [`Display`].
pub(crate) struct SyncProgress {
    display: Display,
    bars: MultiProgress,
    tables: Mutex<BTreeMap<String, TableProgress>>,
}

const BAR_TEMPLATE: &str =
    "{spinner:.green} {prefix:<32!} [{elapsed_precise}] {wide_bar:.cyan/blue} {human_pos}/{human_len} rows  {msg}";
const SPINNER_TEMPLATE: &str =
    "{spinner:.green} {prefix:<32!} [{elapsed_precise}] {human_pos} rows  {msg}";

impl SyncProgress {
    pub(crate) fn new(display: Display) -> SyncProgress {
        SyncProgress {
            display,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            tables: Mutex::new(BTreeMap::new()),
        }
    }

    /// Prints a line for a table: above the bars on a terminal, plainly otherwise.
    fn say(&self, table: &str, text: &str) {
        match self.display {
            Display::Off => {}
            Display::Lines => eprintln!("sync: {table}: {text}"),
            Display::Bars => {
                // The bar's message carries the news; a printed line would scroll the bars away.
                if let Some(bar) = self.bar(table) {
                    bar.set_message(text.to_owned());
                }
            }
        }
    }

    fn bar(&self, table: &str) -> Option<ProgressBar> {
        let tables = self.tables.lock().ok()?;
        tables.get(table).and_then(|t| t.bar.clone())
    }

    fn begun(&self, table: &str, run: &RunContext) {
        let bar = (self.display == Display::Bars).then(|| {
            let bar = self.bars.add(ProgressBar::no_length());
            bar.set_style(style(SPINNER_TEMPLATE));
            bar.set_prefix(table.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if let Ok(mut tables) = self.tables.lock() {
            tables.insert(
                table.to_owned(),
                TableProgress {
                    bar,
                    chunks: BTreeMap::new(),
                },
            );
        }
        let from = match run.start_cursor.is_start() {
            true => "from the start of the table".to_owned(),
            false => format!("after {}", run.start_cursor),
        };
        let to = match run.ceiling.is_unbounded() {
            true => "the end of the table".to_owned(),
            false => run.ceiling.to_string(),
        };
        self.say(
            table,
            &format!(
                "run {} begun: {} {from} up to {to}",
                run.run_id, run.strategy
            ),
        );
    }

    fn planned(&self, table: &str, plan: &PlanResult) {
        if let Some(bar) = self.bar(table) {
            bar.set_length(plan.run_rows.max(1));
            bar.set_style(style(BAR_TEMPLATE));
        }
        let mut text = format!(
            "extracting in {} chunk(s), about {} of the table's about {} rows, in {}",
            plan.chunks.len(),
            plan.run_rows,
            plan.estimated_rows,
            plan.order
        );
        if plan.null_cursor_rows > 0 {
            text.push_str(&format!(
                " ({} with a NULL cursor, never read)",
                plan.null_cursor_rows
            ));
        }
        self.say(table, &text);
    }

    fn extracted(&self, table: &str, result: &ExtractResult) {
        let totals = self.tables.lock().ok().and_then(|mut tables| {
            let progress = tables.get_mut(table)?;
            progress
                .chunks
                .insert(result.chunk, (result.rows, result.files));
            let (rows, files) = progress.extracted();
            if let Some(bar) = &progress.bar {
                if bar.length().is_some_and(|length| rows > length) {
                    bar.set_length(rows);
                }
                bar.set_position(rows);
            }
            Some((rows, files))
        });
        if let Some((rows, files)) = totals {
            self.say(
                table,
                &format!(
                    "extracted {rows} rows into {files} file(s) (chunk {} {})",
                    result.chunk,
                    if result.done { "done" } else { "continues" }
                ),
            );
        }
    }

    fn finish(&self, table: &str, text: String) {
        self.say(table, &text);
        if let Some(bar) = self.bar(table) {
            bar.finish_with_message(text);
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The table a step's payload is about: `table`, or `run.table`.
fn payload_table(payload: &Value) -> Option<String> {
    payload["table"]
        .as_str()
        .or_else(|| payload["run"]["table"].as_str())
        .map(str::to_owned)
}

fn parse<T: DeserializeOwned>(answer: &Value) -> Option<T> {
    serde_json::from_value(answer.clone()).ok()
}

fn loaded_rows(loaded: &[LoadedRun]) -> u64 {
    loaded.iter().map(|run| run.rows_loaded).sum()
}

impl StepObserver for SyncProgress {
    fn started(&self, _function: &str, payload: &Value) {
        let Some(table) = payload_table(payload) else {
            return;
        };
        match payload["action"].as_str() {
            Some("submit") => self.say(&table, "loading into the target"),
            Some("fail") => {
                let error = tidemark::steps::watermark::describe_error(&payload["error"]);
                self.finish(&table, format!("failed: {error}"));
            }
            _ => {}
        }
    }

    fn finished(&self, _function: &str, payload: &Value, answer: &Result<Value, TaskFailure>) {
        let (Some(table), Ok(answer)) = (payload_table(payload), answer) else {
            return;
        };
        match payload["action"].as_str() {
            Some("begin") => {
                if let Some(run) = parse::<RunContext>(answer) {
                    self.begun(&table, &run);
                }
            }
            Some("plan") => {
                if let Some(plan) = parse::<PlanResult>(answer) {
                    self.planned(&table, &plan);
                }
            }
            Some("extract") => {
                if let Some(result) = parse::<ExtractResult>(answer) {
                    self.extracted(&table, &result);
                }
            }
            Some("commit") => {
                if let Some(commit) = parse::<CommitResult>(answer) {
                    let quality = match commit.verdict {
                        Some(Verdict::Quarantined) => format!(
                            "; QUARANTINED (failed {}): held back, with every later run, until `tidemark quality release` or `quality drop`",
                            commit.failed_checks.join(", ")
                        ),
                        Some(Verdict::Warned) => {
                            format!("; checks warned: {}", commit.failed_checks.join(", "))
                        }
                        Some(Verdict::Passed) | None => String::new(),
                    };
                    let text = format!(
                        "committed run {}: {} rows, {} file(s), {} bytes; {} run(s) pending{quality}",
                        commit.run_id, commit.rows, commit.files, commit.bytes, commit.pending_runs
                    );
                    let backup_only = payload["run"]["mode"].as_str() == Some("backup_only");
                    if backup_only {
                        self.finish(&table, text);
                    } else {
                        self.say(&table, &text);
                    }
                }
            }
            Some("submit") => {
                if let Some(submission) = parse::<LoadSubmission>(answer) {
                    if submission.runs.is_empty() {
                        self.say(&table, "nothing pending to load");
                    }
                }
            }
            Some("status") => {
                if let Some(status) = parse::<LoadStatus>(answer) {
                    self.say(&table, &format!("load {:?}", status.state).to_lowercase());
                }
            }
            Some("commit_load") => {
                let loaded: Vec<LoadedRun> = parse(&payload["loaded"]).unwrap_or_default();
                self.finish(
                    &table,
                    format!(
                        "loaded {} rows from {} run(s)",
                        loaded_rows(&loaded),
                        loaded.len()
                    ),
                );
            }
            _ => {}
        }
    }
}

impl Drop for SyncProgress {
    /// Bars of tables that never finished (an execution that failed outside a table) stop here,
    /// so the terminal is left clean.
    fn drop(&mut self) {
        if let Ok(tables) = self.tables.lock() {
            for bar in tables.values().filter_map(|t| t.bar.as_ref()) {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_names_its_table_directly_or_through_its_run() {
        assert_eq!(
            payload_table(&serde_json::json!({"action": "begin", "table": "shop.orders"})),
            Some("shop.orders".to_owned())
        );
        assert_eq!(
            payload_table(
                &serde_json::json!({"action": "extract", "run": {"table": "shop.items"}})
            ),
            Some("shop.items".to_owned())
        );
        assert_eq!(
            payload_table(&serde_json::json!({"action": "prepare"})),
            None
        );
    }
}
