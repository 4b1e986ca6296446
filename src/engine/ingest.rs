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
use super::reconcile::IngestDirResult;
use super::walk::IngestDirOptions;
use super::{DEFAULT_COLLECTION, Engine, EngineError, Progress, absolute, document_id, field};
use crate::store::{Condition, Filter};

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
        let collection = collection.unwrap_or(DEFAULT_COLLECTION);
        self.create_collection(collection)?;
        // Read, decode and hash outside the writer lock.
        let prepared: Vec<_> = docs
            .into_iter()
            .map(|d| {
                let abs = absolute(&d.path);
                let file = match d.content {
                    Some(bytes) => {
                        self.text_of(&abs, &bytes, language_of(&abs).unwrap_or("text"))?
                    }
                    None => self.read_text(&abs)?,
                };
                // Metadata is part of what is stored: a change of it is a change.
                let hash = match &d.metadata {
                    Some(m) => blake3::hash(format!("{}:{m}", file.hash).as_bytes()).to_hex()[..32]
                        .to_owned(),
                    None => file.hash.clone(),
                };
                Ok((abs.to_string_lossy().into_owned(), file, hash, d.metadata))
            })
            .collect();
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(prepared.len());
        let mut batch = Vec::new();
        let mut stale = Vec::new();
        let mut in_batch = std::collections::HashSet::new();
        for p in prepared {
            let (path_str, file, hash, metadata) = match p {
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
                }));
                continue;
            }
            let points = self.points(&path_str, &hash, &file, metadata.as_ref());
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
            }));
        }
        if !batch.is_empty() || !stale.is_empty() {
            self.write_batch(collection, &mut batch, &mut stale)?;
        }
        self.store.flush(collection)?;
        Ok(out)
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
