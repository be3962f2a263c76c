//! Helpers for the config unit tests: real files in a private temp directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Config, ConfigErrors, load};

/// A fresh directory under `std::env::temp_dir()`, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "wristband-config-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    pub(super) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    /// The name the config is loaded under (files are relative to it).
    pub(super) fn config_path(&self) -> PathBuf {
        self.0.join("wristband.toml")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake environment of the tests.
pub(super) fn test_env(name: &str) -> Result<String, std::env::VarError> {
    match name {
        "WB_TEST_HOST" => Ok("api.example.com".to_owned()),
        "WB_TEST_SECRET" => Ok("env-secret-value-1234".to_owned()),
        "WB_TEST_LISTEN" => Ok("127.0.0.1:8181".to_owned()),
        _ => Err(std::env::VarError::NotPresent),
    }
}

/// Loads `text` as if it were `DIR/wristband.toml`.
pub(super) fn load_in(dir: &TempDir, text: &str) -> Result<Config, ConfigErrors> {
    load::load_with_env(&dir.config_path(), text, &test_env)
}

pub(super) fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_in(&TempDir::new(), text)
}

#[track_caller]
pub(super) fn ok(text: &str) -> Config {
    match load(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// The errors as `wristband check` prints them, without the file name.
#[track_caller]
pub(super) fn errors(text: &str) -> Vec<String> {
    let dir = TempDir::new();
    errors_in(&dir, text)
}

#[track_caller]
pub(super) fn errors_in(dir: &TempDir, text: &str) -> Vec<String> {
    match load_in(dir, text) {
        Ok(_) => panic!("expected errors, the config is valid:\n{text}"),
        Err(e) => {
            let prefix = format!("{}", dir.config_path().display());
            e.0.iter()
                .map(|e| e.to_string().trim_start_matches(&prefix).to_owned())
                .collect()
        }
    }
}

/// Asserts exactly one error, at `key_path`, whose message contains `fragment`.
#[track_caller]
pub(super) fn one_error(text: &str, key_path: &str, fragment: &str) {
    let dir = TempDir::new();
    one_error_in(&dir, text, key_path, fragment);
}

#[track_caller]
pub(super) fn one_error_in(dir: &TempDir, text: &str, key_path: &str, fragment: &str) {
    let errs = match load_in(dir, text) {
        Ok(_) => panic!("expected an error at {key_path}, the config is valid:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(
        errs.0.len(),
        1,
        "expected one error at {key_path} containing {fragment:?}, got:\n{errs}"
    );
    let e = &errs.0[0];
    assert_eq!(e.key_path, key_path, "wrong key path in:\n{errs}");
    assert!(
        e.message.contains(fragment),
        "expected {fragment:?} in:\n{errs}"
    );
    assert!(e.position.is_some(), "no position in:\n{errs}");
}
