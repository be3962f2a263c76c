//! Raw -> validated: applies the defaults of SPEC §3 and checks every rule,
//! collecting all errors (never stopping at the first), each at its key path.
//!
//! Secrets (`store.url`, `sessions.secrets`, `hmac_secret`) never appear in a
//! message, whatever is wrong with them; other values are quoted to help.
//! A value that is wrong is replaced by its default so that checking can go
//! on; the `Config` built that way is thrown away when there are errors.
//! A secret is never replaced: when it is missing, what depends on it is
//! left out (see `jwt::NamedSource`), so no stand-in can reach a `Config`.
//! The defaults themselves are constants on the types of `config`.
//!
//! Each section's checks are an `impl V` block in the file named after it
//! (`server`, `store`, `jwt`, `upstreams`, `routes`, `identity`); this file
//! holds the entry point and the checks they share.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diag::{Diag, join};
use super::raw::{RawDoc, RawSessions, Section};
use super::{Config, CredentialKind};

mod forward_auth;
mod identity;
mod jwt;
mod login;
mod routes;
mod server;
mod store;
mod upstreams;

const REQUIRED: &str = "required key is missing";

pub(super) fn validate(diag: &mut Diag<'_>, raw: RawDoc, source: &Path, base_dir: &Path) -> Config {
    let mut v = V { diag, base_dir };

    let server_failed = matches!(raw.server, Section::Invalid);
    let server = v.server(raw.server.or_default());
    let admin = v.admin(
        raw.admin.or_default(),
        if server_failed { &[] } else { &server.listen },
    );
    let log = v.log(raw.log.or_default());
    let store = v.store(raw.store.or_default());
    let sessions = match raw.sessions {
        Section::Absent => None,
        Section::Present(s) => Some(v.sessions(s)),
        Section::Invalid => Some(v.sessions(RawSessions::default())),
    };
    // What a route accepts by default, JWT first (SPEC §3 `accept`).
    let mut configured = Vec::new();
    if !raw.providers.is_empty() {
        configured.push(CredentialKind::Jwt);
    }
    if sessions.is_some() {
        configured.push(CredentialKind::Session);
    }
    let jwt = v.jwt(raw.jwt.or_default(), raw.providers);
    let upstreams = v.upstreams(raw.upstreams, &raw.upstream_names);
    let login_section = !matches!(raw.login, Section::Absent);
    let forward_auth = match raw.forward_auth {
        Section::Absent => None,
        section => Some(v.forward_auth(section.or_default())),
    };
    let routes = v.routes(
        raw.routes,
        &raw.upstream_names,
        &configured,
        login_section,
        forward_auth.is_some(),
    );
    let identity = v.identity(raw.identity.or_default());
    // A broken table has its errors already; it adds no "required" ones.
    let login = match raw.login {
        Section::Present(login) => v.login(login, sessions.as_ref()),
        Section::Absent | Section::Invalid => None,
    };
    if let (Some(forward_auth), Some(login)) = (&forward_auth, &login) {
        v.login_outside_forward_auth(forward_auth, login);
    }
    let revocation = match raw.revocation {
        Section::Absent => None,
        section => Some(v.revocation(section.or_default())),
    };
    v.admin_token_needs_revocation(&admin, revocation.is_some());

    Config {
        source: source.to_path_buf(),
        server,
        admin,
        log,
        store,
        sessions,
        jwt,
        upstreams,
        routes,
        identity,
        login,
        forward_auth,
        revocation,
    }
}

/// An error about this value has already been reported.
struct Reported;

struct V<'d, 'a> {
    diag: &'d mut Diag<'a>,
    base_dir: &'d Path,
}

/// Small, reusable checks.
impl V<'_, '_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.diag.error(path, message);
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(text) = value else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    path,
                    format!("invalid duration \"{text}\": {e} (expected e.g. \"250ms\", \"30s\", \"5m\")"),
                );
                default
            }
        }
    }

    /// A duration for which `0s` means nothing sensible.
    fn positive_duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, value, default);
        if d.is_zero() {
            self.err(path, "must be greater than 0s");
            return default;
        }
        d
    }

    fn choice<T: Copy>(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(text) = value else {
            return default;
        };
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == text) {
            return *t;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.err(
            path,
            format!("invalid value \"{text}\": expected {}", names.join(" or ")),
        );
        default
    }

    /// An integer of at least `min` and, when `max` is given, at most
    /// `max`; anything else (including a value `T` cannot hold) is reported
    /// and replaced by `default`.
    fn int_in<T>(&mut self, path: &str, value: Option<i64>, default: T, min: T, max: Option<T>) -> T
    where
        T: Copy + PartialOrd + TryFrom<i64> + fmt::Display,
    {
        let Some(n) = value else {
            return default;
        };
        match T::try_from(n) {
            Ok(v) if v >= min && max.is_none_or(|max| v <= max) => v,
            _ => {
                match max {
                    None => self.err(path, format!("must be at least {min} (got {n})")),
                    Some(max) => {
                        self.err(path, format!("must be between {min} and {max} (got {n})"))
                    }
                }
                default
            }
        }
    }

    /// A key that must be present and non-empty.
    fn required_str<'s>(&mut self, path: &str, value: Option<&'s str>) -> Option<&'s str> {
        match value {
            None => {
                self.err(path, REQUIRED);
                None
            }
            Some("") => {
                self.err(path, "must not be empty");
                None
            }
            Some(s) => Some(s),
        }
    }

    /// A non-empty string with a default.
    fn non_empty(&mut self, path: &str, value: Option<String>, default: &str) -> String {
        match value {
            None => default.to_owned(),
            Some(s) if s.is_empty() => {
                self.err(path, "must not be empty");
                default.to_owned()
            }
            Some(s) => s,
        }
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A file that must exist and be readable now; relative to the config file.
    fn readable_file(&mut self, path: &str, file: &str) -> PathBuf {
        let resolved = self.resolve(file);
        if file.is_empty() {
            self.err(path, "must not be empty");
            return resolved;
        }
        match std::fs::File::open(&resolved).and_then(|f| f.metadata()) {
            Ok(meta) if meta.is_dir() => {
                self.err(
                    path,
                    format!("\"{}\" is a directory, not a file", resolved.display()),
                );
            }
            Ok(_) => {}
            Err(e) => self.err(path, format!("cannot read \"{}\": {e}", resolved.display())),
        }
        resolved
    }

    /// `""` or absent: none.
    fn optional_file(&mut self, path: &str, file: Option<&str>) -> Option<PathBuf> {
        match file {
            None | Some("") => None,
            Some(f) => Some(self.readable_file(path, f)),
        }
    }

    /// Reads a `<name>_file` secret; the contents never reach a message.
    fn read_secret_file(&mut self, path: &str, file: &str) -> Option<String> {
        let resolved = self.resolve(file);
        match std::fs::read_to_string(&resolved) {
            Ok(text) => Some(text),
            Err(e) => {
                self.err(path, format!("cannot read \"{}\": {e}", resolved.display()));
                None
            }
        }
    }

    /// `<name> = "..."` or `<name>_file = "path"` (one trailing newline
    /// trimmed), never both. Returns the value and the key it came from;
    /// `Err` when an error was already reported (so callers do not add
    /// "missing" errors on top).
    fn secret(
        &mut self,
        table: &str,
        name: &str,
        inline: Option<String>,
        file: Option<&str>,
    ) -> Result<Option<(String, String)>, Reported> {
        let inline_path = join(table, name);
        let file_path = join(table, &format!("{name}_file"));
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(
                    &file_path,
                    format!("give either {name} or {name}_file, not both"),
                );
                Err(Reported)
            }
            (Some(value), None) => Ok(Some((value, inline_path))),
            (None, Some(f)) => {
                let text = self.read_secret_file(&file_path, f).ok_or(Reported)?;
                let text = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text)
                    .to_owned();
                Ok(Some((text, file_path)))
            }
            (None, None) => Ok(None),
        }
    }

    fn required_file(&mut self, path: &str, file: Option<&str>) -> PathBuf {
        match file {
            Some(f) => self.readable_file(path, f),
            None => {
                self.err(path, REQUIRED);
                PathBuf::new()
            }
        }
    }
}

/// For keys that must be unique across entries (names, issuers): the
/// index of the entry that used `key` first, or `None` when entry `i` is
/// the first, which is then remembered.
fn earlier_use(seen: &mut HashMap<String, usize>, key: &str, i: usize) -> Option<usize> {
    match seen.get(key) {
        Some(first) => Some(*first),
        None => {
            seen.insert(key.to_owned(), i);
            None
        }
    }
}

/// RFC 6265 cookie-name = token (RFC 9110 tchar).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests;
