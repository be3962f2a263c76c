//! Properties of the config loader over any text (issue 17): `wristband
//! check` reads operator input, so whatever the file holds, loading must
//! end in a config or in errors printed as SPEC §2 says — each one line,
//! `FILE:LINE:COL: ...` pointing inside the file — and never in a panic.

use std::path::Path;

use proptest::prelude::*;

use super::load::load_with_env;
use super::test_support::{TempDir, test_env};

const EXAMPLE: &str = include_str!("../../config.example.toml");

/// Loads `text` as `DIR/wristband.toml` and checks the shape of every
/// error: one line, starting `FILE:LINE:COL: `, with LINE and COL inside
/// the text.
fn loads_or_points_at_lines(text: &str) -> Result<(), TestCaseError> {
    let dir = TempDir::new();
    let path = dir.config_path();
    let Err(errors) = load_with_env(&path, text, &test_env) else {
        return Ok(());
    };
    prop_assert!(!errors.0.is_empty(), "an Err with no error");
    let rendered = errors.to_string();
    prop_assert_eq!(rendered.lines().count(), errors.0.len(), "{}", rendered);
    for line in rendered.lines() {
        let Some((line_no, col)) = position(&path, line) else {
            return Err(TestCaseError::fail(format!("not FILE:LINE:COL: {line:?}")));
        };
        let lines = text.split('\n').collect::<Vec<_>>();
        prop_assert!((1..=lines.len()).contains(&line_no), "{}", line);
        let width = lines.get(line_no - 1).map_or(0, |l| l.chars().count());
        prop_assert!((1..=width + 1).contains(&col), "{}", line);
    }
    Ok(())
}

/// `LINE` and `COL` of `FILE:LINE:COL: rest`.
fn position(file: &Path, line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix(&format!("{}:", file.display()))?;
    let (line_no, rest) = rest.split_once(':')?;
    let (col, rest) = rest.split_once(':')?;
    rest.starts_with(' ').then_some(())?;
    Some((line_no.parse().ok()?, col.parse().ok()?))
}

/// One edit of a document; positions wrap around its length.
#[derive(Debug, Clone)]
enum Edit {
    InsertChar(usize, char),
    DeleteChar(usize),
    ReplaceChar(usize, char),
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceLine(usize, String),
    InsertLine(usize, String),
    /// The value of the n-th `key = value` line (wrapping) replaced.
    Retype(usize, String),
    SwapLines(usize, usize),
}

/// Characters that mean something to TOML, or to our strings, made common.
fn toml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::sample::select(
            "\n\t \"'=[]{}.,#$-_:\\0189aez".chars().collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ]
}

/// The names the example uses, for keys and table headers: random names
/// would only ever meet "unknown key".
fn example_names() -> Vec<String> {
    let mut names: Vec<String> = EXAMPLE
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches(['#', ' ', '[']);
            let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || "_.".contains(c)))?;
            (end > 0).then(|| line[..end].to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A line as an operator might write it, often wrongly typed.
fn toml_line() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => proptest::sample::select(example_names()),
        1 => "[a-z_]{1,8}",
    ];
    prop_oneof![
        1 => Just(String::new()),
        2 => proptest::sample::select(example_names()).prop_map(|n| format!("[{n}]")),
        2 => proptest::sample::select(example_names()).prop_map(|n| format!("[[{n}]]")),
        8 => (name, toml_value()).prop_map(|(n, v)| format!("{n} = {v}")),
        1 => "\\PC{0,20}",
    ]
}

/// A value of every TOML type, some of them what a key wants.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\"[^\"\\\\\n]{0,12}\"",
        Just("\"${WB_TEST_HOST}\"".to_owned()),
        Just("\"${UNSET}\"".to_owned()),
        "-?[0-9]{1,20}",
        Just("true".to_owned()),
        Just("1.5".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("[]".to_owned()),
        Just("[1, \"a\"]".to_owned()),
        Just("{}".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("[[]]".to_owned()),
        Just("\"5s\"".to_owned()),
        Just("\"127.0.0.1:0\"".to_owned()),
        Just("[\"127.0.0.1:0\"]".to_owned()),
        Just("\"/\"".to_owned()),
        // Escapes and multi-line strings: text that reaches a message may
        // hold a line break.
        "\"[a-z0-9:./]{0,6}(\\\\n|\\\\r|\\\\t|\\\\u0000)[a-z0-9]{0,6}\"",
        Just("\"\"\"\n5s\n\"\"\"".to_owned()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<usize>(), toml_char()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
        1 => any::<usize>().prop_map(Edit::DeleteChar),
        1 => (any::<usize>(), toml_char()).prop_map(|(i, c)| Edit::ReplaceChar(i, c)),
        1 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        3 => (any::<usize>(), toml_line()).prop_map(|(i, l)| Edit::ReplaceLine(i, l)),
        // Line 0 is outside every table: where a whole section can be
        // given the wrong type.
        2 => (prop_oneof![Just(0), any::<usize>()], toml_line())
            .prop_map(|(i, l)| Edit::InsertLine(i, l)),
        3 => (any::<usize>(), toml_value()).prop_map(|(i, v)| Edit::Retype(i, v)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let at = |i: usize, len: usize| i % len.max(1);
    match edit {
        Edit::InsertChar(i, c) => chars.insert(i % (chars.len() + 1), *c),
        Edit::DeleteChar(i) if !chars.is_empty() => {
            chars.remove(at(*i, chars.len()));
        }
        Edit::ReplaceChar(i, c) if !chars.is_empty() => {
            let i = at(*i, chars.len());
            chars[i] = *c;
        }
        Edit::DeleteChar(_) | Edit::ReplaceChar(..) => {}
        Edit::DeleteLine(i) => {
            lines.remove(at(*i, lines.len()));
            return lines.join("\n");
        }
        Edit::DuplicateLine(i) => {
            let i = at(*i, lines.len());
            lines.insert(i, lines[i].clone());
            return lines.join("\n");
        }
        Edit::ReplaceLine(i, line) => {
            let i = at(*i, lines.len());
            lines[i].clone_from(line);
            return lines.join("\n");
        }
        Edit::InsertLine(i, line) => {
            lines.insert(i % (lines.len() + 1), line.clone());
            return lines.join("\n");
        }
        Edit::Retype(n, value) => {
            let keys: Vec<usize> = (0..lines.len())
                .filter(|&i| !lines[i].starts_with('#') && lines[i].contains(" = "))
                .collect();
            if let Some(&i) = keys.get(at(*n, keys.len())) {
                let key = lines[i].split(" = ").next().unwrap_or_default().to_owned();
                lines[i] = format!("{key} = {value}");
            }
            return lines.join("\n");
        }
        Edit::SwapLines(a, b) => {
            let (a, b) = (at(*a, lines.len()), at(*b, lines.len()));
            lines.swap(a, b);
            return lines.join("\n");
        }
    }
    chars.into_iter().collect()
}

#[test]
fn the_example_loads() {
    let dir = TempDir::new();
    if let Err(e) = load_with_env(&dir.config_path(), EXAMPLE, &test_env) {
        panic!("config.example.toml does not load:\n{e}");
    }
}

proptest! {
    // Each case parses and validates a whole document.
    // PROPTEST_CASES raises the count for a deep run.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_loads_or_points_at_lines(text in any::<String>()) {
        loads_or_points_at_lines(&text)?;
    }

    #[test]
    fn any_bytes_load_or_point_at_lines(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        loads_or_points_at_lines(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn an_edited_example_loads_or_points_at_lines(
        edits in proptest::collection::vec(edit(), 1..6)
    ) {
        let text = edits.iter().fold(EXAMPLE.to_owned(), |text, e| apply(&text, e));
        loads_or_points_at_lines(&text)?;
    }
}
