//! One data folder, many hosts (GRPC.md §6): the owner holds the store; every other
//! `quarry serve` on the folder follows it.
//!
//! Ownership is the store's own `flock` on `DATA_DIR/quarry.lock` (the kernel drops it
//! with its holder, `kill -9` included): [`Share::route`] opens the engine if it can —
//! this process is then the owner — and otherwise links to the holder named in the lock
//! file over its Unix socket ([`link::Link`]). A follower answers control methods itself
//! and carries every owner method ([`crate::methods::OWNER_METHODS`]) through the link.
//! When the link breaks (the owner exited or died) the next call decides again: exactly
//! one process gets the lock and becomes the owner, the others link to it. Read-only calls
//! in flight are retried there; the others are answered `-32004` `owner_lost`. Watches a
//! follower's host started are re-armed on the new owner under the same `watchId` (their
//! first step is a reconcile, so no change made during the handover is missed).
//!
//! - [`link`]: the follower's side of a session.
//! - [`session`]: the owner's side (the `Session` RPC).

pub mod link;
pub mod session;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::engine::EngineError;
use crate::engine::lazy::LazyEngine;
use crate::methods::{OWNER_METHODS, READ_ONLY_METHODS, rpc_error};
use crate::rpc::router::RawHandler;
use crate::rpc::{ErrorKind, Notifier, Progress, RequestContext, RoleReport, Router, RpcError};
use crate::store::StoreError;
use link::{Link, Lost};

/// How long a call waits for a new owner (its socket) before it is answered `locked`.
const OWNER_WAIT: Duration = Duration::from_secs(30);

/// How long a holder may take to show its socket before it is taken for one that serves
/// none.
const SOCKET_GRACE: Duration = Duration::from_secs(2);

/// How long the start waits for a lock's holder to write its pid.
const HOLDER_NAMING: Duration = Duration::from_secs(2);

/// Where a call runs.
enum Route {
    /// This process holds the store.
    Local,
    /// The owner does, through this link.
    Remote(Arc<Link>),
}

/// This process's place among the processes of its data folder.
pub struct Share {
    engine: Arc<LazyEngine>,
    /// Held while deciding, so that concurrent calls decide once.
    deciding: tokio::sync::Mutex<()>,
    link: Mutex<Option<Arc<Link>>>,
    role: Mutex<Option<(&'static str, u32)>>,
    /// Watches this process's host started through a link: `watchId` → `watch/start`
    /// params (raw), re-armed on the next owner.
    watches: Mutex<BTreeMap<String, Value>>,
    /// The local `watch/start`, for re-arming when this process becomes the owner.
    local_watch_start: Mutex<Option<RawHandler>>,
    /// Told when this process becomes the owner (it updates the registry entry).
    on_owner: Box<dyn Fn() + Send + Sync>,
    /// Woken when a link ends: [`Share::decide`]'s task decides again.
    relink: Arc<tokio::sync::Notify>,
    /// The host's notifications (for `watch/event`s of re-armed watches).
    events: Mutex<Option<Notifier>>,
}

impl Share {
    /// The sharing state of a process serving `engine`; `on_owner` runs when it becomes
    /// the owner.
    pub fn new(engine: Arc<LazyEngine>, on_owner: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        let share = Arc::new(Share {
            engine,
            deciding: tokio::sync::Mutex::new(()),
            link: Mutex::new(None),
            role: Mutex::new(None),
            watches: Mutex::new(BTreeMap::new()),
            local_watch_start: Mutex::new(None),
            on_owner: Box::new(on_owner),
            relink: Arc::new(tokio::sync::Notify::new()),
            events: Mutex::new(None),
        });
        // Whoever holds the store is the owner, whichever call opened it (an engine
        // method, a follower's session, the gRPC service): the role and the registry
        // follow the store, not the path that opened it.
        let weak = Arc::downgrade(&share);
        share.engine.on_open(move || {
            if let Some(share) = weak.upgrade() {
                *share.role.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(("owner", std::process::id()));
                (share.on_owner)();
            }
        });
        share
    }

    /// `(role, ownerPid)` for `health`.
    pub fn report(self: &Arc<Self>) -> RoleReport {
        let me = self.clone();
        RoleReport(Arc::new(move || {
            *me.role.lock().unwrap_or_else(|e| e.into_inner())
        }))
    }

    /// Routes every owner method of `router` through [`Share::route`].
    pub fn wrap(self: &Arc<Self>, router: &mut Router) {
        router.wrap_queued(OWNER_METHODS, |name, local| {
            if name == "watch/start" {
                *self
                    .local_watch_start
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(local.clone());
            }
            let share = self.clone();
            Arc::new(move |params, ctx| {
                let (share, local) = (share.clone(), local.clone());
                Box::pin(async move { share.call(name, params, ctx, local).await })
            })
        });
    }

    /// Decides the role at start — the first process on a folder opens it and owns
    /// it; a later one notes the owner (it links on its first owner call) — then, on a
    /// task of its own, again each time a link to an owner ends.
    pub async fn decide(self: &Arc<Self>) {
        {
            let _deciding = self.deciding.lock().await;
            let unnamed_until = tokio::time::Instant::now() + HOLDER_NAMING;
            loop {
                let lazy = self.engine.clone();
                match tokio::task::spawn_blocking(move || lazy.get().map(|_| ())).await {
                    Ok(Ok(())) => self.became_owner(&Notifier::disconnected()).await,
                    Ok(Err(EngineError::Storage(StoreError::Locked {
                        pid: Some(pid), ..
                    }))) => {
                        *self.role.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(("follower", pid));
                    }
                    // The holder took the lock a moment ago and has not written its pid:
                    // ask again rather than start with no role.
                    Ok(Err(EngineError::Storage(StoreError::Locked { pid: None, .. })))
                        if tokio::time::Instant::now() < unnamed_until =>
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the data folder cannot be opened yet")
                    }
                    Err(e) => tracing::warn!(error = %e, "engine task failed"),
                }
                break;
            }
        }
        let share = self.clone();
        tokio::spawn(async move {
            loop {
                share.relink.notified().await;
                let events = share
                    .events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(Notifier::disconnected);
                if let Err(e) = share.route(&events).await {
                    tracing::warn!(error = %e.message, "no new owner for the data folder");
                }
            }
        });
    }

    async fn call(
        self: Arc<Self>,
        name: &'static str,
        params: Option<Box<RawValue>>,
        ctx: RequestContext,
        local: RawHandler,
    ) -> Result<Box<RawValue>, RpcError> {
        loop {
            match self.route(&ctx.notifier).await? {
                Route::Local => return local(params, ctx).await,
                Route::Remote(link) => match link.call(name, params.as_deref(), &ctx).await {
                    Ok(answer) => {
                        self.note_watch(name, params.as_deref(), &answer);
                        return answer;
                    }
                    Err(Lost) => {
                        self.lost(&link);
                        if READ_ONLY_METHODS.contains(&name) && !ctx.cancel.is_cancelled() {
                            continue;
                        }
                        return Err(RpcError::new(
                            ErrorKind::SidecarExited,
                            format!(
                                "the data folder's owner (pid {}) went away during the call",
                                link.owner
                            ),
                        )
                        .with("reason", "owner_lost")
                        .with("ownerPid", link.owner));
                    }
                },
            }
        }
    }

    /// Keeps the host's watches: started ones with their params, stopped ones dropped.
    fn note_watch(
        &self,
        name: &str,
        params: Option<&RawValue>,
        answer: &Result<Box<RawValue>, RpcError>,
    ) {
        let Ok(result) = answer else { return };
        let result: Value = serde_json::from_str(result.get()).unwrap_or_default();
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        match name {
            "watch/start" => {
                if let (Some(id), Some(p)) = (result["watchId"].as_str(), params) {
                    watches.insert(
                        id.to_owned(),
                        serde_json::from_str(p.get()).unwrap_or_default(),
                    );
                }
            }
            "watch/stop" => {
                if let Some(p) = params
                    && let Ok(p) = serde_json::from_str::<Value>(p.get())
                    && let Some(id) = p["watchId"].as_str()
                {
                    watches.remove(id);
                }
            }
            _ => {}
        }
    }

    fn lost(&self, link: &Arc<Link>) {
        let mut current = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            *current = None;
        }
    }

    fn current(&self) -> Option<Route> {
        if self.engine.opened().is_some() {
            return Some(Route::Local);
        }
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner()).clone();
        link.filter(|l| !l.is_closed()).map(Route::Remote)
    }

    /// Where the next owner call runs: here if this process holds (or can take) the
    /// store, else at the holder's socket (waiting up to [`OWNER_WAIT`] for it).
    ///
    /// Errors: the store fails to open for another reason than the lock; the holder
    /// serves no socket in time (`storage`, reason `locked`, its pid).
    async fn route(self: &Arc<Self>, events: &Notifier) -> Result<Route, RpcError> {
        if let Some(r) = self.current() {
            return Ok(r);
        }
        let _deciding = self.deciding.lock().await;
        if let Some(r) = self.current() {
            return Ok(r);
        }
        let started = tokio::time::Instant::now();
        let deadline = started + OWNER_WAIT;
        loop {
            let lazy = self.engine.clone();
            let opened = tokio::task::spawn_blocking(move || lazy.get().map(|_| ()))
                .await
                .map_err(|e| RpcError::internal(format!("engine task failed: {e}")))?;
            let holder = match opened {
                Ok(()) => {
                    self.became_owner(events).await;
                    return Ok(Route::Local);
                }
                Err(EngineError::Storage(StoreError::Locked { pid, path })) => (pid, path),
                Err(e) => return Err(rpc_error(e)),
            };
            let failure = match holder.0 {
                Some(pid) => match self.link_to(pid, events).await {
                    Ok(link) => return Ok(Route::Remote(link)),
                    Err(e) => e,
                },
                None => "the holder has not written its pid yet".to_owned(),
            };
            // An owner that has had time to start its endpoint and still has no
            // listening socket (a `--no-grpc` server, a CLI ingest) will never have one.
            let socketless = match holder.0 {
                Some(pid) if started.elapsed() >= SOCKET_GRACE => !listening(pid).await,
                _ => false,
            };
            if socketless || tokio::time::Instant::now() >= deadline {
                let (pid, path) = holder;
                return Err(
                    rpc_error(EngineError::Storage(StoreError::Locked { pid, path }))
                        .with("cause", failure),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Links to the owner `pid` and re-arms the host's watches there.
    async fn link_to(self: &Arc<Self>, pid: u32, events: &Notifier) -> Result<Arc<Link>, String> {
        let socket = crate::grpc::endpoint::runtime_dir()
            .map_err(|e| e.to_string())?
            .join(format!("{pid}.sock"));
        let token = crate::registry::live()
            .ok()
            .and_then(|entries| entries.into_iter().find(|e| e.pid == pid))
            .and_then(|e| e.token);
        let link = Link::connect(pid, &socket, token.as_deref(), events.clone()).await?;
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = Some(("follower", pid));
        // When the owner goes, decide again at once (take over or follow the new
        // owner), so that the host's watches are re-armed without waiting for a call.
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(events.clone());
        let (relink, watched) = (self.relink.clone(), link.clone());
        tokio::spawn(async move {
            watched.closed().await;
            relink.notify_one();
        });
        // Re-armed in the background: the reconcile of a large folder takes a while.
        let watches = self
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (id, params) in watches {
            let (link, ctx) = (link.clone(), background(events));
            tokio::spawn(async move {
                let params = with_watch_id(params, &id);
                match link.call("watch/start", params.as_deref(), &ctx).await {
                    Ok(Ok(_)) => {
                        tracing::info!(watch = %id, owner = pid, "watch re-armed on the new owner")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(watch = %id, error = %e.message, "cannot re-arm a watch")
                    }
                    Err(Lost) => {}
                }
            });
        }
        Ok(link)
    }

    /// Now the owner: tell the registry, re-arm the host's watches here.
    async fn became_owner(&self, events: &Notifier) {
        // The role and the registry entry were set when the store opened (`on_open`).
        tracing::info!("this process owns the data folder");
        let watches = std::mem::take(&mut *self.watches.lock().unwrap_or_else(|e| e.into_inner()));
        let start = self
            .local_watch_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(start) = start else { return };
        for (id, params) in watches {
            // Re-armed in the background: the reconcile of a large folder takes a while.
            let (start, ctx) = (start.clone(), background(events));
            tokio::spawn(async move {
                match start(with_watch_id(params, &id), ctx).await {
                    Ok(_) => tracing::info!(watch = %id, "watch re-armed here"),
                    Err(e) => {
                        tracing::warn!(watch = %id, error = %e.message, "cannot re-arm a watch")
                    }
                }
            });
        }
    }
}

/// A context for work the follower does on its own (re-arming watches).
fn background(events: &Notifier) -> RequestContext {
    RequestContext {
        cancel: tokio_util::sync::CancellationToken::new(),
        deadline: None,
        progress: Progress::default(),
        notifier: events.clone(),
        priority: quarry_protocol::Priority::Normal,
    }
}

/// `watch/start` params asking for `id`.
fn with_watch_id(mut params: Value, id: &str) -> Option<Box<RawValue>> {
    if let Some(m) = params.as_object_mut() {
        m.insert("watchId".into(), Value::String(id.to_owned()));
    }
    serde_json::value::to_raw_value(&params).ok()
}

/// Whether something listens on the socket of process `pid`. A file with no listener
/// (left by a killed process whose pid the owner now has: pids restart low in every
/// container while runtime folders persist) does not count.
async fn listening(pid: u32) -> bool {
    let Ok(dir) = crate::grpc::endpoint::runtime_dir() else {
        return false;
    };
    let socket = dir.join(format!("{pid}.sock"));
    // A listener with a full backlog makes `connect` wait: it is there all the same.
    match tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::UnixStream::connect(&socket),
    )
    .await
    {
        Ok(Ok(_)) | Err(_) => true,
        Ok(Err(e)) => !matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ),
    }
}
