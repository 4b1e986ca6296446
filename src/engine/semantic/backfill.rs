//! The background embedder: fills the `dense` vector of every chunk that has none,
//! most recently changed files first, on one thread per core, out of the way of
//! foreground work.
//!
//! The store is the queue: a chunk is pending while it has no dense vector, so work
//! resumes after a restart (or a `kill -9`) where it stopped, and a chunk deleted or
//! replaced before its turn is simply gone. A coordinator takes a round of pending
//! chunks (ordered by the `mtime` payload field, newest first), cuts it into small
//! batches and hands them to the workers; each worker owns an ONNX session, embeds a
//! batch and writes its vectors with [`Store::set_dense`] (ids deleted meanwhile are
//! skipped); the round is flushed when all its batches are in, so a crash loses at
//! most the round in flight.
//!
//! Foreground first: workers run in the `SCHED_IDLE` class by default (per thread;
//! [`Priority`]) and, before each chunk, wait until no foreground engine call has
//! run for 50 ms — but never more than a second, so that unending foreground load
//! slows the embedder to a trickle without stopping it ([`Load`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::Model;
use crate::engine::field;
use crate::store::{Condition, Filter, Store};

/// Chunks per job: embedded one by one (see [`Model::embed`]) and written together.
const BATCH: usize = 8;
/// How often an idle coordinator looks for work nobody announced.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// How often a paused worker looks whether the foreground is done.
const PAUSE_POLL: Duration = Duration::from_millis(5);

/// Foreground engine calls in flight and when the last one ended: the background
/// embedder waits for quiet ([`Load::wait_quiet`]).
#[derive(Debug)]
pub struct Load {
    active: AtomicUsize,
    /// Milliseconds from `epoch` to the end of the last foreground call.
    last_end_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            active: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// Held while a foreground call runs ([`Load::enter`]).
#[derive(Debug)]
pub struct Busy<'a>(&'a Load);

/// How long after the last foreground call the embedder stays paused: a burst of
/// searches (someone typing) runs alone.
const QUIET: Duration = Duration::from_millis(50);
/// The longest the embedder waits for quiet before embedding one chunk anyway: under
/// unending foreground load it still advances, one chunk per worker at a time.
const MAX_WAIT: Duration = Duration::from_secs(1);

impl Load {
    /// Marks a foreground call as running until the guard drops.
    pub fn enter(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// Whether a foreground call is running.
    pub fn busy(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    fn quiet(&self) -> bool {
        let since = self.epoch.elapsed().as_millis() as u64;
        !self.busy()
            && since.saturating_sub(self.last_end_ms.load(Ordering::SeqCst))
                >= QUIET.as_millis() as u64
    }

    /// Sleeps until no foreground call has run for [`QUIET`], at most [`MAX_WAIT`]
    /// (or until `stop`).
    pub fn wait_quiet(&self, stop: &AtomicBool) {
        let started = Instant::now();
        while !self.quiet() && started.elapsed() < MAX_WAIT && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(PAUSE_POLL);
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let now = self.0.epoch.elapsed().as_millis() as u64;
        self.0.last_end_ms.store(now, Ordering::SeqCst);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `collections/list`'s `dense` entry: the collection's model and how far its chunks
/// are embedded.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct DenseStatus {
    /// The model the collection's vectors come from (its name).
    pub model: String,
    /// Vector dimension.
    pub dimension: u64,
    /// Chunks with a dense vector.
    pub embedded: u64,
    /// Chunks still waiting for one (searchable by BM25 meanwhile).
    pub pending: u64,
}

/// The filter of chunks still waiting for a dense vector.
pub(crate) fn pending_filter() -> Filter {
    Filter::default().and_not(Condition::HasDense)
}

struct Job {
    collection: String,
    items: Vec<(u64, String)>,
    done: mpsc::Sender<Result<usize, String>>,
}

struct Shared {
    store: Arc<dyn Store>,
    model: Arc<Model>,
    load: Arc<Load>,
    /// Collections whose vectors come from this model.
    collections: Mutex<Vec<String>>,
    /// Set when new chunks may be pending; the coordinator sleeps on it.
    wake: (Mutex<bool>, Condvar),
    stop: AtomicBool,
}

/// The running background embedder; stops its threads when dropped.
pub struct Backfill {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Backfill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backfill")
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// The CPU priority of the embedding threads (`--embed-priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Priority {
    /// Linux's `SCHED_IDLE` class: runs only on CPU time nothing else wants
    /// (`sched(7)`). On a machine busy with other work, embedding waits until it is
    /// not (measured: two busy loops on two cores stopped it).
    #[default]
    Idle,
    /// `nice` 19: the lowest ordinary priority; keeps advancing, slowly, under load.
    Low,
    /// The process's own priority.
    Normal,
}

/// Sets the calling thread's priority. Best effort: a thread that cannot lower its
/// priority still yields to the foreground by pausing.
fn set_priority(priority: Priority) {
    let nice = |n| {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), n);
    };
    match priority {
        Priority::Normal => {}
        Priority::Low => nice(19),
        Priority::Idle => {
            #[cfg(target_os = "linux")]
            {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 names the calling thread; `param` outlives the call.
                if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
                    return;
                }
            }
            nice(19);
        }
    }
}

impl Backfill {
    /// Starts `workers` embedding threads (at least one) at `priority`, and their
    /// coordinator.
    pub fn start(
        store: Arc<dyn Store>,
        model: Arc<Model>,
        load: Arc<Load>,
        workers: usize,
        priority: Priority,
    ) -> Backfill {
        let shared = Arc::new(Shared {
            store,
            model,
            load,
            collections: Mutex::new(Vec::new()),
            wake: (Mutex::new(true), Condvar::new()),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let shared = shared.clone();
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("quarry-embed-{i}"))
                .spawn(move || worker(&shared, &rx, priority));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "cannot start an embedding thread"),
            }
        }
        let coordinator = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("quarry-embed".into())
                .spawn(move || coordinate(&shared, tx, workers.max(1)))
        };
        match coordinator {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(error = %e, "cannot start the embedding coordinator"),
        }
        Backfill { shared, threads }
    }

    /// Adds `collection` to those filled (its vectors come from this model).
    pub fn track(&self, collection: &str) {
        let mut c = self
            .shared
            .collections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !c.iter().any(|n| n == collection) {
            c.push(collection.to_owned());
        }
        drop(c);
        self.notify();
    }

    /// Stops filling `collection` (deleted).
    pub fn untrack(&self, collection: &str) {
        self.shared
            .collections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n != collection);
    }

    /// Says that new chunks may be pending.
    pub fn notify(&self) {
        let (flag, cv) = &self.shared.wake;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

impl Drop for Backfill {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.notify();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn str_of<'a>(p: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    p.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn coordinate(shared: &Shared, jobs: mpsc::Sender<Job>, workers: usize) {
    let round = workers * BATCH * 2;
    while !shared.stop.load(Ordering::SeqCst) {
        let collections = shared
            .collections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut worked = false;
        for collection in collections {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let pending = match shared.store.latest(
                &collection,
                Some(&pending_filter()),
                field::MTIME,
                round,
                &[field::PATH, field::CONTEXT, field::TEXT],
            ) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(collection, error = %e, "no pending chunks read");
                    continue;
                }
            };
            if pending.is_empty() {
                continue;
            }
            worked = true;
            let items: Vec<(u64, String)> = pending
                .into_iter()
                .map(|r| {
                    let p = &r.payload;
                    let input = super::input(
                        str_of(p, field::PATH),
                        str_of(p, field::CONTEXT),
                        str_of(p, field::TEXT),
                    );
                    (r.id, input)
                })
                .collect();
            let (done_tx, done_rx) = mpsc::channel();
            let mut sent = 0;
            for batch in items.chunks(BATCH) {
                let job = Job {
                    collection: collection.clone(),
                    items: batch.to_vec(),
                    done: done_tx.clone(),
                };
                if jobs.send(job).is_err() {
                    return;
                }
                sent += 1;
            }
            drop(done_tx);
            let mut failed = None;
            for r in done_rx.iter().take(sent) {
                if let Err(e) = r {
                    failed = Some(e);
                }
            }
            // Durable round by round: the embedded store does not replay its
            // write-ahead log, so what is not flushed is lost on a crash (a flush per
            // batch stalled foreground searches more often).
            if let Err(e) = shared.store.flush(&collection) {
                failed = Some(e.to_string());
            }
            if let Some(e) = failed {
                tracing::warn!(collection, error = %e, "embedding failed; retrying later");
                wait(shared, IDLE_POLL);
            }
        }
        if !worked {
            wait(shared, IDLE_POLL);
        }
    }
}

/// Sleeps until notified or `timeout`.
fn wait(shared: &Shared, timeout: Duration) {
    let (flag, cv) = &shared.wake;
    let mut woken = flag.lock().unwrap_or_else(|e| e.into_inner());
    if !*woken && !shared.stop.load(Ordering::SeqCst) {
        woken = cv
            .wait_timeout(woken, timeout)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    *woken = false;
}

fn worker(shared: &Shared, jobs: &Mutex<mpsc::Receiver<Job>>, priority: Priority) {
    set_priority(priority);
    let mut encoder = match shared.model.encoder() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot start an embedding session");
            return;
        }
    };
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let mut vectors = Vec::with_capacity(job.items.len());
        let mut failed = None;
        for (_, text) in &job.items {
            shared.load.wait_quiet(&shared.stop);
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            match shared.model.embed(&mut encoder, &[text.as_str()]) {
                Ok(mut v) => vectors.extend(v.pop()),
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            let _ = job.done.send(Ok(0));
            continue;
        }
        let result = match failed {
            Some(e) => Err(e),
            None => {
                let dim = shared.model.info().dimension;
                let pairs: Vec<(u64, Vec<f32>)> = job
                    .items
                    .iter()
                    .map(|(id, _)| *id)
                    .zip(vectors)
                    .filter(|(_, v)| v.len() == dim)
                    .collect();
                shared
                    .store
                    .set_dense(&job.collection, pairs)
                    .map_err(|e| e.to_string())
            }
        };
        let _ = job.done.send(result);
    }
}
