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
//! 5. validate (`validate`), which reads the `raw::RawDoc` built here.
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
use super::raw::{self, RawDoc};
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
        return Err(one_line(diag.into_errors()));
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
        Err(one_line(diag.into_errors()))
    } else {
        Ok(config)
    }
}

/// Messages quote what the operator wrote, and a TOML string may hold a
/// line break (`"a\nb"`, `"""..."""`); SPEC §2 prints one error per line, so
/// control characters are written as Rust escapes (`\n`, `\u{0}`).
fn one_line(mut errors: ConfigErrors) -> ConfigErrors {
    for e in &mut errors.0 {
        if e.message.contains(char::is_control) {
            let mut escaped = String::with_capacity(e.message.len() + 8);
            for c in e.message.chars() {
                if c.is_control() {
                    escaped.extend(c.escape_default());
                } else {
                    escaped.push(c);
                }
            }
            e.message = escaped;
        }
    }
    errors
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
                walk(
                    diag,
                    env,
                    &diag::join(path, key.get_ref()),
                    Some(key.span()),
                    item,
                );
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

fn split(diag: &mut Diag<'_>, doc: DeTable<'_>) -> RawDoc {
    let mut raw = RawDoc::default();
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
            "login" => raw.login = part(diag, value, &path).into(),
            "forward_auth" => raw.forward_auth = part(diag, value, &path).into(),
            "revocation" => raw.revocation = part(diag, value, &path).into(),
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
        serde_ignored::Path::Seq { parent, index } => {
            diag::index(&ignored_path(prefix, parent), *index)
        }
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
/// Matching on serde's text is the only way in (its errors carry no
/// structure), so each rewrite is pinned by a test on the TOML that
/// produces it.
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

    /// Found by `tests_prop`: `upstream = """\n5s\n"""` printed an
    /// error whose message went on over two lines.
    #[test]
    fn a_line_break_in_a_quoted_value_stays_on_one_line() {
        let errors = crate::config::test_support::errors(
            "[[upstreams]]\nname = \"a\"\ntargets = [\"http://127.0.0.1:1\"]\n\
             [[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"x\\ny\\u0000\"\n",
        );
        assert_eq!(
            errors,
            [r#":7:12: routes[0].upstream: no upstream named "x\ny\u{0}""#]
        );
    }

    #[test]
    fn env_references_are_replaced_once() {
        assert_eq!(
            expand_env("https://${HOST}/x", &env).as_deref(),
            Ok("https://example.com/x")
        );
        assert_eq!(
            expand_env("${HOST}${HOST}", &env).as_deref(),
            Ok("example.comexample.com")
        );
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

    /// Each rewrite `sanitize` makes, pinned on the TOML that produces the
    /// serde message: a serde or toml upgrade that changes the text fails
    /// here instead of changing what users read, or printing a secret.
    #[test]
    fn serde_messages_lose_quoted_values_and_struct_names() {
        for (text, expected) in [
            (
                "[sessions]\nsecrets = \"hunter2\"\n",
                ":2:11: sessions.secrets: invalid type: a string, expected a sequence",
            ),
            (
                "[sessions]\nsecrets = \"a\\\", expected x\"\n",
                ":2:11: sessions.secrets: invalid type: a string, expected a sequence",
            ),
            (
                "[server]\ntls = 3\n",
                ":2:7: server.tls: invalid type: integer `3`, expected a table",
            ),
            (
                "[identity]\nassertion = \"x\"\n",
                ":2:13: identity.assertion: invalid type: a string, expected a table",
            ),
            (
                "[[upstreams]]\nhealth_check = []\n",
                ":2:16: upstreams[0].health_check: invalid length 0, expected a table with 4 elements",
            ),
        ] {
            assert_eq!(errors(text), vec![expected.to_owned()], "{text}");
        }
    }

    /// The rewrites above are still needed: serde itself quotes the value
    /// and names the struct.
    #[test]
    fn serde_alone_would_quote_the_value_and_name_the_struct() {
        let quoted = match toml::from_str::<raw::RawSessions>("secrets = \"hunter2\"") {
            Ok(_) => panic!("a string is not a list"),
            Err(e) => e.message().to_owned(),
        };
        assert!(quoted.contains("\"hunter2\""), "{quoted}");
        let named = match toml::from_str::<raw::RawServer>("tls = 3") {
            Ok(_) => panic!("3 is not a table"),
            Err(e) => e.message().to_owned(),
        };
        assert!(named.contains("struct RawTls"), "{named}");
    }

    use crate::config::test_support::{
        TempDir, errors, errors_in, load_in, ok, one_error, test_env,
    };
    use crate::config::{Config, KeySource};

    const UPSTREAM: &str = "[[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n";

    #[test]
    fn acceptance_example_reports_exactly_three_errors_in_file_order() {
        let dir = TempDir::new();
        let text = "\
[server]
idle_timeout = \"5 parsecs\"
colour = \"blue\"

[[upstreams]]
name = \"app\"
targets = [\"http://127.0.0.1:3000\"]

[[routes]]
upstream = \"nope\"
";
        let errs = load_in(&dir, text).expect_err("invalid");
        let file = dir.config_path().display().to_string();
        let lines: Vec<String> = errs.to_string().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 3, "{errs}");
        assert!(
            lines[0].starts_with(&format!(
                "{file}:2:16: server.idle_timeout: invalid duration \"5 parsecs\""
            )),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with(&format!(
                "{file}:3:1: server.colour: unknown key (expected one of: listen, "
            )),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            format!("{file}:10:12: routes[0].upstream: no upstream named \"nope\"")
        );
    }

    #[test]
    fn every_syntax_error_is_reported_with_its_position_and_nothing_else() {
        let errs =
            errors("[server]\nlisten = [\"127.0.0.1:1\"]\nbad = \nx = 1\n[routes\nretries = 7\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with(":3:7: "), "{errs:?}");
        assert!(errs[1].starts_with(":5:8: "), "{errs:?}");
    }

    #[test]
    fn syntax_error_columns_count_characters_not_bytes() {
        let errs = errors("[log]\nlevel = \"é\" x\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(":2:13: "), "{errs:?}");
    }

    #[test]
    fn unknown_keys_are_all_reported_at_the_key() {
        let text = format!(
            "colour = 1\n[server]\nlisten = [\"127.0.0.1:8080\"]\nlisen = 2\n[teapot]\nx = 1\n\
             [[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp.example.com\"\naudiences = [\"a\"]\naudience = \"a\"\n\
             {UPSTREAM}[[routes]]\nupstream = \"app\"\n[[routes]]\npath = \"/b\"\nupstream = \"app\"\nupstreams = \"app\"\n\
             [upstreams.health_check]\nevery = \"5s\"\n"
        );
        let errs = errors(&text);
        assert_eq!(
            errs.iter()
                .map(|e| e.split(" (").next().unwrap_or(""))
                .collect::<Vec<_>>(),
            vec![
                ":1:1: colour: unknown key",
                ":4:1: server.lisen: unknown key",
                ":5:2: teapot: unknown key",
                ":11:1: jwt.providers[0].audience: unknown key",
                ":20:1: routes[1].upstreams: unknown key",
                ":22:1: upstreams[0].health_check.every: unknown key",
            ],
            "{errs:#?}"
        );
        assert!(
            errs[0].contains("expected one of: server, admin, log"),
            "{}",
            errs[0]
        );
        assert!(errs[3].contains("audiences"), "{}", errs[3]);
        assert!(
            errs[5].contains("path, interval, unhealthy_after, healthy_after"),
            "{}",
            errs[5]
        );
    }

    #[test]
    fn a_type_error_in_one_route_does_not_hide_errors_in_another() {
        let text = format!(
            "{UPSTREAM}[[routes]]\nupstream = \"app\"\nmethods = \"GET\"\n[[routes]]\npath = \"/x\"\nupstream = \"nope\"\n"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with(":6:11: routes[0].methods: invalid type"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with(":9:12: routes[1].upstream: no upstream named"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_route_naming_a_broken_upstream_is_not_reported_as_dangling() {
        let text = "[[upstreams]]\nname = \"app\"\ntargets = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"app\"\n";
        one_error(text, "upstreams[0].targets", "invalid type");
    }

    #[test]
    fn sections_of_the_wrong_type_are_errors() {
        one_error("server = 1\n", "server", "expected a table");
        one_error("routes = 1\n", "routes", "expected an array of tables");
        one_error(
            "[jwt]\nproviders = [1]\n",
            "jwt.providers[0]",
            "expected a table",
        );
    }

    #[test]
    fn env_variables_are_substituted_in_string_values() {
        let text = format!(
            "[server]\nlisten = [\"${{WB_TEST_LISTEN}}\"]\n{UPSTREAM}[[routes]]\nhost = \"${{WB_TEST_HOST}}\"\nupstream = \"app\"\n"
        );
        let c = ok(&text);
        assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:8181");
        assert_eq!(c.routes[0].name, "api.example.com/");
    }

    #[test]
    fn an_unset_env_variable_is_an_error_at_its_value_never_an_empty_string() {
        let errs = errors("[log]\nlevel = \"${WB_TEST_UNSET}\"\n");
        assert_eq!(
            errs,
            vec![":2:9: log.level: environment variable WB_TEST_UNSET is not set".to_owned()]
        );
    }

    #[test]
    fn the_real_process_environment_is_used_by_default() {
        // PATH is set wherever cargo runs tests; the crate forbids the
        // `unsafe` that setting a variable would need.
        let text = format!("{UPSTREAM}[[routes]]\nname = \"${{PATH}}\"\nupstream = \"app\"\n");
        let c = Config::from_toml(std::path::Path::new("x.toml"), &text).expect("valid");
        assert_eq!(c.routes[0].name, std::env::var("PATH").unwrap_or_default());
        let errs = Config::from_toml(
            std::path::Path::new("x.toml"),
            "[log]\nlevel = \"${WRISTBAND_SURELY_UNSET_VARIABLE}\"\n",
        )
        .expect_err("unset");
        assert!(
            errs.to_string()
                .contains("WRISTBAND_SURELY_UNSET_VARIABLE is not set")
        );
    }

    #[test]
    fn an_unreadable_file_is_one_error_without_position() {
        let dir = TempDir::new();
        let path = dir.path().join("missing.toml");
        let errs = Config::load(&path).expect_err("missing");
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].position, None);
        assert!(
            errs.to_string()
                .starts_with(&format!("{}: cannot read config file: ", path.display())),
            "{errs}"
        );
    }

    #[test]
    fn a_file_is_loaded_and_its_relative_paths_resolved_against_its_directory() {
        let dir = TempDir::new();
        dir.write("jwks.json", "{\"keys\":[]}");
        let path = dir.write(
            "wristband.toml",
            "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp\"\naudiences = [\"a\"]\njwks_file = \"jwks.json\"\n",
        );
        let c = Config::load(&path).expect("valid");
        assert_eq!(c.source, path);
        match &c.jwt.providers[0].key_source {
            KeySource::JwksFile(p) => assert_eq!(p, &dir.path().join("jwks.json")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secret_files_have_one_trailing_newline_trimmed() {
        let dir = TempDir::new();
        dir.write("url.txt", "redis://:pw@127.0.0.1:6379/0\n");
        dir.write("hmac.txt", "hmac-secret\n\n");
        dir.write("sessions.txt", "first\r\n\n  \nsecond\n");
        let text = "[store]\nkind = \"redis\"\nurl_file = \"url.txt\"\n\
                    [sessions]\ncodec = \"express\"\nsecrets_file = \"sessions.txt\"\n\
                    [[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp\"\naudiences = [\"a\"]\n\
                    hmac_secret_file = \"hmac.txt\"\nalgorithms = [\"HS256\"]\n";
        let c = load_in(&dir, text).expect("valid");
        assert_eq!(
            c.store.url.as_ref().map(|s| s.expose()),
            Some("redis://:pw@127.0.0.1:6379/0")
        );
        let sessions = c.sessions.expect("sessions");
        let secrets: Vec<&str> = sessions.secrets.iter().map(|s| s.expose()).collect();
        assert_eq!(secrets, vec!["first", "second"]);
        match &c.jwt.providers[0].key_source {
            // Only one newline is trimmed.
            KeySource::HmacSecret(s) => assert_eq!(s.expose(), "hmac-secret\n"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_secret_given_both_inline_and_as_a_file_is_an_error() {
        let dir = TempDir::new();
        dir.write("s.txt", "x\n");
        let errs = errors_in(
            &dir,
            "[store]\nurl = \"redis://h\"\nurl_file = \"s.txt\"\n\
             [sessions]\nsecrets = [\"a\"]\nsecrets_file = \"s.txt\"\n\
             [[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp\"\naudiences = [\"a\"]\n\
             hmac_secret = \"x\"\nhmac_secret_file = \"s.txt\"\nalgorithms = [\"HS256\"]\n",
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].starts_with(":3:12: store.url_file: give either url or url_file"));
        assert!(errs[1].starts_with(":6:16: sessions.secrets_file: give either"));
        assert!(errs[2].starts_with(":12:20: jwt.providers[0].hmac_secret_file: give either"));
    }

    #[test]
    fn an_unreadable_secret_file_is_an_error_at_its_key() {
        one_error(
            "[store]\nkind = \"redis\"\nurl_file = \"nope.txt\"\n",
            "store.url_file",
            "cannot read",
        );
        one_error(
            "[sessions]\ncodec = \"express\"\nsecrets_file = \"nope.txt\"\n",
            "sessions.secrets_file",
            "cannot read",
        );
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug_output() {
        let secret = "hunter2-very-secret";
        let dir = TempDir::new();
        dir.write("url.txt", &format!("http://:{secret}@h:6379\n"));
        let cases = [
            format!("[store]\nkind = \"redis\"\nurl = \"http://:{secret}@h:6379\"\n"),
            format!("[store]\nkind = \"redis\"\nurl = \"{secret}\"\n"),
            "[store]\nkind = \"redis\"\nurl_file = \"url.txt\"\n".to_owned(),
            format!("[sessions]\ncodec = \"express\"\nsecrets = \"{secret}\"\n"),
            format!("[sessions]\ncodec = \"express\"\nsecrets = [\"{secret}\", 3]\n"),
            format!(
                "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp\"\naudiences = [\"a\"]\nhmac_secret = \"{secret}\"\n"
            ),
            format!(
                "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp\"\naudiences = [\"a\"]\nhmac_secret = [\"{secret}\"]\n"
            ),
            format!("[store]\nkind = \"redis\"\nurl = \"redis://:{secret}@h\"\nretries = 1\n"),
        ];
        for text in &cases {
            let errs = load_in(&dir, text).expect_err(text);
            assert!(!errs.to_string().contains(secret), "{errs}");
            assert!(!format!("{errs:?}").contains(secret), "{errs:?}");
        }

        // And a valid config holding every kind of secret does not print them.
        let text = format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://:{secret}@h\"\n\
             [sessions]\ncodec = \"express\"\nsecrets = [\"{secret}\"]\n\
             [[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp\"\naudiences = [\"a\"]\n\
             hmac_secret = \"${{WB_TEST_SECRET}}\"\nalgorithms = [\"HS256\"]\n"
        );
        let c = load_in(&dir, &text).expect("valid");
        let debug = format!("{c:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(!debug.contains(&test_env("WB_TEST_SECRET").unwrap_or_default()));
    }

    #[test]
    fn errors_are_sorted_in_file_order() {
        let text = "[[routes]]\nupstream = \"x\"\n[log]\nformat = \"xml\"\n[server]\nmax_connections = 0\n";
        let errs = errors(text);
        let lines: Vec<&str> = errs
            .iter()
            .map(|e| e.split(':').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(lines, vec!["2", "4", "6"], "{errs:?}");
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let text = std::fs::read_to_string(&path).expect("config.example.toml");
        let c = match load_with_env(&path, &text, &test_env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.jwt.providers.len(), 1);
        assert!(c.sessions.is_some());
    }
}
