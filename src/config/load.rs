//! Placeholder: replaced by the real loader.
use super::{Config, ConfigError, ConfigErrors};
use std::path::Path;

pub(super) fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            position: None,
            key_path: String::new(),
            message: e.to_string(),
        }])
    })?;
    load_str(path, &text)
}

pub(super) fn load_str(path: &Path, _text: &str) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        position: None,
        key_path: String::new(),
        message: "config loading is not implemented yet".into(),
    }]))
}
