//! Reading the file: TOML syntax, `${ENV_VAR}`, positions, and serde per
//! section.
//!
//! Steps, each reporting every error it finds before the next one runs:
//! 1. read the file (an unreadable file is one `FILE: message` error);
//! 2. parse with error recovery, so every syntax error is listed; stop there
//!    if any, since a broken tree would only produce noise;
//! 3. walk the tree once: substitute `${ENV_VAR}` in string values and record
//!    the span of every key path (see `diag`);
//! 4. deserialize each section, each `[[upstreams]]`, `[[routes]]` and
//!    `[[jwt.providers]]` element on its own, so that one type error does not
//!    hide the others, collecting every unknown key through `serde_ignored`;
//! 5. validate (`validate.rs`).
//!
//! `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) is replaced by the variable's
//! value in any string value (not in keys), in one pass: a value that itself
//! contains `${...}` is not expanded again. A `$` not followed by `{` is kept
//! as it is. There is no escape: a literal `${` cannot be written, and a `${`
//! without a valid name and closing `}` is an error, as is an unset variable
//! (never an empty string).

use std::borrow::Cow;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diag::{self, Diag};
use super::raw::{
    self, RawAdmin, RawIdentity, RawJwt, RawLog, RawProvider, RawRoute, RawServer, RawSessions,
    RawStore, RawUpstream,
};
use super::{Config, ConfigError, ConfigErrors, validate};

pub(super) fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            position: None,
            key_path: String::new(),
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    load_str(path, &text)
}

pub(super) fn load_str(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    load_with_env(path, text, &|name| std::env::var(name))
}

/// How `${NAME}` is looked up: the process environment, or a fake in tests
/// (the crate forbids `unsafe`, which `std::env::set_var` now is).
pub(super) type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<String, std::env::VarError>;

pub(super) fn load_with_env(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigErrors> {
    let mut diag = Diag::new(path, text);

    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            diag.error_at(e.span().map(|s| s.start), "", e.message());
        }
        return Err(diag.into_errors());
    }

    let mut doc = doc.into_inner();
    for (key, value) in doc.iter_mut() {
        let path = diag::join("", key.get_ref());
        walk(&mut diag, env, &path, Some(key.span()), value);
    }

    let raw = split(&mut diag, doc);
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let config = validate::validate(&mut diag, raw, path, base_dir);
    if diag.has_errors() {
        Err(diag.into_errors())
    } else {
        Ok(config)
    }
}

/// Records the span of `path` and everything below it, and substitutes
/// environment variables in its strings.
fn walk(
    diag: &mut Diag<'_>,
    env: EnvLookup<'_>,
    path: &str,
    key_span: Option<std::ops::Range<usize>>,
    value: &mut Spanned<DeValue<'_>>,
) {
    let span = value.span();
    diag.record(path, key_span, span.clone());
    match value.get_mut() {
        DeValue::String(s) => {
            if s.contains("${") {
                match expand_env(s, env) {
                    Ok(expanded) => *s = Cow::Owned(expanded),
                    Err(message) => {
                        diag.error_at(Some(span.start), path, message);
                        diag.silence(path);
                    }
                }
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(diag, env, &diag::index(path, i), None, item);
            }
        }
        DeValue::Table(table) => {
            for (key, item) in table.iter_mut() {
                walk(diag, env, &diag::join(path, key.get_ref()), Some(key.span()), item);
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

/// Replaces every `${NAME}`; the error names the variable, never a value.
fn expand_env(text: &str, lookup: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated \"${\" (expected ${NAME})".into());
        };
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "invalid environment variable reference \"${{{name}}}\" (expected ${{NAME}} with NAME made of letters, digits and _)"
            ));
        }
        match lookup(name) {
            Ok(value) => out.push_str(&value),
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("environment variable {name} is not set"));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable {name} is not valid UTF-8"));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A top-level table: absent, deserialized, or broken (errors already reported).
pub(super) enum Section<T> {
    Absent,
    Present(T),
    Invalid,
}

impl<T: Default> Section<T> {
    /// The raw table to validate: absent and broken ones validate as empty,
    /// i.e. as the defaults (which are valid, so this adds no errors).
    pub(super) fn or_default(self) -> T {
        match self {
            Section::Present(t) => t,
            Section::Absent | Section::Invalid => T::default(),
        }
    }
}

impl<T> From<Option<T>> for Section<T> {
    fn from(value: Option<T>) -> Self {
        match value {
            Some(t) => Section::Present(t),
            None => Section::Invalid,
        }
    }
}

/// The file, deserialized piece by piece.
pub(super) struct RawDoc {
    pub server: Section<RawServer>,
    pub admin: Section<RawAdmin>,
    pub log: Section<RawLog>,
    pub store: Section<RawStore>,
    pub sessions: Section<RawSessions>,
    pub jwt: Section<RawJwt>,
    /// `None`: that element failed to deserialize.
    pub providers: Vec<Option<RawProvider>>,
    pub upstreams: Vec<Option<RawUpstream>>,
    /// The `name` of each upstream, read before deserializing, so routes
    /// naming a broken upstream are not also reported as dangling.
    pub upstream_names: Vec<Option<String>>,
    pub routes: Vec<Option<RawRoute>>,
    pub identity: Section<RawIdentity>,
}

fn split(diag: &mut Diag<'_>, doc: DeTable<'_>) -> RawDoc {
    let mut raw = RawDoc {
        server: Section::Absent,
        admin: Section::Absent,
        log: Section::Absent,
        store: Section::Absent,
        sessions: Section::Absent,
        jwt: Section::Absent,
        providers: Vec::new(),
        upstreams: Vec::new(),
        upstream_names: Vec::new(),
        routes: Vec::new(),
        identity: Section::Absent,
    };
    for (key, mut value) in doc {
        let name: &str = key.get_ref();
        let path = diag::join("", name);
        match name {
            "server" => raw.server = part(diag, value, &path).into(),
            "admin" => raw.admin = part(diag, value, &path).into(),
            "log" => raw.log = part(diag, value, &path).into(),
            "store" => raw.store = part(diag, value, &path).into(),
            "sessions" => raw.sessions = part(diag, value, &path).into(),
            "identity" => raw.identity = part(diag, value, &path).into(),
            "jwt" => {
                let providers = match value.get_mut() {
                    DeValue::Table(table) => table.remove("providers"),
                    _ => None,
                };
                raw.jwt = part(diag, value, &path).into();
                if let Some(providers) = providers {
                    let providers_path = diag::join(&path, "providers");
                    for (i, item) in elements(diag, providers, &providers_path) {
                        let item_path = diag::index(&providers_path, i);
                        raw.providers.push(part(diag, item, &item_path));
                    }
                }
            }
            "upstreams" => {
                for (i, item) in elements(diag, value, &path) {
                    let item_path = diag::index(&path, i);
                    let name = item
                        .get_ref()
                        .get("name")
                        .and_then(|n| n.get_ref().as_str())
                        .map(str::to_owned);
                    raw.upstream_names.push(name);
                    raw.upstreams.push(part(diag, item, &item_path));
                }
            }
            "routes" => {
                for (i, item) in elements(diag, value, &path) {
                    let item_path = diag::index(&path, i);
                    raw.routes.push(part(diag, item, &item_path));
                }
            }
            _ => diag.key_error(&path, unknown_key_message("")),
        }
    }
    raw
}

/// The elements of an array of tables, with their indices.
fn elements<'i>(
    diag: &mut Diag<'_>,
    value: Spanned<DeValue<'i>>,
    path: &str,
) -> Vec<(usize, Spanned<DeValue<'i>>)> {
    match value.into_inner() {
        DeValue::Array(items) => items.into_iter().enumerate().collect(),
        other => {
            diag.error(
                path,
                format!(
                    "expected an array of tables ([[{path}]]), found {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

/// Deserializes one table into `T`, reporting every unknown key and the
/// first type error (with its own position and key path).
fn part<T: DeserializeOwned>(
    diag: &mut Diag<'_>,
    value: Spanned<DeValue<'_>>,
    path: &str,
) -> Option<T> {
    if !value.get_ref().is_table() {
        let found = value.get_ref().type_str();
        diag.error(path, format!("expected a table, found {found}"));
        return None;
    }
    let mut unknown = Vec::new();
    let mut on_ignored = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(path, &p));
    let de = serde_ignored::Deserializer::new(ValueDeserializer::from(value), &mut on_ignored);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    for key in unknown {
        let table = diag::parent(&key).unwrap_or("");
        diag.key_error(&key, unknown_key_message(table));
    }
    match result {
        Ok(t) => Some(t),
        Err(e) => {
            let mut key = path.to_owned();
            for segment in e.path().iter() {
                key = match segment {
                    serde_path_to_error::Segment::Seq { index } => diag::index(&key, *index),
                    serde_path_to_error::Segment::Map { key: k } => diag::join(&key, k),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => key,
                };
            }
            let inner = e.into_inner();
            diag.error_at(
                inner.span().map(|s| s.start),
                &key,
                sanitize(inner.message()),
            );
            None
        }
    }
}

fn ignored_path(prefix: &str, p: &serde_ignored::Path<'_>) -> String {
    match p {
        serde_ignored::Path::Root => prefix.to_owned(),
        serde_ignored::Path::Seq { parent, index } => diag::index(&ignored_path(prefix, parent), *index),
        serde_ignored::Path::Map { parent, key } => diag::join(&ignored_path(prefix, parent), key),
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(prefix, parent),
    }
}

fn unknown_key_message(table: &str) -> String {
    match raw::valid_keys(&diag::pattern(table)) {
        Some(keys) if keys.len() <= 20 => {
            format!("unknown key (expected one of: {})", keys.join(", "))
        }
        _ => "unknown key".to_owned(),
    }
}

/// serde's type errors quote the offending string, which may be a secret
/// (`secrets = "hunter2"` instead of a list) and name our private structs.
fn sanitize(message: &str) -> String {
    let mut message = message.to_owned();
    if let Some(start) = message.find("string \"") {
        let quoted = start + "string ".len();
        let end = message[quoted..]
            .rfind("\", expected")
            .map(|i| quoted + i + 1)
            .unwrap_or(message.len());
        message.replace_range(start..end, "a string");
    }
    while let Some(start) = message.find("struct Raw") {
        let end = message[start + "struct ".len()..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map(|i| start + "struct ".len() + i)
            .unwrap_or(message.len());
        message.replace_range(start..end, "a table");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Result<String, std::env::VarError> {
        match name {
            "HOST" => Ok("example.com".into()),
            "NESTED" => Ok("${HOST}".into()),
            _ => Err(std::env::VarError::NotPresent),
        }
    }

    #[test]
    fn env_references_are_replaced_once() {
        assert_eq!(expand_env("https://${HOST}/x", &env).as_deref(), Ok("https://example.com/x"));
        assert_eq!(expand_env("${HOST}${HOST}", &env).as_deref(), Ok("example.comexample.com"));
        assert_eq!(expand_env("${NESTED}", &env).as_deref(), Ok("${HOST}"));
        assert_eq!(expand_env("a$b $ {x}", &env).as_deref(), Ok("a$b $ {x}"));
    }

    #[test]
    fn env_errors_name_the_variable() {
        assert_eq!(
            expand_env("x${MISSING}", &env),
            Err("environment variable MISSING is not set".into())
        );
        assert!(expand_env("${HOST", &env).is_err());
        assert!(expand_env("${1X}", &env).is_err());
        assert!(expand_env("${}", &env).is_err());
    }

    #[test]
    fn sanitize_drops_quoted_strings_and_struct_names() {
        assert_eq!(
            sanitize("invalid type: string \"hunter2\", expected a sequence"),
            "invalid type: a string, expected a sequence"
        );
        assert_eq!(
            sanitize("invalid type: integer `3`, expected struct RawTls"),
            "invalid type: integer `3`, expected a table"
        );
    }

    #[test]
    fn explore() {
        use crate::config::test_support::*;
        let text = "[server]\nlisten = [\"127.0.0.1:8080\"]\nidle_timeout = \"5 parsecs\"\nbogus = 1\n\n[[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n\n[[routes]]\npath = \"/api\"\nupstream = \"nope\"\n\n[[routes]]\npath = \"/x\"\n";
        for e in errors(text) { println!("{e}"); }
        for e in errors("a = \n[x\nb = = 3\n[server]\nlisten = 5\n") { println!("{e}"); }
        for e in errors("[server]\nlisten = 5\n[jwt]\nfoo=1\n[[jwt.providers]]\nname = 1\n[[jwt.providers]]\nwhat = 2\n[store]\nurl=\"${NOPE}\"\n[[routes]]\n[[routes]]\nzzz=1\nupstream=\"a\"\n[identity]\nheaders = { X_A = \"b\", x-a = \"c\"}\n[server.tls]\ncert=\"x\"\n") { println!("{e}"); }
    }
}
