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
use crate::store::{Condition, Filter, Point};

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

    /// Writes a document's new points, then removes its points of other contents.
    fn replace(
        &self,
        collection: &str,
        path: &str,
        hash: &str,
        points: Vec<Point>,
        stale: bool,
    ) -> Result<(), EngineError> {
        self.store.upsert(collection, points)?;
        if stale {
            let f = Filter::must(Condition::Keyword(field::PATH, path.to_owned()))
                .and_not(Condition::Keyword(field::CONTENT_HASH, hash.to_owned()));
            self.store.delete(collection, &f)?;
        }
        Ok(())
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
        let collection = collection.unwrap_or(DEFAULT_COLLECTION);
        self.create_collection(collection)?;
        let abs = absolute(path);
        let path_str = abs.to_string_lossy().into_owned();
        let file = match content {
            Some(bytes) => self.text_of(&abs, &bytes, language_of(&abs).unwrap_or("text"))?,
            None => self.read_text(&abs)?,
        };
        // Metadata is part of what is stored: a change of it is a change.
        let hash = match metadata {
            Some(m) => {
                blake3::hash(format!("{}:{m}", file.hash).as_bytes()).to_hex()[..32].to_owned()
            }
            None => file.hash.clone(),
        };
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let stored = self.stored_hashes(collection, &path_str)?;
        let doc_id = document_id(&path_str);
        if stored == [hash.clone()] {
            let chunks = self.store.count(
                collection,
                Some(&Filter::must(Condition::Keyword(
                    field::PATH,
                    path_str.clone(),
                ))),
            )? as u64;
            return Ok(IngestResult {
                document_id: doc_id,
                path: path_str,
                chunks,
                unchanged: true,
            });
        }
        let points = self.points(&path_str, &hash, &file, metadata);
        let chunks = points.len() as u64;
        self.replace(collection, &path_str, &hash, points, !stored.is_empty())?;
        self.store.flush(collection)?;
        Ok(IngestResult {
            document_id: doc_id,
            path: path_str,
            chunks,
            unchanged: false,
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
