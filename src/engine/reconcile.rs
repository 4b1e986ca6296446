//! Reconcile: bring the index of a tree (or of one folder of it, with or without its
//! subfolders) in step with the disk by content hash — new and changed files written,
//! unchanged ones skipped, vanished ones removed — reporting each file's change. Used by
//! `documents/ingestDir` (the whole root) and by watches (the folders a change touched).
//!
//! Files are read, chunked and embedded by one worker per core; writes go out in
//! batches, each file's new points before its stale ones are deleted, so a file is
//! always whole at its old or its new content.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::walk::{IngestDirOptions, Skipped, walk};
use super::{DEFAULT_COLLECTION, Engine, EngineError, Progress, absolute, field};
use crate::store::{Condition, Filter, Point, scroll_all};

/// Points read per page when listing a tree's documents.
const SCROLL_PAGE: usize = 1024;

/// `documents/ingestDir` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestDirResult {
    /// Text files found (indexed now or unchanged).
    pub files: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Files whose content hash was unchanged (nothing written).
    pub unchanged: u64,
    /// Documents removed because their file vanished from under the root.
    pub removed: u64,
    /// Files not indexed, with the reason.
    pub skipped: Vec<Skipped>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// Part of a tree to reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// A folder under the root.
    pub dir: PathBuf,
    /// Also its subfolders.
    pub recursive: bool,
}

/// What a reconcile did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Indexed at its current content; `existed`: it had other content before.
    Written {
        /// Absolute path.
        path: String,
        /// Whether an older version was replaced.
        existed: bool,
        /// What was left out of a document indexed only in part (`partly indexed: …`).
        partial: Option<String>,
    },
    /// Its document was removed (the file vanished or is now ignored).
    Removed {
        /// Absolute path.
        path: String,
    },
    /// It could not be indexed.
    Skipped {
        /// Absolute path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a worker made of one file.
enum Outcome {
    Unchanged,
    Write {
        path: String,
        hash: String,
        points: Vec<Point>,
        replaces: bool,
        /// Why a document was only partly extracted.
        partial: Option<String>,
    },
    Skip(String),
}

impl Engine {
    /// [`Engine::ingest_dir`] restricted to `scope` (a folder under `root`, walked
    /// recursively or only its own files), with the change of every file it touched.
    /// Ignore files and globs still apply relative to `root`.
    pub fn ingest_tree(
        &self,
        collection: Option<&str>,
        root: &Path,
        scope: Option<&Scope>,
        options: &IngestDirOptions,
        cancel: &CancellationToken,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(IngestDirResult, Vec<FileChange>), EngineError> {
        let started = Instant::now();
        let _busy = self.foreground();
        let collection = collection.unwrap_or(DEFAULT_COLLECTION);
        let root = absolute(root);
        let mut changes = Vec::new();
        super::require_dir(&root)?;
        self.create_collection(collection)?;
        let (walk_dir, recursive) = match scope {
            Some(s) => (absolute(&s.dir), s.recursive),
            None => (root.clone(), true),
        };
        let (files, mut skipped) = if walk_dir.is_dir() {
            walk(&root, &walk_dir, recursive, options)?
        } else {
            (Vec::new(), Vec::new())
        };
        let total = files.len() as u64;
        progress(Progress {
            files_done: 0,
            files_total: total,
            bytes: 0,
        });
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let scope_str = walk_dir.to_string_lossy().into_owned();
        let mut stored: HashMap<String, Vec<String>> = HashMap::new();
        let f = Filter::must(Condition::Keyword(field::SCOPES, scope_str))
            .and(Condition::Integer(field::CHUNK_INDEX, 0));
        for r in scroll_all(
            &*self.store,
            collection,
            Some(&f),
            SCROLL_PAGE,
            &[field::PATH, field::CONTENT_HASH],
        )? {
            if let (Some(Value::String(p)), Some(Value::String(h))) = (
                r.payload.get(field::PATH),
                r.payload.get(field::CONTENT_HASH),
            ) {
                // A folder's own files only, unless its subfolders were walked too:
                // documents deeper down were not looked at and must not look vanished.
                if recursive || Path::new(p).parent() == Some(walk_dir.as_path()) {
                    stored.entry(p.clone()).or_default().push(h.clone());
                }
            }
        }

        let mut result = IngestDirResult {
            files: 0,
            chunks: 0,
            unchanged: 0,
            removed: 0,
            skipped: Vec::new(),
            elapsed_ms: 0,
        };
        let next = AtomicUsize::new(0);
        let workers = self.config.workers.max(1);
        let (tx, rx) = mpsc::sync_channel::<(u64, Outcome, String)>(workers * 4);
        let mut bytes_done = 0u64;
        let mut done = 0u64;
        let mut batch: Vec<Point> = Vec::new();
        let mut batch_stale: Vec<(String, String)> = Vec::new();
        let mut written_any = false;
        let outcome = std::thread::scope(|s| -> Result<(), EngineError> {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, files, stored) = (&next, &files, &stored);
                s.spawn(move || {
                    loop {
                        if cancel.is_cancelled() {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { return };
                        let path_str = path.to_string_lossy().into_owned();
                        let known = stored.get(&path_str);
                        let same = known.filter(|h| h.len() == 1).map(|h| h[0].as_str());
                        let (bytes, outcome) = match self.read_text_if_changed(path, same) {
                            Err(e) => (0, Outcome::Skip(e.to_string())),
                            Ok(None) => (0, Outcome::Unchanged),
                            Ok(Some(file)) => {
                                if known.is_none() && file.text.trim().is_empty() {
                                    // Nothing to index and nothing stored to replace.
                                    (file.bytes, Outcome::Skip("empty file".into()))
                                } else {
                                    let points = self.points(&path_str, &file.hash, &file, None);
                                    (
                                        file.bytes,
                                        Outcome::Write {
                                            path: path_str.clone(),
                                            hash: file.hash,
                                            points,
                                            replaces: known.is_some(),
                                            partial: file.partial,
                                        },
                                    )
                                }
                            }
                        };
                        if tx.send((bytes, outcome, path_str)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            // Owned here, so that returning early unblocks the workers.
            let rx = rx;
            for (bytes, outcome, path) in rx.iter() {
                if cancel.is_cancelled() {
                    // Files not reported done stay as they were; those reported done
                    // are written below.
                    return Err(EngineError::Cancelled);
                }
                done += 1;
                bytes_done += bytes;
                match outcome {
                    Outcome::Unchanged => {
                        result.files += 1;
                        result.unchanged += 1;
                    }
                    Outcome::Skip(reason) => {
                        // A file that became unreadable keeps its old points.
                        changes.push(FileChange::Skipped {
                            path: path.clone(),
                            reason: reason.clone(),
                        });
                        skipped.push(Skipped { path, reason });
                    }
                    Outcome::Write {
                        path,
                        hash,
                        points,
                        replaces,
                        partial,
                    } => {
                        result.files += 1;
                        result.chunks += points.len() as u64;
                        let partial = partial.map(|p| format!("partly indexed: {p}"));
                        if let Some(reason) = &partial {
                            skipped.push(Skipped {
                                path: path.clone(),
                                reason: reason.clone(),
                            });
                        }
                        changes.push(FileChange::Written {
                            path: path.clone(),
                            existed: replaces,
                            partial,
                        });
                        if points.is_empty() {
                            skipped.push(Skipped {
                                path: path.clone(),
                                reason: "empty file".into(),
                            });
                        }
                        batch.extend(points);
                        if replaces {
                            batch_stale.push((path, hash));
                        }
                        if batch.len() >= 512 {
                            self.write_batch(collection, &mut batch, &mut batch_stale)?;
                            written_any = true;
                        }
                    }
                }
                progress(Progress {
                    files_done: done,
                    files_total: total,
                    bytes: bytes_done,
                });
            }
            Ok(())
        });
        // Every file reported done is written, also when the ingest was cancelled: a
        // progress report is a promise that the file is in.
        let cancelled = matches!(outcome, Err(EngineError::Cancelled));
        if (outcome.is_ok() || cancelled) && !(batch.is_empty() && batch_stale.is_empty()) {
            self.write_batch(collection, &mut batch, &mut batch_stale)?;
            written_any = true;
        }
        if written_any || outcome.is_err() {
            self.store.flush(collection)?;
        }
        outcome?;
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        // Documents whose files vanished (or are now ignored) under the root.
        let present: HashSet<String> = files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let vanished: Vec<String> = stored
            .into_keys()
            .filter(|p| !present.contains(p))
            .collect();
        if !vanished.is_empty() {
            result.removed = vanished.len() as u64;
            changes.extend(
                vanished
                    .iter()
                    .map(|p| FileChange::Removed { path: p.clone() }),
            );
            self.store.delete(
                collection,
                &Filter::must(Condition::KeywordAny(field::PATH, vanished)),
            )?;
            self.touched();
            self.store.flush(collection)?;
            written_any = true;
        }
        if written_any {
            self.store.optimize(collection)?;
        }
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        result.skipped = skipped;
        result.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok((result, changes))
    }

    /// Removes every document at `path` or under it; returns their paths.
    pub fn remove_under(&self, collection: &str, path: &Path) -> Result<Vec<String>, EngineError> {
        let scope =
            Condition::Keyword(field::SCOPES, absolute(path).to_string_lossy().into_owned());
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let docs: Vec<String> = scroll_all(
            &*self.store,
            collection,
            Some(&Filter::must(scope.clone()).and(Condition::Integer(field::CHUNK_INDEX, 0))),
            SCROLL_PAGE,
            &[field::PATH],
        )?
        .into_iter()
        .filter_map(|r| r.payload.get(field::PATH)?.as_str().map(str::to_owned))
        .collect();
        if !docs.is_empty() {
            self.store.delete(collection, &Filter::must(scope))?;
            self.touched();
            self.store.flush(collection)?;
        }
        Ok(docs)
    }

    pub(crate) fn write_batch(
        &self,
        collection: &str,
        batch: &mut Vec<Point>,
        stale: &mut Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        let hashes: Vec<(u64, String)> = if self.config.model.is_some() {
            batch
                .iter()
                .filter_map(|p| {
                    let h = p.payload.get(field::CHUNK_HASH)?.as_str()?;
                    Some((p.id, h.to_owned()))
                })
                .collect()
        } else {
            Vec::new()
        };
        let revision = next_revision();
        for p in batch.iter_mut() {
            p.payload
                .insert(field::REVISION.into(), serde_json::json!(revision));
        }
        self.store.upsert(collection, std::mem::take(batch))?;
        self.touched();
        // Before the old version goes: its vectors serve the unchanged chunks.
        self.reuse_vectors(collection, &hashes)?;
        // Older versions only: had another process written a newer one meanwhile (a
        // shared Qdrant server), it stays and this one goes with its own replace.
        for (path, hash) in stale.drain(..) {
            let f = Filter::must(Condition::Keyword(field::PATH, path))
                .and_not(Condition::Keyword(field::CONTENT_HASH, hash))
                .and_not(Condition::IntegerAtLeast(field::REVISION, revision));
            self.store.delete(collection, &f)?;
        }
        self.touched();
        Ok(())
    }
}

/// A write's revision: µs since the Unix epoch, above every earlier one of this process
/// (µs keep it exact in the store's float ranges).
fn next_revision() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}
