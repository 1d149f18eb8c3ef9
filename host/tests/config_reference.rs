//! docs/config.md cannot drift from the config types: every key the types accept (read from
//! their `Deserialize` by `taskpod::config::reference`) has exactly one row in a reference
//! table of the page, every row names a key, each row gives a type, a default and an example,
//! and the examples — put together into one file — parse as a taskpod config, as does every
//! YAML sample on the page.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use taskpod::config::Config;
use taskpod::config::reference::{Key, config_keys};

const PAGE: &str = "docs/config.md";
const HEADER: [&str; 5] = ["key", "type", "default", "example", "meaning"];

/// One row of a reference table.
#[derive(Debug)]
struct Row {
    path: String,
    kind: String,
    default: String,
    example: String,
    section: String,
    line: usize,
}

fn page() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(PAGE);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn unquote(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

/// The rows of every table whose header is [`HEADER`].
fn rows(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut section = String::new();
    let mut in_table = false;
    for (n, line) in text.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_owned();
        }
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = cells(line);
        if cells == HEADER {
            in_table = true;
            continue;
        }
        if !in_table
            || cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        let at = format!("{PAGE}:{}", n + 1);
        assert_eq!(
            cells.len(),
            HEADER.len(),
            "{at}: a reference row has the columns | key | type | default | example | meaning | \
             (a `|` inside a cell must not appear): {line}"
        );
        let path = unquote(&cells[0]).unwrap_or_else(|| {
            panic!("{at}: the key must be in backticks, e.g. `runner.capacity`")
        });
        let example = unquote(&cells[3]).unwrap_or_else(|| {
            panic!("{at}: the example must be YAML in backticks, e.g. `PT4H` or `{{a: b}}`")
        });
        for (i, cell) in cells.iter().enumerate() {
            assert!(!cell.is_empty(), "{at}: the {} column is empty", HEADER[i]);
        }
        rows.push(Row {
            path: path.to_owned(),
            kind: cells[1].clone(),
            default: cells[2].clone(),
            example: example.to_owned(),
            section: section.clone(),
            line: n + 1,
        });
    }
    rows
}

/// The first segment of a key path (`adapters` for `adapters[].limits.memory`).
fn top(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// Where a missing key's row belongs: the section holding its siblings.
fn section_for(path: &str, rows: &[Row]) -> String {
    let parent = path.rsplit_once('.').map(|(p, _)| p);
    rows.iter()
        .find(|r| parent.is_some_and(|p| r.path.rsplit_once('.').map(|(q, _)| q) == Some(p)))
        .or_else(|| rows.iter().find(|r| top(&r.path) == top(path)))
        .or_else(|| {
            rows.iter()
                .find(|r| !path.contains(['.', '[']) && !r.path.contains(['.', '[']))
        })
        .map(|r| format!("the table under `## {}`", r.section))
        .unwrap_or_else(|| {
            format!(
                "a new section `## `{}`` with the reference table header",
                top(path)
            )
        })
}

fn missing_row(key: &Key, rows: &[Row]) -> String {
    format!(
        "  - config key `{}` (Rust type `{}`) has no row. Add\n      | `{}` | TYPE | DEFAULT | \
         `EXAMPLE` | WHAT IT DOES |\n    to {}",
        key.path,
        key.rust_type,
        key.path,
        section_for(&key.path, rows)
    )
}

/// Puts `value` at `path` in `doc` (`a.b`, `list[].c`, `map.<name>.d`).
fn insert(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut segments: Vec<&str> = path.split('.').collect();
    let last = segments.pop().expect("a path");
    let mut here = doc;
    for segment in segments {
        let (name, list) = match segment.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (segment, false),
        };
        let name = if name == "<name>" { "example" } else { name };
        let slot = here.entry(name).or_insert_with(|| {
            if list {
                Value::Array(vec![Value::Object(Map::new())])
            } else {
                Value::Object(Map::new())
            }
        });
        let object = if list {
            slot.as_array_mut().and_then(|a| a.first_mut())
        } else {
            Some(slot)
        };
        here = object
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{path}: `{name}` is both a key and a section"));
    }
    let (last, list) = match last.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (last, false),
    };
    let last = if last == "<name>" { "example" } else { last };
    here.insert(
        last.to_owned(),
        if list {
            Value::Array(vec![value])
        } else {
            value
        },
    );
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let keys = config_keys().expect("the config types can be walked");
    let text = page();
    let rows = rows(&text);
    assert!(!rows.is_empty(), "{PAGE} has no reference table");
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        if let Some(first) = seen.insert(&row.path, row.line) {
            panic!(
                "{PAGE}:{}: `{}` is documented twice (first at line {first}); keep one row",
                row.line, row.path
            );
        }
    }
    let documented: BTreeSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    let known: BTreeSet<&str> = keys.iter().map(|k| k.path.as_str()).collect();
    let mut problems: Vec<String> = keys
        .iter()
        .filter(|k| !documented.contains(k.path.as_str()))
        .map(|k| missing_row(k, &rows))
        .collect();
    problems.extend(rows.iter().filter(|r| !known.contains(r.path.as_str())).map(|r| {
        format!(
            "  - {PAGE}:{}: row `{}` names no config key (renamed or removed?): rename or remove it",
            r.line, r.path
        )
    }));
    assert!(
        problems.is_empty(),
        "{PAGE} is out of step with the config types (host/src/config.rs and the types it \
         embeds):\n{}\nKey paths: `a.b` for a nested struct's field, `list[].field` for the \
         fields of a list's elements, `map.<name>.field` for a map of structs. The example is \
         YAML for that key's value (it must parse as the key's type).",
        problems.join("\n")
    );
    for row in &rows {
        assert!(
            row.kind.len() > 1 && row.default.len() > 1,
            "{PAGE}:{}: `{}` needs a type and a default",
            row.line,
            row.path
        );
    }
}

#[test]
fn the_examples_together_are_a_config_taskpod_parses() {
    let text = page();
    let mut doc = Map::new();
    let rows = rows(&text);
    assert!(rows.len() > 10, "{PAGE} has its reference tables");
    for row in rows {
        let value: Value = serde_yaml::from_str(&row.example).unwrap_or_else(|e| {
            panic!(
                "{PAGE}:{}: the example of `{}` is not YAML: {e}",
                row.line, row.path
            )
        });
        insert(&mut doc, &row.path, value);
    }
    let yaml = serde_yaml::to_string(&doc).expect("YAML");
    if let Err(e) = Config::from_yaml(&yaml) {
        panic!("the examples of {PAGE} do not parse as a config: {e}\n---\n{yaml}");
    }
}

#[test]
fn every_yaml_sample_on_the_page_parses_as_a_config() {
    let text = page();
    let mut samples = 0;
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed code block");
        if let Err(e) = Config::from_yaml(&body[..end]) {
            panic!(
                "a YAML sample of {PAGE} is not a valid config: {e}\n{}",
                &body[..end]
            );
        }
        samples += 1;
        rest = &body[end + 3..];
    }
    assert!(samples >= 1, "{PAGE} shows a full sample config");
}
