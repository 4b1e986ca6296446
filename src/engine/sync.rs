//! The server side of `SyncIndex` (GRPC.md §2): which of a client's files the index
//! lacks or holds at another content, and the removal of the documents under the
//! client's folder that its manifest no longer lists.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Engine, EngineError, absolute, field};
use crate::store::{Condition, Filter, scroll_all};

/// Hex SHA-256 of `bytes` (lower case, 64 digits).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a manifest asks of the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncPlan {
    /// The manifest's paths (exactly as sent) whose content the index lacks or holds
    /// at another hash.
    pub needed: Vec<String>,
    /// Manifest entries the index holds at their hash already.
    pub unchanged: u64,
    /// Documents under the prefix that the manifest does not list, now deleted.
    pub deleted: u64,
    /// Manifest entries whose content this engine refused before at that very hash
    /// (binary, too large, empty, not UTF-8): not asked for again.
    pub skipped: u64,
}

impl Engine {
    /// Compares `entries` (path, hex SHA-256) with what `collection` holds under
    /// `prefix`, deletes the documents under `prefix` that `entries` does not list, and
    /// says which entries need their content sent.
    ///
    /// Errors: a relative prefix or an entry outside it, a malformed hash
    /// (`InvalidInput`), `Storage`.
    pub fn sync_plan(
        &self,
        collection: &str,
        prefix: &Path,
        entries: &[(String, String)],
    ) -> Result<SyncPlan, EngineError> {
        if !prefix.is_absolute() {
            return Err(EngineError::InvalidInput {
                field: "prefix",
                message: "must be an absolute path".into(),
            });
        }
        let prefix = absolute(prefix);
        let mut wanted: HashMap<String, &str> = HashMap::new();
        for (path, sha) in entries {
            let abs = absolute(Path::new(path));
            if !Path::new(path).is_absolute() || !abs.starts_with(&prefix) {
                return Err(EngineError::InvalidInput {
                    field: "entries.path",
                    message: format!("{path} is not an absolute path under the prefix"),
                });
            }
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EngineError::InvalidInput {
                    field: "entries.sha256",
                    message: format!("{path}: not a hex SHA-256"),
                });
            }
            wanted.insert(abs.to_string_lossy().into_owned(), sha.as_str());
        }
        self.create_collection(collection)?;
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let scope = Filter::must(Condition::Keyword(
            field::SCOPES,
            prefix.to_string_lossy().into_owned(),
        ))
        .and(Condition::Integer(field::CHUNK_INDEX, 0));
        let mut held: HashMap<String, HashSet<String>> = HashMap::new();
        for r in scroll_all(
            &*self.store,
            collection,
            Some(&scope),
            1024,
            &[field::PATH, field::SHA256],
        )? {
            if let Some(p) = r.payload.get(field::PATH).and_then(|v| v.as_str()) {
                let sha = r
                    .payload
                    .get(field::SHA256)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                held.entry(p.to_owned()).or_default().insert(sha.to_owned());
            }
        }
        let mut plan = SyncPlan::default();
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let refused = refused.entry(collection.to_owned()).or_default();
        // What the manifest no longer lists under the prefix is forgotten.
        let prefix_str = prefix.to_string_lossy().into_owned();
        refused.retain(|p, _| !Path::new(p).starts_with(&prefix_str) || wanted.contains_key(p));
        for (path, sha) in entries {
            let abs = absolute(Path::new(path)).to_string_lossy().into_owned();
            let sha = sha.to_ascii_lowercase();
            let same = held
                .get(&abs)
                .is_some_and(|s| s.len() == 1 && s.contains(&sha));
            if same {
                plan.unchanged += 1;
            } else if refused.get(&abs) == Some(&sha) {
                plan.skipped += 1;
            } else {
                plan.needed.push(path.clone());
            }
        }
        let gone: Vec<String> = held
            .into_keys()
            .filter(|p| !wanted.contains_key(p))
            .collect();
        if !gone.is_empty() {
            plan.deleted = gone.len() as u64;
            self.store.delete(
                collection,
                &Filter::must(Condition::KeywordAny(field::PATH, gone)),
            )?;
            self.touched();
            self.store.flush(collection)?;
        }
        Ok(plan)
    }
}

impl Engine {
    /// Notes that `SyncIndex` content of `path` at `sha256` was refused (or, with
    /// `None`, that `path` is now indexed), for [`Engine::sync_plan`].
    pub fn note_sync_refusal(&self, collection: &str, path: &str, sha256: Option<&str>) {
        let abs = absolute(Path::new(path)).to_string_lossy().into_owned();
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let map = refused.entry(collection.to_owned()).or_default();
        match sha256 {
            Some(sha) => {
                map.insert(abs, sha.to_ascii_lowercase());
            }
            None => {
                map.remove(&abs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
