//! How commands print: one JSON document with `--json`, plain lines otherwise. Nothing else in
//! the CLI writes to stdout.

/// Prints one JSON document.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!("{value:#}");
}

/// Prints a serializable answer as JSON, or the given human lines.
pub(crate) fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> Vec<String>,
) {
    if json {
        match serde_json::to_value(value) {
            Ok(value) => print_json(&value),
            Err(err) => eprintln!("error: cannot encode the answer: {err}"),
        }
    } else {
        for line in human() {
            println!("{line}");
        }
    }
}
