//! Ingest of one file (or given content) and of a whole folder.
//!
//! A file's points are written in one store operation, and its old points (other
//! content hash) are deleted only after the new ones are in: a file is either fully
//! indexed at its new content or left as it was.

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::chunk::language_of;
use super::read::TextFile;
use super::reconcile::IngestDirResult;
use super::walk::IngestDirOptions;
use super::{DEFAULT_COLLECTION, Engine, EngineError, Progress, absolute, document_id, field};
use crate::store::{Condition, Filter, Point};

/// One document for [`Engine::ingest_many`].
#[derive(Debug, Clone)]
pub struct Document {
    /// The file (absolute or relative to the working directory); with `content`, only
    /// the document's name.
    pub path: std::path::PathBuf,
    /// Its bytes, instead of reading `path`.
    pub content: Option<Vec<u8>>,
    /// Stored with every chunk.
    pub metadata: Option<Value>,
}

/// A document ready to be judged and written by [`Engine::ingest_many`].
struct Prepared {
    /// Absolute path.
    path: String,
    file: TextFile,
    /// Content hash (with the metadata folded in).
    hash: String,
    metadata: Option<Value>,
    /// Its points, unless it looked unchanged when prepared.
    points: Option<Vec<Point>>,
}

/// `documents/ingest` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestResult {
    /// Stable id of the document (from its absolute path).
    pub document_id: String,
    /// Absolute path.
    pub path: String,
    /// Chunks the document has now.
    pub chunks: u64,
    /// True when the content hash was unchanged and nothing was written.
    pub unchanged: bool,
    /// What was left out of a document indexed only in part (a limit reached, a
    /// damaged file); absent when it is whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
}

impl Engine {
    /// Content hashes stored for `path` (one unless an earlier replace was interrupted).
    fn stored_hashes(&self, collection: &str, path: &str) -> Result<Vec<String>, EngineError> {
        let f = Filter::must(Condition::Keyword(field::PATH, path.to_owned()))
            .and(Condition::Integer(field::CHUNK_INDEX, 0));
        Ok(self
            .store
            .scroll(collection, Some(&f), None, 16, &[field::CONTENT_HASH])?
            .records
            .into_iter()
            .filter_map(|r| {
                r.payload
                    .get(field::CONTENT_HASH)?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Indexes one file (or `content`, its bytes, under the name `path`), idempotently.
    /// Given content is judged like a file's bytes (binary, not UTF-8, too large).
    ///
    /// Errors: `NotFound` (no such file), `InvalidPath` (a folder, unreadable),
    /// `UnsupportedContent` (binary, too large, not UTF-8), `Storage`.
    pub fn ingest(
        &self,
        collection: Option<&str>,
        path: &Path,
        content: Option<Vec<u8>>,
        metadata: Option<&Value>,
    ) -> Result<IngestResult, EngineError> {
        let doc = Document {
            path: path.to_owned(),
            content,
            metadata: metadata.cloned(),
        };
        self.ingest_many(collection, vec![doc])?
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(EngineError::InvalidPath("nothing to index".into())))
    }

    /// Indexes several documents (files, or content under their names) with one store
    /// write and one flush: what `BulkIndex` and `SyncIndex` send. Each is judged and
    /// replaced on its own (one bad document does not stop the others; its error is in
    /// its place in the answer); each is whole at its old or its new content.
    ///
    /// Errors: only the store's (every document then keeps its old content).
    pub fn ingest_many(
        &self,
        collection: Option<&str>,
        docs: Vec<Document>,
    ) -> Result<Vec<Result<IngestResult, EngineError>>, EngineError> {
        let _busy = self.foreground();
        let collection = collection.unwrap_or(DEFAULT_COLLECTION);
        self.create_collection(collection)?;
        // Read, decode, hash and make the points outside the writer lock, on the worker
        // threads (as `ingest_dir` does); the writer lock then only judges and writes.
        let prepared = self.prepare_all(collection, docs);
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(prepared.len());
        let mut batch = Vec::new();
        let mut stale = Vec::new();
        let mut in_batch = std::collections::HashSet::new();
        for p in prepared {
            let Prepared {
                path: path_str,
                file,
                hash,
                metadata,
                points,
            } = match p {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            // The same document twice: the earlier version goes in first.
            if !in_batch.insert(path_str.clone()) {
                self.write_batch(collection, &mut batch, &mut stale)?;
                in_batch.clear();
                in_batch.insert(path_str.clone());
            }
            let stored = self.stored_hashes(collection, &path_str)?;
            let document_id = document_id(&path_str);
            if stored == [hash.clone()] {
                let chunks = self.store.count(
                    collection,
                    Some(&Filter::must(Condition::Keyword(
                        field::PATH,
                        path_str.clone(),
                    ))),
                )? as u64;
                out.push(Ok(IngestResult {
                    document_id,
                    path: path_str,
                    chunks,
                    unchanged: true,
                    partial: None,
                }));
                continue;
            }
            // Made before the lock unless the document looked unchanged then.
            let points = match points {
                Some(points) => points,
                None => self.points(&path_str, &hash, &file, metadata.as_ref()),
            };
            let chunks = points.len() as u64;
            batch.extend(points);
            if !stored.is_empty() {
                stale.push((path_str.clone(), hash));
            }
            out.push(Ok(IngestResult {
                document_id,
                path: path_str,
                chunks,
                unchanged: false,
                partial: file.partial.clone(),
            }));
        }
        if !batch.is_empty() || !stale.is_empty() {
            self.write_batch(collection, &mut batch, &mut stale)?;
        }
        self.store.flush(collection)?;
        Ok(out)
    }

    /// [`Engine::prepare`] for every document, on up to `workers` threads, in order.
    fn prepare_all(
        &self,
        collection: &str,
        docs: Vec<Document>,
    ) -> Vec<Result<Prepared, EngineError>> {
        let workers = self.config.workers.max(1).min(docs.len());
        if workers <= 1 {
            return docs
                .into_iter()
                .map(|d| self.prepare(collection, d))
                .collect();
        }
        let mut shares: Vec<Vec<(usize, Document)>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, d) in docs.into_iter().enumerate() {
            shares[i % workers].push((i, d));
        }
        let mut done: Vec<(usize, Result<Prepared, EngineError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .into_iter()
                .map(|share| {
                    s.spawn(move || {
                        share
                            .into_iter()
                            .map(|(i, d)| (i, self.prepare(collection, d)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(v) => v,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        done.sort_unstable_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, p)| p).collect()
    }

    /// One document read (or decoded), hashed and, unless the store already holds
    /// that hash, cut into points.
    fn prepare(&self, collection: &str, d: Document) -> Result<Prepared, EngineError> {
        let abs = absolute(&d.path);
        let file = match d.content {
            Some(bytes) => self.text_of(&abs, &bytes, language_of(&abs).unwrap_or("text"))?,
            None => self.read_text(&abs)?,
        };
        // Metadata is part of what is stored: a change of it is a change.
        let hash = match &d.metadata {
            Some(m) => {
                blake3::hash(format!("{}:{m}", file.hash).as_bytes()).to_hex()[..32].to_owned()
            }
            None => file.hash.clone(),
        };
        let path = abs.to_string_lossy().into_owned();
        // Judged again under the writer lock; this look only spares the work.
        let points = (self.stored_hashes(collection, &path)? != [hash.clone()])
            .then(|| self.points(&path, &hash, &file, d.metadata.as_ref()));
        Ok(Prepared {
            path,
            file,
            hash,
            metadata: d.metadata,
            points,
        })
    }

    /// Indexes every text file under `root` (honouring `.gitignore`/`.ignore`, skipping
    /// hidden files), removes documents whose files vanished, and reports progress.
    /// Stops between files when `cancel` fires (files done stay done).
    ///
    /// Errors: `NotFound`/`InvalidPath` for the root, `InvalidInput` for bad globs,
    /// `Cancelled`, `Storage`.
    pub fn ingest_dir(
        &self,
        collection: Option<&str>,
        root: &Path,
        options: &IngestDirOptions,
        cancel: &CancellationToken,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<IngestDirResult, EngineError> {
        self.ingest_tree(collection, root, None, options, cancel, progress)
            .map(|(r, _)| r)
    }
}
