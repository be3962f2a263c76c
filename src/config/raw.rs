//! Placeholder: the serde mirror of the file.
