//! JSONPath as the runner supports it (`$`, `$.a.b`, `$.a[0]`, and `$$…` for the context
//! object), and the input and output processing built on it: `InputPath`, templates with `.$`
//! keys, `ResultPath` and `OutputPath`.

use serde_json::{Map, Value};

use super::model::{ResultPath, Selection};

#[derive(Debug, Clone, PartialEq)]
enum PathSegment {
    Field(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<PathSegment>, String> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("`{path}` is not a JSONPath"))?;
    let mut segments = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut field = String::new();
                while let Some(&next) = chars.peek() {
                    if next == '.' || next == '[' {
                        break;
                    }
                    field.push(next);
                    chars.next();
                }
                if field.is_empty() {
                    return Err(format!("`{path}` has an empty field"));
                }
                segments.push(PathSegment::Field(field));
            }
            '[' => {
                let mut digits = String::new();
                for next in chars.by_ref() {
                    if next == ']' {
                        break;
                    }
                    digits.push(next);
                }
                let index = digits
                    .parse()
                    .map_err(|_| format!("`{path}`: only numeric indexes are supported"))?;
                segments.push(PathSegment::Index(index));
            }
            _ => return Err(format!("`{path}` is not supported by the local runner")),
        }
    }
    Ok(segments)
}

/// Reads `path` from `input` (`$…`) or from the context object (`$$…`).
pub(super) fn read_path(input: &Value, ctx: &Value, path: &str) -> Result<Value, String> {
    let (root, path_in_root) = match path.strip_prefix("$$") {
        Some(rest) => (ctx, format!("${rest}")),
        None => (input, path.to_owned()),
    };
    let mut value = root;
    for segment in parse_path(&path_in_root)? {
        value = match (&segment, value) {
            (PathSegment::Field(field), Value::Object(object)) => object.get(field),
            (PathSegment::Index(index), Value::Array(array)) => array.get(*index),
            _ => None,
        }
        .ok_or_else(|| format!("the path `{path}` does not exist in the state's input"))?;
    }
    Ok(value.clone())
}

/// `InputPath` or `OutputPath` applied to `value`.
pub(super) fn select(selection: &Selection, value: Value) -> Result<Value, String> {
    match selection {
        Selection::Whole => Ok(value),
        Selection::Nothing => Ok(Value::Object(Map::new())),
        Selection::Path(path) => read_path(&value, &Value::Null, path),
    }
}

/// `ResultPath`: where `result` goes in `input`. A missing field on the way is created; a field
/// on the way that holds something other than an object is an error, as in Step Functions.
pub(super) fn place_result(
    path: &ResultPath,
    input: Value,
    result: Value,
) -> Result<Value, String> {
    let fields = match path {
        ResultPath::Replace => return Ok(result),
        ResultPath::Discard => return Ok(input),
        ResultPath::At(fields) => fields,
    };
    let not_an_object = || format!("ResultPath `$.{}`: not an object", fields.join("."));
    let (last, parents) = fields.split_last().ok_or_else(not_an_object)?;
    let mut root = match input {
        Value::Object(_) => input,
        _ => Value::Object(Map::new()),
    };
    let mut cursor = &mut root;
    for field in parents {
        let Value::Object(object) = cursor else {
            return Err(not_an_object());
        };
        cursor = object
            .entry(field.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(object) = cursor else {
        return Err(not_an_object());
    };
    object.insert(last.clone(), result);
    Ok(root)
}

/// Fills a Parameters/ItemSelector/ResultSelector template: keys ending in `.$` take a path.
pub(super) fn render(template: &Value, input: &Value, ctx: &Value) -> Result<Value, String> {
    match template {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match key.strip_suffix(".$") {
                    Some(stripped) => {
                        let path = value
                            .as_str()
                            .ok_or_else(|| format!("`{key}` must be a path string"))?;
                        out.insert(stripped.to_owned(), read_path(input, ctx, path)?);
                    }
                    None => {
                        out.insert(key.clone(), render(value, input, ctx)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(values) => values
            .iter()
            .map(|v| render(v, input, ctx))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}
