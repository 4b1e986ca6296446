//! The engine's side of semantic search: which collections carry this model's dense
//! vectors (each records its model in its metadata and refuses another), reuse of
//! vectors for unchanged chunks, progress, and waiting for the background embedder.

use std::collections::HashMap;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::semantic::backfill::pending_filter;
use super::semantic::{DenseStatus, ModelInfo};
use super::{Engine, EngineError, field};
use crate::store::{Condition, Filter, StoreError};

/// The collection metadata key holding its model ([`ModelInfo`]).
const MODEL_KEY: &str = "denseModel";

/// Chunk hashes looked up at once when reusing vectors.
const REUSE_BATCH: usize = 256;

/// How a collection relates to the engine's model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Binding {
    /// No dense vectors (created without a model, and the engine has none).
    Sparse,
    /// Filled by the engine's model.
    Ours,
    /// Filled by another model (or the engine has none): `info` is the collection's.
    Other(ModelInfo),
}

impl Engine {
    /// The engine model's info, if one is configured.
    pub fn model_info(&self) -> Option<&ModelInfo> {
        self.config.model.as_ref().map(|m| m.info())
    }

    fn stored_model(&self, collection: &str) -> Result<Option<ModelInfo>, EngineError> {
        let meta = self.store.metadata(collection)?;
        Ok(meta
            .get(MODEL_KEY)
            .and_then(|v| serde_json::from_value(v.clone()).ok()))
    }

    /// How `collection` relates to the model, binding it to the engine's model when it
    /// has none yet (adding its dense vector and recording the model). Cached.
    ///
    /// Errors: `Storage` (also when the store has no such collection).
    pub(crate) fn binding(&self, collection: &str) -> Result<Binding, EngineError> {
        if let Some(b) = self.lock_bindings().get(collection) {
            return Ok(b.clone());
        }
        let stored = self.stored_model(collection)?;
        let binding = match (stored, &self.config.model) {
            (None, None) => Binding::Sparse,
            (Some(info), None) => Binding::Other(info),
            (Some(info), Some(m)) if &info == m.info() => Binding::Ours,
            (Some(info), Some(_)) => Binding::Other(info),
            (None, Some(m)) => {
                let info = m.info();
                match self.store.dense_dim(collection)? {
                    Some(d) if d != info.dimension => {
                        return Err(EngineError::Storage(StoreError::Backend(format!(
                            "collection {collection} has {d}-dimensional dense vectors of an unknown model; the configured model {} has {}",
                            info.name, info.dimension
                        ))));
                    }
                    Some(_) => {}
                    None => {
                        self.store.add_dense(collection, info.dimension)?;
                    }
                }
                let mut meta = self.store.metadata(collection)?;
                meta.insert(
                    MODEL_KEY.into(),
                    serde_json::to_value(info).unwrap_or(Value::Null),
                );
                self.store.set_metadata(collection, &meta)?;
                Binding::Ours
            }
        };
        if binding == Binding::Ours
            && let Some(b) = &self.backfill
        {
            b.track(collection);
        }
        self.lock_bindings()
            .insert(collection.to_owned(), binding.clone());
        Ok(binding)
    }

    fn lock_bindings(&self) -> std::sync::MutexGuard<'_, HashMap<String, Binding>> {
        self.bindings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a deleted collection.
    pub(crate) fn unbind(&self, collection: &str) {
        self.lock_bindings().remove(collection);
        if let Some(b) = &self.backfill {
            b.untrack(collection);
        }
    }

    /// Checks that the engine may write into `collection`: binds it, and refuses a
    /// collection filled by another model than the configured one. (Without a model,
    /// writes are allowed: the new chunks wait for their vectors until the
    /// collection's model is configured again.)
    pub(crate) fn check_writable(&self, collection: &str) -> Result<(), EngineError> {
        match self.binding(collection)? {
            Binding::Other(stored) if self.config.model.is_some() => {
                Err(self.mismatch(collection, stored))
            }
            _ => Ok(()),
        }
    }

    /// The error for `collection`, filled by the model `stored`, used with this
    /// server's model.
    pub(crate) fn mismatch(&self, collection: &str, stored: ModelInfo) -> EngineError {
        EngineError::ModelMismatch(Box::new(super::ModelMismatch {
            collection: collection.to_owned(),
            stored,
            configured: self.model_info().cloned(),
        }))
    }

    /// Binds every existing collection at start, so that the background embedder
    /// resumes (or starts) on them. Failures are logged: the collection stays sparse.
    pub(crate) fn bind_existing(&self) {
        let Ok(names) = self.store.collections() else {
            return;
        };
        for name in names {
            match self.binding(&name) {
                Ok(Binding::Other(info)) => tracing::warn!(
                    collection = name,
                    model = info.name,
                    "collection filled by another embedding model: writes are refused, search is sparse"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(collection = name, error = %e, "collection left sparse"),
            }
        }
    }

    /// `collections/list`'s `dense` entry, `None` for a sparse collection.
    pub(crate) fn dense_status(
        &self,
        collection: &str,
    ) -> Result<Option<DenseStatus>, EngineError> {
        let info = match self.binding(collection)? {
            Binding::Sparse => return Ok(None),
            Binding::Ours => self.model_info().cloned(),
            Binding::Other(info) => Some(info),
        };
        let Some(info) = info else {
            return Ok(None);
        };
        let embedded =
            self.store
                .count(collection, Some(&Filter::must(Condition::HasDense)))? as u64;
        let pending = self.store.count(collection, Some(&pending_filter()))? as u64;
        Ok(Some(DenseStatus {
            model: info.name,
            dimension: info.dimension as u64,
            embedded,
            pending,
        }))
    }

    /// After `points` were written: gives each the dense vector of a stored chunk with
    /// the same `chunkHash` (the file's previous version, or a copy elsewhere), so an
    /// unchanged chunk is never embedded again, then wakes the background embedder.
    pub(crate) fn reuse_vectors(
        &self,
        collection: &str,
        points: &[(u64, String)],
    ) -> Result<(), EngineError> {
        if self.backfill.is_none() || points.is_empty() {
            return Ok(());
        }
        for group in points.chunks(REUSE_BATCH) {
            let mut wanted: HashMap<&str, Vec<u64>> = HashMap::new();
            for (id, h) in group {
                wanted.entry(h.as_str()).or_default().push(*id);
            }
            let hashes: Vec<String> = wanted.keys().map(|h| (*h).to_owned()).collect();
            let found = self.store.dense_vectors(
                collection,
                &Filter::must(Condition::KeywordAny(field::CHUNK_HASH, hashes)),
                group.len() * 2,
                &[field::CHUNK_HASH],
            )?;
            let mut pairs = Vec::new();
            for (record, vector) in found {
                let hash = record
                    .payload
                    .get(field::CHUNK_HASH)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if let Some(ids) = wanted.remove(hash) {
                    pairs.extend(ids.into_iter().map(|id| (id, vector.clone())));
                }
            }
            self.store.set_dense(collection, pairs)?;
        }
        if let Some(b) = &self.backfill {
            b.notify();
        }
        Ok(())
    }

    /// Blocks until `collection` has no chunk waiting for a dense vector, reporting
    /// `(embedded since the wait began, total to embed)` about every 200 ms.
    ///
    /// Errors: `Cancelled`; `InvalidInput` when the collection is not filled by the
    /// engine's model (nothing would ever embed it).
    pub fn wait_for_embeddings(
        &self,
        collection: &str,
        cancel: &CancellationToken,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), EngineError> {
        if self.binding(collection)? != Binding::Ours {
            return Err(EngineError::InvalidInput {
                field: "waitForEmbeddings",
                message: format!(
                    "collection {collection} is not embedded by this server (start it with --embed-model and --embed-tokenizer)"
                ),
            });
        }
        let (mut done, mut total) = (0u64, 0u64);
        loop {
            let pending = self.store.count(collection, Some(&pending_filter()))? as u64;
            // Chunks written meanwhile join the work; `done` never goes back.
            total = total.max(done + pending);
            done = total - pending;
            progress(done, total);
            if pending == 0 {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            if let Some(b) = &self.backfill {
                b.notify();
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
