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

fn edit() -> impl Strategy<Value = Edit> {
    let line = prop_oneof![
        Just(String::new()),
        Just("[[routes]]".to_owned()),
        Just("[[upstreams]]".to_owned()),
        Just("[jwt]".to_owned()),
        "[a-z_]{1,12} = (\"[^\"\n]{0,12}\"|[0-9]{1,6}|true|\\[\\]|\\{\\})",
        "\\PC{0,20}",
    ];
    prop_oneof![
        (any::<usize>(), toml_char()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
        any::<usize>().prop_map(Edit::DeleteChar),
        (any::<usize>(), toml_char()).prop_map(|(i, c)| Edit::ReplaceChar(i, c)),
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), line).prop_map(|(i, l)| Edit::ReplaceLine(i, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
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
    #![proptest_config(ProptestConfig::with_cases(512))]

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
