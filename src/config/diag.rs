//! Collecting config errors with a position (SPEC §2).
//!
//! `load` records the span of every key path once, while walking the parsed
//! tree; every later stage reports by key path and gets the position for free.
//! A key that is missing has no span of its own, so its error points at the
//! nearest enclosing table (or array element) that has one.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use super::{ConfigError, ConfigErrors};

pub(super) struct Diag<'a> {
    file: &'a Path,
    text: &'a str,
    /// Key path -> span of its value.
    value_spans: HashMap<String, Range<usize>>,
    /// Key path -> span of the key itself (absent for array elements).
    key_spans: HashMap<String, Range<usize>>,
    /// Paths whose value is already known to be wrong (e.g. an unset
    /// environment variable): later errors about them would only repeat it.
    silenced: HashSet<String>,
    errors: Vec<(Option<usize>, ConfigError)>,
}

impl<'a> Diag<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Diag {
            file,
            text,
            value_spans: HashMap::new(),
            key_spans: HashMap::new(),
            silenced: HashSet::new(),
            errors: Vec::new(),
        }
    }

    pub(super) fn record(&mut self, path: &str, key: Option<Range<usize>>, value: Range<usize>) {
        if let Some(key) = key {
            self.key_spans.insert(path.to_owned(), key);
        }
        self.value_spans.insert(path.to_owned(), value);
    }

    pub(super) fn silence(&mut self, path: &str) {
        self.silenced.insert(path.to_owned());
    }

    /// An error at `path`, positioned at its value (or its nearest ancestor).
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        if self.silenced.contains(path) {
            return;
        }
        let offset = self.value_offset(path);
        self.push(offset, path, message.into());
    }

    /// An error about a key itself (unknown key), positioned at the key.
    pub(super) fn key_error(&mut self, path: &str, message: impl Into<String>) {
        let offset = self
            .key_spans
            .get(path)
            .map(|s| s.start)
            .or_else(|| self.value_offset(path));
        self.push(offset, path, message.into());
    }

    /// An error at a known byte offset (from the TOML parser or serde).
    pub(super) fn error_at(
        &mut self,
        offset: Option<usize>,
        path: &str,
        message: impl Into<String>,
    ) {
        if self.silenced.contains(path) {
            return;
        }
        let offset = offset.or_else(|| self.value_offset(path));
        self.push(offset, path, message.into());
    }

    /// The byte offset of `path`'s value, or of its nearest recorded ancestor.
    pub(super) fn value_offset(&self, path: &str) -> Option<usize> {
        let mut current = Some(path);
        while let Some(p) = current {
            if let Some(span) = self.value_spans.get(p) {
                return Some(span.start);
            }
            current = parent(p);
        }
        None
    }

    /// The byte offset of the key of `path`, to keep table entries in file order.
    pub(super) fn key_offset(&self, path: &str) -> Option<usize> {
        self.key_spans.get(path).map(|s| s.start)
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    fn push(&mut self, offset: Option<usize>, path: &str, message: String) {
        let position = offset.map(|o| line_col(self.text, o));
        self.errors.push((
            offset,
            ConfigError {
                file: self.file.to_path_buf(),
                position,
                key_path: path.to_owned(),
                message,
            },
        ));
    }

    /// All errors in file order; whole-file errors (no position) first.
    pub(super) fn into_errors(self) -> ConfigErrors {
        let mut errors = self.errors;
        errors.sort_by_key(|(offset, _)| *offset);
        ConfigErrors(errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// 1-based line and 1-based column in characters of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// `parent.key`, quoting the key when it is not a bare TOML key.
pub(super) fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(super) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The enclosing path: `routes[0]` for `routes[0].upstream`, `routes` for
/// `routes[0]`, `""` for a top-level key, `None` for the root.
pub(super) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let mut split = 0;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        if in_quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '.' | '[' => split = i,
            _ => {}
        }
    }
    Some(&path[..split])
}

/// A key path with its array indices erased: `routes[3].x` -> `routes[].x`.
pub(super) fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_col(text, 6 + "bé = ".len()), (2, 6));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(join("", "server"), "server");
        assert_eq!(
            join("identity.headers", "X-Auth-User"),
            "identity.headers.X-Auth-User"
        );
        assert_eq!(join("a", "b.c"), "a.\"b.c\"");
        assert_eq!(parent("routes[0].upstream"), Some("routes[0]"));
        assert_eq!(parent("routes[0]"), Some("routes"));
        assert_eq!(parent("routes"), Some(""));
        assert_eq!(parent("a.\"b.c\""), Some("a"));
        assert_eq!(parent(""), None);
        assert_eq!(pattern("jwt.providers[12].name"), "jwt.providers[].name");
    }
}
