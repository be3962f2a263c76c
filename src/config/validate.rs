//! Placeholder: raw -> validated.
