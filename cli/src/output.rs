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

/// A cursor or ceiling as its values (`timestamp …, key …` / `id …`); `None` when it names no
/// position.
pub(crate) fn cursor_text(cursor: &impl serde::Serialize) -> Option<String> {
    let value = serde_json::to_value(cursor).unwrap_or_default();
    let parts: Vec<String> = ["timestamp", "id"]
        .into_iter()
        .filter_map(|field| value[field].as_str().map(|v| format!("{field} {v}")))
        .chain(
            value["key"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(|k| format!("key {k}"))),
        )
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}
