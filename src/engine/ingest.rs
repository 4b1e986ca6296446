//! Ingest: files and folders into chunks and points.
//!
//! A file's points are written in one store operation, and its old points (other
//! content hash) are deleted only after the new ones are in: a file is either fully
//! indexed at its new content or left as it was. Point ids derive from
//! (document, content hash, chunk index), so replaying an interrupted ingest is
//! idempotent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::chunk::{chunk, language_of};
use super::text::terms;
use super::{
    DEFAULT_COLLECTION, Engine, EngineError, Progress, absolute, document_id, field, scopes,
};
use crate::store::{Condition, Filter, Point, scroll_all};

/// Points read per page when listing a tree's documents.
const SCROLL_PAGE: usize = 1024;

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

/// A file that was not indexed, and why.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Skipped {
    /// Absolute path.
    pub path: String,
    /// Why, for people (`binary file`, `too large: …`, `not UTF-8 text`, `empty file`,
    /// `unreadable: …`, `symlink loop: …`).
    pub reason: String,
}

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

/// Include/exclude globs for `ingest_dir` (gitignore syntax, relative to the root).
#[derive(Debug, Clone, Default)]
pub struct IngestDirOptions {
    /// When non-empty, only files matching one of these are indexed.
    pub include: Vec<String>,
    /// Files matching one of these are not indexed.
    pub exclude: Vec<String>,
}

/// A file read and checked.
struct TextFile {
    text: String,
    hash: String,
    bytes: u64,
    language: &'static str,
}

/// What a worker made of one file.
enum Outcome {
    Unchanged,
    Write {
        path: String,
        hash: String,
        points: Vec<Point>,
        replaces: bool,
    },
    Skip(String),
}

/// Bytes inspected for NUL when deciding whether a file is binary.
const SNIFF: usize = 8 * 1024;

impl Engine {
    /// Reads `path` as text: the reason it cannot be is an [`EngineError`].
    fn read_text(&self, path: &Path) -> Result<TextFile, EngineError> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EngineError::NotFound(format!("no such file: {shown}")),
            _ => EngineError::InvalidPath(format!("unreadable: {shown}: {e}")),
        })?;
        if !meta.is_file() {
            return Err(EngineError::InvalidPath(format!(
                "not a regular file: {shown}"
            )));
        }
        let Some(language) = language_of(path) else {
            return Err(EngineError::UnsupportedContent(format!(
                "binary file type: {shown}"
            )));
        };
        if meta.len() > self.config.max_file_bytes {
            return Err(EngineError::UnsupportedContent(format!(
                "too large: {shown} has {} bytes, the limit is {}",
                meta.len(),
                self.config.max_file_bytes
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| EngineError::InvalidPath(format!("unreadable: {shown}: {e}")))?;
        let text = decode(&bytes).ok_or_else(|| {
            EngineError::UnsupportedContent(format!("not text (binary or not UTF-8): {shown}"))
        })?;
        Ok(TextFile {
            hash: blake3::hash(&bytes).to_hex()[..32].to_owned(),
            bytes: bytes.len() as u64,
            text,
            language,
        })
    }

    /// Chunks and embeds one document.
    fn points(
        &self,
        path: &str,
        hash: &str,
        file: &TextFile,
        metadata: Option<&Value>,
    ) -> Vec<Point> {
        let doc_id = document_id(path);
        let p = Path::new(path);
        let mut title = Vec::new();
        if let Some(stem) = p.file_stem() {
            terms(&stem.to_string_lossy(), &mut title);
        }
        let scopes = scopes(p);
        chunk(&file.text, file.language, &self.config.chunking)
            .into_iter()
            .map(|c| {
                let mut ts = title.clone();
                terms(&c.context, &mut ts);
                terms(&c.text, &mut ts);
                if self.config.definition_boost {
                    definitions(&c.text, &mut ts);
                }
                let id_bytes = blake3::hash(format!("{doc_id}:{hash}:{}", c.index).as_bytes());
                let id =
                    u64::from_le_bytes(id_bytes.as_bytes()[..8].try_into().unwrap_or_default());
                let mut payload = Map::new();
                payload.insert(field::PATH.into(), json!(path));
                payload.insert(field::SCOPES.into(), json!(scopes));
                payload.insert(field::DOCUMENT_ID.into(), json!(doc_id));
                payload.insert(field::LANGUAGE.into(), json!(file.language));
                payload.insert(field::CONTENT_HASH.into(), json!(hash));
                payload.insert(field::CHUNK_INDEX.into(), json!(c.index));
                payload.insert(field::START_LINE.into(), json!(c.start_line));
                payload.insert(field::END_LINE.into(), json!(c.end_line));
                payload.insert(field::TEXT.into(), json!(c.text));
                if let Some(m) = metadata {
                    payload.insert(field::METADATA.into(), m.clone());
                }
                Point {
                    id,
                    sparse: self.embedder.document(&ts),
                    dense: None,
                    payload,
                }
            })
            .collect()
    }

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

    /// Indexes one file (or `content` under the name `path`), idempotently.
    ///
    /// Errors: `NotFound` (no such file), `InvalidPath` (a folder, unreadable),
    /// `UnsupportedContent` (binary, too large, not UTF-8), `Storage`.
    pub fn ingest(
        &self,
        collection: Option<&str>,
        path: &Path,
        content: Option<String>,
        metadata: Option<&Value>,
    ) -> Result<IngestResult, EngineError> {
        let collection = collection.unwrap_or(DEFAULT_COLLECTION);
        self.create_collection(collection)?;
        let abs = absolute(path);
        let path_str = abs.to_string_lossy().into_owned();
        let file = match content {
            Some(text) => TextFile {
                hash: blake3::hash(text.as_bytes()).to_hex()[..32].to_owned(),
                bytes: text.len() as u64,
                language: language_of(&abs).unwrap_or("text"),
                text,
            },
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
                        let (bytes, outcome) = match self.read_text(path) {
                            Err(e) => (0, Outcome::Skip(e.to_string())),
                            Ok(file) => {
                                let known = stored.get(&path_str);
                                if known.is_some_and(|h| h.len() == 1 && h[0] == file.hash) {
                                    (file.bytes, Outcome::Unchanged)
                                } else if known.is_none() && file.text.trim().is_empty() {
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
                    } => {
                        result.files += 1;
                        result.chunks += points.len() as u64;
                        changes.push(FileChange::Written {
                            path: path.clone(),
                            existed: replaces,
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
            self.store.flush(collection)?;
        }
        Ok(docs)
    }

    fn write_batch(
        &self,
        collection: &str,
        batch: &mut Vec<Point>,
        stale: &mut Vec<(String, String)>,
    ) -> Result<(), EngineError> {
        self.store.upsert(collection, std::mem::take(batch))?;
        for (path, hash) in stale.drain(..) {
            let f = Filter::must(Condition::Keyword(field::PATH, path))
                .and_not(Condition::Keyword(field::CONTENT_HASH, hash));
            self.store.delete(collection, &f)?;
        }
        Ok(())
    }
}

/// Keywords that introduce a definition in common languages.
const DEFINERS: &[&str] = &[
    "def",
    "class",
    "fn",
    "struct",
    "enum",
    "trait",
    "impl",
    "func",
    "function",
    "interface",
    "type",
    "mod",
    "module",
    "macro_rules!",
];

/// How many extra times a defined name's terms count (a symbol boost: the chunk that
/// defines `namedtuple` outranks the tests that call it).
const DEFINITION_WEIGHT: usize = 3;

/// Appends the terms of the names defined in `text` (`def NAME`, `class NAME`,
/// `fn NAME`, ...), [`DEFINITION_WEIGHT`] times.
fn definitions(text: &str, out: &mut Vec<String>) {
    for line in text.lines() {
        let mut words = line
            .split(|c: char| c.is_whitespace() || c == '(' || c == ':' || c == '<' || c == '{')
            .filter(|w| !w.is_empty())
            .skip_while(|w| {
                matches!(
                    *w,
                    "pub"
                        | "pub(crate)"
                        | "async"
                        | "export"
                        | "static"
                        | "unsafe"
                        | "const"
                        | "public"
                        | "private"
                        | "protected"
                )
            });
        let (Some(kw), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if DEFINERS.contains(&kw) {
            let start = out.len();
            terms(name, out);
            let defined: Vec<String> = out[start..].to_vec();
            for _ in 1..DEFINITION_WEIGHT {
                out.extend(defined.iter().cloned());
            }
        }
    }
}

/// Text of a file: UTF-8, or lossily decoded when at most 1 % of it is invalid;
/// `None` for binary content (a NUL byte in the first 8 KiB) or mostly-invalid text.
fn decode(bytes: &[u8]) -> Option<String> {
    if memchr::memchr(0, &bytes[..bytes.len().min(SNIFF)]).is_some() {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s.to_owned()),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let bad = text.matches('\u{FFFD}').count();
            (bad * 100 <= bytes.len()).then(|| text.into_owned())
        }
    }
}

/// Files under `root` in walk order, and what could not be walked.
fn walk(
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

fn walk_error(root: &Path, err: ignore::Error) -> Skipped {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defined_names_are_boosted() {
        let mut out = Vec::new();
        definitions(
            "    def namedtuple(typename):\npub fn parse_args() {}\nx = 1\nclass Foo:",
            &mut out,
        );
        let count = |t: &str| out.iter().filter(|x| *x == t).count();
        assert_eq!(count("namedtuple"), DEFINITION_WEIGHT);
        assert_eq!(count("parse_args"), DEFINITION_WEIGHT);
        assert_eq!(count("args"), DEFINITION_WEIGHT);
        assert_eq!(count("foo"), DEFINITION_WEIGHT);
        assert_eq!(count("x"), 0);
    }

    #[test]
    fn binary_and_lossy_decoding() {
        assert_eq!(decode(b"plain"), Some("plain".into()));
        assert_eq!(decode(b"a\x00b"), None);
        let mut mostly = b"x".repeat(200);
        mostly.push(0xff);
        assert!(decode(&mostly).is_some());
        assert!(decode(&b"\xe9".repeat(50)).is_none());
    }
}
