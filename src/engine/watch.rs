//! Watched folders: the index follows every change on disk.
//!
//! A watch arms a recursive OS watcher (`notify`, debounced by
//! `notify-debouncer-full`, which pairs renames and coalesces bursts), reconciles the
//! index with the disk once (by content hash, like `ingest_dir`), then applies each
//! debounced batch by reconciling only the folders it touched, with the same ignore
//! rules and globs. Every applied change is reported through the watch's callback
//! after the index holds it. Queue overflow (`need_rescan`) reconciles the whole root;
//! a deleted root ends the watch with an error event.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::reconcile::{FileChange, Scope};
use super::walk::IngestDirOptions;
use super::{Engine, EngineError, Progress, absolute};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new file.
    Created,
    /// New content.
    Modified,
    /// Gone.
    Deleted,
    /// Either end of a rename (the old path leaves the index, the new one enters).
    Renamed,
}

/// `watch/event` params: one change, after the index applied it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchEvent {
    /// The watch.
    pub watch_id: String,
    /// Absolute path of the file (or of the root, when it was deleted).
    pub path: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Whether the index now reflects it.
    pub indexed: bool,
    /// Why not, when `indexed` is false; with `indexed` true, what was left out of a
    /// document indexed only in part (`partly indexed: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One running watch, as `watch/list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchInfo {
    /// Id.
    pub watch_id: String,
    /// Absolute root folder.
    pub root: String,
    /// Collection.
    pub collection: String,
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The folder.
    pub root: PathBuf,
    /// The collection.
    pub collection: String,
    /// Globs, as for `ingest_dir`.
    pub options: IngestDirOptions,
    /// Quiet time before a burst of changes is applied: [`MIN_DEBOUNCE`] to
    /// [`MAX_DEBOUNCE`], default [`DEFAULT_DEBOUNCE`].
    pub debounce: Option<Duration>,
    /// The id to run under (a watch re-armed on a new owner after a takeover, GRPC.md
    /// §6); `None`: a fresh one, `w<pid>-<n>`, unique across the processes of a folder.
    pub id: Option<String>,
}

/// Debounce of a watch that names none.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);
/// Shortest debounce.
pub const MIN_DEBOUNCE: Duration = Duration::from_millis(10);
/// Longest debounce.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(60);

/// Receives the events of one watch.
pub type EventSink = Arc<dyn Fn(WatchEvent) + Send + Sync>;

struct Running {
    info: WatchInfo,
    stop: CancellationToken,
}

/// The running watches of one engine.
pub struct Watches {
    engine: Arc<Engine>,
    max: usize,
    map: Arc<Mutex<BTreeMap<String, Running>>>,
    /// Watches between the limit check and their insertion (reconciling): they count
    /// against `max`, so concurrent starts cannot exceed it.
    starting: Arc<Mutex<usize>>,
    next: AtomicU64,
}

/// A slot counted against the watch limit until dropped.
struct Reservation(Arc<Mutex<usize>>);

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut n = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
    }
}

fn os_limit() -> String {
    let current = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!(
        "the operating system's limit on watched folders is reached \
         (fs.inotify.max_user_watches = {current}); raise it with \
         `sudo sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.conf to keep it)"
    )
}

fn watch_error(root: &Path, e: notify::Error) -> EngineError {
    let enospc = matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28));
    if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) || enospc {
        EngineError::Limit(os_limit())
    } else {
        EngineError::InvalidPath(format!("cannot watch {}: {e}", root.display()))
    }
}

impl Watches {
    /// No watches yet; at most `max` at once.
    pub fn new(engine: Arc<Engine>, max: usize) -> Self {
        Watches {
            engine,
            max,
            map: Arc::new(Mutex::new(BTreeMap::new())),
            starting: Arc::new(Mutex::new(0)),
            next: AtomicU64::new(1),
        }
    }

    /// The running watches.
    pub fn list(&self) -> Vec<WatchInfo> {
        self.map
            .lock()
            .map(|m| m.values().map(|r| r.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Stops a watch; `false` if there is none with that id.
    pub fn stop(&self, id: &str) -> bool {
        let removed = self.map.lock().ok().and_then(|mut m| m.remove(id));
        match removed {
            Some(r) => {
                r.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every watch.
    pub fn stop_all(&self) {
        if let Ok(mut m) = self.map.lock() {
            for (_, r) in std::mem::take(&mut *m) {
                r.stop.cancel();
            }
        }
    }

    /// Counts a starting watch against the limit, or `Limit` when it is reached.
    fn reserve(&self) -> Result<Reservation, EngineError> {
        // Lock order: `map`, then `starting` (as everywhere else).
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() + *starting >= self.max {
            return Err(EngineError::Limit(format!(
                "too many watches: at most {} at once (--max-watches)",
                self.max
            )));
        }
        *starting += 1;
        Ok(Reservation(self.starting.clone()))
    }

    /// Arms the watcher (then tells `armed` the watch's id), reconciles the index with
    /// the disk (reporting `progress`), then follows changes on a thread of its own,
    /// reporting each to `sink`.
    ///
    /// Errors: `NotFound`/`InvalidPath` for the root, `Limit` (too many watches, or
    /// the OS watch limit), `InvalidInput` (globs), `Cancelled`, `Storage`.
    pub fn start(
        &self,
        spec: WatchSpec,
        cancel: &CancellationToken,
        armed: &dyn Fn(&WatchInfo),
        progress: &(dyn Fn(Progress) + Sync),
        sink: EventSink,
    ) -> Result<WatchInfo, EngineError> {
        let debounce = spec.debounce.unwrap_or(DEFAULT_DEBOUNCE);
        if !(MIN_DEBOUNCE..=MAX_DEBOUNCE).contains(&debounce) {
            return Err(EngineError::InvalidInput {
                field: "debounceMs",
                message: format!(
                    "must be between {} and {} ms",
                    MIN_DEBOUNCE.as_millis(),
                    MAX_DEBOUNCE.as_millis()
                ),
            });
        }
        let root = absolute(&spec.root);
        super::require_dir(&root)?;
        if let Some(id) = &spec.id
            && self.list().iter().any(|w| &w.watch_id == id)
        {
            return Err(EngineError::InvalidInput {
                field: "watchId",
                message: format!("a watch {id} is already running"),
            });
        }
        let reservation = self.reserve()?;
        let (tx, rx) = mpsc::channel::<DebounceEventResult>();
        let mut debouncer = new_debouncer(debounce, None, tx).map_err(|e| watch_error(&root, e))?;
        debouncer
            .watch(&root, RecursiveMode::Recursive)
            .map_err(|e| watch_error(&root, e))?;
        let id = spec.id.clone().unwrap_or_else(|| {
            format!(
                "w{}-{}",
                std::process::id(),
                self.next.fetch_add(1, Ordering::Relaxed)
            )
        });
        let info = WatchInfo {
            watch_id: id.clone(),
            root: root.to_string_lossy().into_owned(),
            collection: spec.collection.clone(),
        };
        armed(&info);
        // Changes made during the reconcile wait in the channel and are applied after.
        self.engine.ingest_tree(
            Some(&spec.collection),
            &root,
            None,
            &spec.options,
            cancel,
            progress,
        )?;
        let stop = CancellationToken::new();
        {
            let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
            m.insert(
                id.clone(),
                Running {
                    info: info.clone(),
                    stop: stop.clone(),
                },
            );
            // Counted as running now, not as starting.
            drop(reservation);
        }
        let follower = Follower {
            engine: self.engine.clone(),
            id: id.clone(),
            root,
            spec,
            sink,
        };
        let map = self.map.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("quarry-watch-{id}"))
            .spawn(move || {
                let _debouncer = debouncer; // dropped (unwatched) when the loop ends
                follower.run(&rx, &stop);
                if let Ok(mut m) = map.lock() {
                    m.remove(&follower.id);
                }
                tracing::info!(watch = %follower.id, "watch ended");
            });
        if let Err(e) = spawned {
            self.stop(&id);
            return Err(EngineError::InvalidPath(format!(
                "cannot start the watch thread: {e}"
            )));
        }
        Ok(info)
    }
}

struct Follower {
    engine: Arc<Engine>,
    id: String,
    root: PathBuf,
    spec: WatchSpec,
    sink: EventSink,
}

impl Follower {
    fn run(&self, rx: &mpsc::Receiver<DebounceEventResult>, stop: &CancellationToken) {
        let mut settle: Vec<(std::time::Instant, Scope)> = Vec::new();
        while !stop.is_cancelled() {
            let batch = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => b,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Files written into a new folder before the OS watcher covered it
                    // raise no event: look at new folders once more when things settle.
                    let now = std::time::Instant::now();
                    let (due, later): (Vec<_>, Vec<_>) =
                        settle.into_iter().partition(|(at, _)| *at <= now);
                    settle = later;
                    // A folder gone since (renamed or deleted) raised events of its
                    // own, applied with their kinds: looking at it here would report
                    // its files as plain deletions first.
                    let scopes: Vec<Scope> = due
                        .into_iter()
                        .map(|(_, s)| s)
                        .filter(|s| s.dir.is_dir())
                        .collect();
                    if !scopes.is_empty() {
                        self.reconcile(dedupe(scopes), &HashMap::new());
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            if stop.is_cancelled() {
                return;
            }
            match self.apply(batch) {
                None => return,
                Some(new_dirs) => {
                    let at = std::time::Instant::now()
                        + (self.spec.debounce.unwrap_or(DEFAULT_DEBOUNCE) * 2)
                            .clamp(Duration::from_millis(100), Duration::from_secs(2));
                    settle.extend(new_dirs.into_iter().map(|dir| {
                        (
                            at,
                            Scope {
                                dir,
                                recursive: true,
                            },
                        )
                    }));
                }
            }
        }
    }

    fn emit(&self, path: String, kind: ChangeKind, error: Option<String>) {
        self.emit_indexed(path, kind, error.is_none(), error);
    }

    fn emit_indexed(&self, path: String, kind: ChangeKind, indexed: bool, error: Option<String>) {
        (self.sink)(WatchEvent {
            watch_id: self.id.clone(),
            path,
            kind,
            indexed,
            error,
        });
    }

    /// Applies one debounced batch; `None` when the watch must end, else the folders it
    /// saw created (to look at again once they settle).
    fn apply(&self, batch: DebounceEventResult) -> Option<Vec<PathBuf>> {
        let mut rescan = false;
        let mut hints: HashMap<PathBuf, ChangeKind> = HashMap::new();
        match batch {
            Ok(events) => {
                for ev in events {
                    if ev.need_rescan() {
                        rescan = true;
                    }
                    let kind = match ev.kind {
                        EventKind::Create(_) => ChangeKind::Created,
                        EventKind::Remove(_) => ChangeKind::Deleted,
                        EventKind::Modify(ModifyKind::Name(
                            RenameMode::Both | RenameMode::From | RenameMode::To | RenameMode::Any,
                        )) => ChangeKind::Renamed,
                        EventKind::Access(_) => continue,
                        _ => ChangeKind::Modified,
                    };
                    for p in &ev.paths {
                        hints.insert(p.clone(), kind);
                    }
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(watch = %self.id, error = %e, "watch error; rescanning");
                }
                rescan = true;
            }
        }
        if !self.root.is_dir() {
            let removed = self
                .engine
                .remove_under(&self.spec.collection, &self.root)
                .map(|d| d.len())
                .unwrap_or(0);
            self.emit(
                self.root.to_string_lossy().into_owned(),
                ChangeKind::Deleted,
                Some(format!(
                    "the watched root was deleted ({removed} documents removed); the watch ended"
                )),
            );
            return None;
        }
        let new_dirs: Vec<PathBuf> = hints
            .iter()
            .filter(|(p, k)| **k != ChangeKind::Deleted && p.is_dir() && p.starts_with(&self.root))
            .map(|(p, _)| p.clone())
            .collect();
        let mut scopes: Vec<Scope> = Vec::new();
        let mut gone: Vec<PathBuf> = Vec::new();
        if rescan {
            scopes.push(Scope {
                dir: self.root.clone(),
                recursive: true,
            });
        } else {
            for p in hints.keys() {
                if !p.starts_with(&self.root) {
                    continue;
                }
                if p.is_dir() {
                    scopes.push(Scope {
                        dir: p.clone(),
                        recursive: true,
                    });
                } else if p.exists() {
                    if let Some(parent) = p.parent() {
                        // A created file may be the first sign of a new folder tree whose
                        // own events raced the OS watcher: look at its folder recursively.
                        let recursive = hints.get(p) != Some(&ChangeKind::Modified);
                        scopes.push(Scope {
                            dir: parent.to_owned(),
                            recursive,
                        });
                    }
                } else {
                    gone.push(p.clone());
                }
            }
        }
        for p in gone {
            match self.engine.remove_under(&self.spec.collection, &p) {
                Ok(docs) => {
                    for d in docs {
                        let kind = match hint_of(&hints, &d) {
                            Some(ChangeKind::Renamed) => ChangeKind::Renamed,
                            _ => ChangeKind::Deleted,
                        };
                        self.emit(d, kind, None);
                    }
                }
                Err(e) => self.emit(
                    p.to_string_lossy().into_owned(),
                    ChangeKind::Deleted,
                    Some(e.to_string()),
                ),
            }
        }
        self.reconcile(dedupe(scopes), &hints);
        Some(new_dirs)
    }

    /// Reconciles `scopes` and reports each change (kinds refined by `hints`).
    fn reconcile(&self, scopes: Vec<Scope>, hints: &HashMap<PathBuf, ChangeKind>) {
        for scope in dedupe(scopes) {
            let result = self.engine.ingest_tree(
                Some(&self.spec.collection),
                &self.root,
                Some(&scope),
                &self.spec.options,
                &CancellationToken::new(),
                &|_| {},
            );
            match result {
                Ok((_, changes)) => {
                    for c in changes {
                        match c {
                            FileChange::Written {
                                path,
                                existed,
                                partial,
                            } => {
                                let kind = match (hint_of(hints, &path), existed) {
                                    (_, true) => ChangeKind::Modified,
                                    (Some(ChangeKind::Renamed), false) => ChangeKind::Renamed,
                                    (_, false) => ChangeKind::Created,
                                };
                                self.emit_indexed(path, kind, true, partial);
                            }
                            FileChange::Removed { path } => {
                                let kind = match hint_of(hints, &path) {
                                    Some(ChangeKind::Renamed) => ChangeKind::Renamed,
                                    _ => ChangeKind::Deleted,
                                };
                                self.emit(path, kind, None);
                            }
                            FileChange::Skipped { path, reason } => {
                                // Only report files this batch touched.
                                if let Some(kind) = hints.get(Path::new(&path)).copied() {
                                    self.emit(path, kind, Some(reason));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(watch = %self.id, error = %e, "applying changes failed");
                    self.emit(
                        scope.dir.to_string_lossy().into_owned(),
                        ChangeKind::Modified,
                        Some(e.to_string()),
                    );
                }
            }
        }
    }
}

/// The event kind seen for `path` or its nearest ancestor in this batch.
fn hint_of(hints: &HashMap<PathBuf, ChangeKind>, path: &str) -> Option<ChangeKind> {
    Path::new(path)
        .ancestors()
        .find_map(|a| hints.get(a).copied())
}

/// Drops scopes covered by a recursive one; merges duplicates.
fn dedupe(mut scopes: Vec<Scope>) -> Vec<Scope> {
    scopes.sort_by(|a, b| a.dir.cmp(&b.dir).then(b.recursive.cmp(&a.recursive)));
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        let covered = out.iter().any(|o| {
            (o.recursive && s.dir.starts_with(&o.dir))
                || (o.dir == s.dir && (o.recursive || !s.recursive))
        });
        if !covered {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_covered_by_a_recursive_one_are_dropped() {
        let s = |d: &str, r: bool| Scope {
            dir: PathBuf::from(d),
            recursive: r,
        };
        let got = dedupe(vec![
            s("/a/b", false),
            s("/a", true),
            s("/c", false),
            s("/c", false),
            s("/a/b/c", true),
        ]);
        assert_eq!(got, vec![s("/a", true), s("/c", false)]);
    }
}
