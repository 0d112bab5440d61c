//! Where in the config text a problem is: the line and column of a key path, and serde's and the
//! checks' errors turned into `file:line:column: message`.

use std::collections::HashMap;

use crate::error::Error;

/// A 1-based `(line, column)` in the config text.
type LineColumn = (usize, usize);

/// Finds the line and column of a key path in the YAML text, for errors found after parsing.
pub(super) struct KeyLocator {
    keys: Vec<(Vec<String>, usize, usize)>,
}

impl KeyLocator {
    pub(super) fn new(text: &str) -> Self {
        use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
        use yaml_rust2::scanner::Marker;

        enum Frame {
            Map { expecting_key: bool },
            Seq { index: usize },
        }
        struct Collector {
            stack: Vec<Frame>,
            path: Vec<String>,
            keys: Vec<(Vec<String>, usize, usize)>,
        }
        impl Collector {
            /// A value (scalar or collection) begins at the current position.
            fn value_started(&mut self, is_collection: bool) {
                match self.stack.last_mut() {
                    Some(Frame::Map { expecting_key }) => {
                        *expecting_key = true;
                        if !is_collection {
                            self.path.pop();
                        }
                    }
                    Some(Frame::Seq { index }) => {
                        self.path.push(index.to_string());
                        *index += 1;
                        if !is_collection {
                            self.path.pop();
                        }
                    }
                    None => {}
                }
            }
        }
        impl MarkedEventReceiver for Collector {
            fn on_event(&mut self, event: Event, mark: Marker) {
                match event {
                    Event::Scalar(value, ..) => {
                        if let Some(Frame::Map { expecting_key }) = self.stack.last_mut() {
                            if *expecting_key {
                                *expecting_key = false;
                                self.path.push(value);
                                self.keys
                                    .push((self.path.clone(), mark.line(), mark.col() + 1));
                                return;
                            }
                        }
                        self.value_started(false);
                    }
                    Event::Alias(_) => self.value_started(false),
                    Event::MappingStart(..) => {
                        self.value_started(true);
                        self.stack.push(Frame::Map {
                            expecting_key: true,
                        });
                    }
                    Event::SequenceStart(..) => {
                        self.value_started(true);
                        self.stack.push(Frame::Seq { index: 0 });
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        self.stack.pop();
                        if !self.stack.is_empty() {
                            self.path.pop();
                        }
                    }
                    _ => {}
                }
            }
        }

        let mut collector = Collector {
            stack: Vec::new(),
            path: Vec::new(),
            keys: Vec::new(),
        };
        // A text that does not parse never gets here: serde_yaml rejected it first.
        let _ = Parser::new_from_str(text).load(&mut collector, false);
        KeyLocator {
            keys: collector.keys,
        }
    }

    /// Every key written twice in one mapping, with the `line:column` of both: YAML forbids them,
    /// and serde_yaml would silently keep the last (a second `tables:` block replaced the first).
    pub(super) fn duplicates(&self) -> Vec<(String, LineColumn, LineColumn)> {
        let mut first_seen: HashMap<&[String], LineColumn> = HashMap::new();
        let mut duplicates = Vec::new();
        for (path, line, col) in &self.keys {
            match first_seen.get(path.as_slice()) {
                Some(first) => duplicates.push((path.join("."), *first, (*line, *col))),
                None => {
                    first_seen.insert(path, (*line, *col));
                }
            }
        }
        duplicates
    }

    /// `line:column` of the first key called `name` on or after `from_line`.
    pub(super) fn first_key_named_from(
        &self,
        name: &str,
        from_line: usize,
    ) -> Option<(usize, usize)> {
        self.keys
            .iter()
            .filter(|(path, line, _)| *line >= from_line && path.last().is_some_and(|k| k == name))
            .map(|(_, line, col)| (*line, *col))
            .min()
    }

    /// `line:column` of the deepest key of `path` that exists in the text; where `path` ends at a
    /// list item (or a key the text spells another way), the item's first key.
    pub(super) fn locate(&self, path: &[&str]) -> Option<(usize, usize)> {
        let starts_with = |key_path: &[String], depth: usize| {
            key_path.len() >= depth && key_path.iter().zip(&path[..depth]).all(|(a, b)| a == b)
        };
        (1..=path.len()).rev().find_map(|depth| {
            let exact = self
                .keys
                .iter()
                .find(|(key_path, ..)| key_path.len() == depth && starts_with(key_path, depth));
            exact
                .or_else(|| {
                    self.keys
                        .iter()
                        .find(|(key_path, ..)| starts_with(key_path, depth))
                })
                .map(|(_, line, col)| (*line, *col))
        })
    }
}

/// One error for `found` (each `location: message`, at least one): the first, then the others.
pub(super) fn problems_error(file: &str, mut found: Vec<String>) -> Error {
    let first = found.remove(0);
    let (location, message) = first.split_once(": ").unwrap_or((file, &first));
    let mut message = message.to_owned();
    for more in found {
        message.push_str("\n  also: ");
        message.push_str(&more);
    }
    Error::config(location, message)
}

/// Collects semantic errors with their locations.
pub(super) struct Problems<'a> {
    pub(super) file: &'a str,
    pub(super) locator: KeyLocator,
    pub(super) found: Vec<String>,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, path: &[&str], message: impl Into<String>) {
        let location = match self.locator.locate(path) {
            Some((line, col)) => format!("{}:{line}:{col}", self.file),
            None => self.file.to_owned(),
        };
        self.found.push(format!("{location}: {}", message.into()));
    }
}

pub(super) fn yaml_error(file: &str, text: &str, err: &serde_yaml::Error) -> Error {
    let message = err.to_string();
    // serde_yaml appends " at line L column C" to its message; the location goes in front instead.
    let message = match message.rfind(" at line ") {
        Some(cut) if err.location().is_some() => message[..cut].to_owned(),
        _ => message,
    };
    let reported = err.location().map(|at| (at.line(), at.column()));
    // Values inside a `kind`-tagged connection are buffered by serde, which then reports the
    // enclosing mapping; find the offending key or reference itself, at or after that place.
    let refined = reported.and_then(|(line, _)| {
        if let Some(field) = backticked_after(&message, "unknown field `") {
            KeyLocator::new(text).first_key_named_from(field, line)
        } else if let Some(variable) = backticked_after(&message, "environment variable `") {
            first_text_from(text, &format!("${{{variable}"), line)
        } else {
            None
        }
    });
    let location = match refined.or(reported) {
        Some((line, column)) => format!("{file}:{line}:{column}"),
        None => file.to_owned(),
    };
    let hint = if message.contains("unknown field") || message.contains("unknown variant") {
        " (see the configuration reference in README.md)"
    } else {
        ""
    };
    Error::config(location, format!("{message}{hint}"))
}

/// The text between `marker` and the next backtick.
fn backticked_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let start = message.find(marker)? + marker.len();
    let length = message[start..].find('`')?;
    Some(&message[start..start + length])
}

/// `line:column` of the first occurrence of `needle` on or after `from_line` (1-based).
fn first_text_from(text: &str, needle: &str, from_line: usize) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(index, line)| {
            line.find(needle)
                .map(|byte| (index + 1, line[..byte].chars().count() + 1))
        })
}
