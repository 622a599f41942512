//! Durable file writes: write to a temporary file, fsync, rename, fsync the
//! directory, so a crash leaves either the old or the new content.

use std::path::Path;

use crate::error::ServerError;

/// Atomically replaces `path` with `bytes`, readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    write_atomic(path, bytes, 0o600)
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ServerError> {
    aaa_proto::durable::replace_file(path, bytes, mode).map_err(|e| ServerError::io(path, e))
}
