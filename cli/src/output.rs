//! How commands print: one JSON document with `--json`, plain lines otherwise. Nothing else in
//! the CLI writes to stdout.

/// Exit status when stdout's reader went away (`tidemark --json … | head`): 128 + SIGPIPE, as
/// a Unix tool killed by the signal reports.
const BROKEN_PIPE_EXIT: i32 = 141;

/// Writes one line to stdout, ending quietly on a closed pipe like [`print_text`].
pub(crate) fn print_line(line: &str) {
    print_text(&format!("{line}\n"));
}

/// Writes text to stdout as it is (no newline added). A reader that closed the pipe ends the
/// process quietly (no panic, no message) with [`BROKEN_PIPE_EXIT`].
pub(crate) fn print_text(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        eprintln!("error: cannot write to stdout: {err}");
    }
}

/// Asks `question` on a terminal (`y` or `yes`, any case, confirms); `yes` (the command's
/// `--yes`, which `flags` names for the error) skips the question. Not confirmed, or no terminal
/// to ask on, is a usage error (exit 2) that changes nothing. The one confirmation of every
/// command.
pub(crate) fn confirm(question: &str, yes: bool, flags: &str) -> Result<(), crate::Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(crate::Failure::config(anyhow::anyhow!(
            "{question}: refusing without a terminal to confirm; pass {flags}"
        )));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok();
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(crate::Failure::config(anyhow::anyhow!(
            "not confirmed; nothing changed"
        )))
    }
}

/// Prints one JSON document.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => print_line(&text),
        Err(err) => eprintln!("error: cannot encode the answer: {err}"),
    }
}

/// Prints a serializable answer as JSON, or the given human lines.
pub(crate) fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> Vec<String>,
) {
    if json {
        print_json(value);
    } else {
        for line in human() {
            print_line(&line);
        }
    }
}
