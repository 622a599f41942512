//! The error type of the `aaa-server` library boundary.

use std::path::Path;

use thiserror::Error;

/// What can go wrong outside the protocol path (which drops and counts).
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    /// The OS error is part of the message, not a separate source, so a
    /// report that prints the chain says it once.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("card store: {0}")]
    Store(String),
    #[error("ledger: {0}")]
    Ledger(String),
    #[error("key-encryption key: {0}")]
    Kek(String),
    #[error("{0}")]
    Usage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), error: source }
    }
}
