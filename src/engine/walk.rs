//! Walk: the files under a root, with `.gitignore`/`.ignore` rules, hidden files
//! skipped, include/exclude globs, symlinks followed (loops reported), and what could
//! not be walked.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use super::{EngineError, absolute};

/// Include/exclude globs for `ingest_dir` (gitignore syntax, relative to the root).
#[derive(Debug, Clone, Default)]
pub struct IngestDirOptions {
    /// When non-empty, only files matching one of these are indexed.
    pub include: Vec<String>,
    /// Files matching one of these are not indexed.
    pub exclude: Vec<String>,
}

/// A file that was not indexed, and why.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Skipped {
    /// Absolute path.
    pub path: String,
    /// Why, for people (`binary file`, `too large: …`, `not UTF-8 text`, `empty file`,
    /// `unreadable: …`, `symlink loop: …`).
    pub reason: String,
}

/// Files under `root` in walk order, and what could not be walked.
pub(crate) fn walk(
    root: &Path,
    dir: &Path,
    recursive: bool,
    options: &IngestDirOptions,
) -> Result<(Vec<PathBuf>, Vec<Skipped>), EngineError> {
    let mut overrides = ignore::overrides::OverrideBuilder::new(root);
    for g in &options.include {
        overrides.add(g).map_err(|e| EngineError::InvalidInput {
            field: "include",
            message: format!("{g:?}: {e}"),
        })?;
    }
    for g in &options.exclude {
        overrides
            .add(&format!("!{g}"))
            .map_err(|e| EngineError::InvalidInput {
                field: "exclude",
                message: format!("{g:?}: {e}"),
            })?;
    }
    let overrides = overrides.build().map_err(|e| EngineError::InvalidInput {
        field: "include",
        message: e.to_string(),
    })?;
    let builder = |start: &Path| {
        let mut b = ignore::WalkBuilder::new(start);
        b.hidden(true)
            .parents(true)
            .ignore(true)
            .git_ignore(true)
            .git_exclude(true)
            .git_global(false)
            .require_git(false)
            .follow_links(true)
            .overrides(overrides.clone());
        b
    };
    // The walker never filters its own start: a folder under the root that the rules
    // exclude (or that sits in an excluded one) must be refused here.
    if dir != root {
        let below: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| *a != root && a.starts_with(root))
            .collect();
        for a in below.into_iter().rev() {
            let Some(parent) = a.parent() else { break };
            let listed = builder(parent)
                .max_depth(Some(1))
                .build()
                .flatten()
                .any(|e| e.path() == a);
            if !listed {
                return Ok((Vec::new(), Vec::new()));
            }
        }
    }
    let walker = builder(dir).max_depth((!recursive).then_some(1)).build();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for entry in walker {
        match entry {
            Ok(e) => {
                if e.file_type().is_some_and(|t| t.is_file()) {
                    files.push(absolute(e.path()));
                } else if e
                    .file_type()
                    .is_some_and(|t| !t.is_dir() && !t.is_symlink())
                {
                    skipped.push(Skipped {
                        path: e.path().to_string_lossy().into_owned(),
                        reason: "not a regular file".into(),
                    });
                }
            }
            Err(err) => skipped.push(walk_error(root, err)),
        }
    }
    Ok((files, skipped))
}

pub(crate) fn walk_error(root: &Path, err: ignore::Error) -> Skipped {
    fn path_of(err: &ignore::Error) -> Option<PathBuf> {
        match err {
            ignore::Error::WithPath { path, .. } => Some(path.clone()),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                path_of(err)
            }
            ignore::Error::Loop { child, .. } => Some(child.clone()),
            _ => None,
        }
    }
    let path = path_of(&err).unwrap_or_else(|| root.to_owned());
    let reason = match &err {
        ignore::Error::Loop { ancestor, .. } => {
            format!("symlink loop: points back to {}", ancestor.display())
        }
        other => format!("unreadable: {other}"),
    };
    Skipped {
        path: path.to_string_lossy().into_owned(),
        reason,
    }
}
