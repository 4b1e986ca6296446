//! Confinement of path-based calls over TCP (GRPC.md §4): a path is read only if it
//! lies under one of the `--allow-root` folders once `..` and symlinks are resolved.

use std::path::{Path, PathBuf};

use quarry_protocol::{ErrorKind, RpcError};

/// `roots` made canonical (those that do not exist kept as absolute paths).
pub fn canonical_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots
        .iter()
        .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| crate::engine::absolute(r)))
        .collect()
}

/// Checks `path` against `roots` (canonical).
///
/// Errors: `invalid_path` when it resolves outside every root (an empty list allows
/// nothing).
pub fn confine(roots: &[PathBuf], path: &str) -> Result<(), RpcError> {
    let abs = crate::engine::absolute(Path::new(path));
    let real = std::fs::canonicalize(&abs).unwrap_or(abs);
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(())
    } else {
        Err(RpcError::new(
            ErrorKind::InvalidPath,
            format!("{path} is outside the folders this endpoint may read (--allow-root)"),
        ))
    }
}
