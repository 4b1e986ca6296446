//! The method registry: typed handlers, their request context and their schemas.
//!
//! A handler is an async function `(P, RequestContext) -> Result<R, RpcError>` where `P`
//! is its own params type (deserialized from the raw params, `_meta` removed) and `R` its
//! result type. Both derive [`JsonSchema`], so the registry is also the source of the
//! machine-readable contract in `schemas/`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::writer::Outbox;
use quarry_protocol::control::{HealthResult, ProgressNotification};
use quarry_protocol::{Outgoing, RpcError};

use super::control::StatsResult;

/// The future a handler returns once erased.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Box<RawValue>, RpcError>> + Send>>;

pub type Handler = dyn Fn(Option<Box<RawValue>>, RequestContext) -> HandlerFuture + Send + Sync;

/// A queued method's handler once erased: raw params (`_meta` removed) and the request
/// context in, the raw result out.
pub type RawHandler = Arc<Handler>;

/// What a control method may read: the state of the server answering it.
pub trait ServerState: Send + Sync {
    /// The `health` result now.
    fn health(&self) -> HealthResult;
    /// The `stats` result now.
    fn stats(&self) -> StatsResult;
}

/// A control method once erased: answered at once on the reader, never queued.
pub(crate) type ControlHandler =
    dyn Fn(Option<&RawValue>, &dyn ServerState) -> Result<Box<RawValue>, RpcError> + Send + Sync;

/// How a registered method is answered.
#[derive(Clone)]
pub(crate) enum Entry {
    /// Queued, then run in a worker slot.
    Queued(Arc<Handler>),
    /// Answered at once by the server.
    Control(Arc<ControlHandler>),
    /// Documented only: answered by the connection itself (`shutdown`) or a
    /// notification.
    Documented,
}

/// Builds the schema of a params or result type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// What a handler gets besides its params.
///
/// Handlers never touch stdout: progress goes through [`RequestContext::progress`] and
/// the result is their return value.
#[derive(Clone)]
pub struct RequestContext {
    /// Cancelled when the host cancels the request, its deadline passes or the server
    /// stops waiting for it. Async work is also dropped then; blocking work must poll it.
    pub cancel: CancellationToken,
    /// When the request's `_meta.timeoutMs` runs out, measured from the moment its line
    /// was read.
    pub deadline: Option<Instant>,
    /// Progress notifications for this request (a no-op without `_meta.progressToken`).
    pub progress: Progress,
    /// Sends other notifications (e.g. `watch/event`), now or later.
    pub notifier: Notifier,
    /// The request's `_meta.priority`.
    pub priority: quarry_protocol::Priority,
}

/// Sends notifications to the host from anywhere (any thread, after the request).
#[derive(Clone, Debug)]
pub struct Notifier {
    outbox: Option<Outbox>,
}

impl Notifier {
    pub(crate) fn new(outbox: Outbox) -> Self {
        Notifier {
            outbox: Some(outbox),
        }
    }

    /// A notifier that drops everything (for handlers run outside a server).
    pub fn disconnected() -> Self {
        Notifier { outbox: None }
    }

    /// Sends `method` with `params` (serialized; dropped if that fails).
    pub fn send<T: Serialize>(&self, method: &'static str, params: &T) {
        if let (Some(outbox), Ok(params)) = (&self.outbox, serde_json::value::to_raw_value(params))
        {
            outbox.send(Outgoing::Notification {
                method: method.into(),
                params,
            });
        }
    }
}

/// Per-request state shared by the progress sender and the responder, so that no
/// progress notification can be written after the response (PROTOCOL.md §6).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    done: bool,
    last: Option<f64>,
}

impl Gate {
    /// Runs `f` (which writes the response) and closes the gate, atomically with
    /// respect to progress notifications.
    pub(crate) fn close_with(&self, f: impl FnOnce()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.done = true;
        f();
    }
}

/// Sends `notifications/progress` for one request.
///
/// Cloneable and `Send`: blocking workers may hold it. Calls after the response was
/// written, or with a `progress` not greater than the last one sent, are dropped.
#[derive(Clone, Default)]
pub struct Progress {
    inner: Option<Arc<ProgressInner>>,
}

struct ProgressInner {
    token: Box<RawValue>,
    gate: Arc<Gate>,
    outbox: Outbox,
}

impl Progress {
    pub(crate) fn new(token: Box<RawValue>, gate: Arc<Gate>, outbox: Outbox) -> Self {
        Progress {
            inner: Some(Arc::new(ProgressInner {
                token,
                gate,
                outbox,
            })),
        }
    }

    /// Whether the host asked for progress.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends `{ progressToken, progress, total?, message? }`. Returns whether it was sent.
    pub fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let mut state = inner.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.done || state.last.is_some_and(|last| progress <= last) || !progress.is_finite() {
            return false;
        }
        let wire = ProgressNotification {
            progress_token: &inner.token,
            progress,
            total,
            message,
        };
        let Ok(params) = serde_json::value::to_raw_value(&wire) else {
            return false;
        };
        state.last = Some(progress);
        inner.outbox.send(Outgoing::Notification {
            method: "notifications/progress".into(),
            params,
        });
        true
    }
}

/// How the server schedules a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// Waits in the priority queue and runs in a worker slot.
    Queued,
    /// Answered at once by the server itself, never queued (PROTOCOL.md §3).
    Control,
    /// A notification the server receives (for the contract only).
    Notification,
}

/// Contract documentation of one method.
#[derive(Clone)]
pub struct MethodDoc {
    /// Method name.
    pub name: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Scheduling class.
    pub kind: MethodKind,
    /// Params schema builder.
    pub params: SchemaFn,
    /// Result schema builder (`None` for notifications).
    pub result: Option<SchemaFn>,
}

#[derive(Clone)]
struct Method {
    doc: MethodDoc,
    entry: Entry,
}

/// The registry of methods a server answers.
#[derive(Default, Clone)]
pub struct Router {
    methods: BTreeMap<&'static str, Method>,
}

/// The wire form of a handler's result.
fn to_result<R: Serialize>(r: &R) -> Result<Box<RawValue>, RpcError> {
    serde_json::value::to_raw_value(r)
        .map_err(|e| RpcError::internal(format!("result serialization failed: {e}")))
}

/// Deserializes params into `P`, naming the offending field on failure.
///
/// Absent params are read as `{}`. Errors are `-32602` with `data.details.field`.
pub fn parse_params<P: DeserializeOwned>(params: Option<&RawValue>) -> Result<P, RpcError> {
    let text = params.map_or("{}", RawValue::get);
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = if path == "." {
            // serde reports a missing field at its parent: take the name from the message.
            message
                .split('`')
                .nth(1)
                .filter(|_| message.starts_with("missing field"))
                .unwrap_or("params")
                .to_owned()
        } else {
            path
        };
        RpcError::invalid_params(field, message)
    })
}

impl Router {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the handler of every queued method named in `names` by
    /// `wrap(name, handler)`: what a follower uses to carry engine methods to the owner
    /// of its data folder (GRPC.md §6). Params reach the new handler raw, `_meta`
    /// removed.
    pub fn wrap_queued(
        &mut self,
        names: &[&str],
        wrap: impl Fn(&'static str, RawHandler) -> RawHandler,
    ) {
        for (name, method) in self.methods.iter_mut() {
            if let Entry::Queued(handler) = &method.entry
                && names.contains(name)
            {
                method.entry = Entry::Queued(wrap(name, handler.clone()));
            }
        }
    }

    /// The names of the queued methods (those [`Router::wrap_queued`] may wrap).
    pub fn queued_names(&self) -> Vec<&'static str> {
        self.methods
            .iter()
            .filter(|(_, m)| matches!(m.entry, Entry::Queued(_)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Registers a queued method with typed params `P` and result `R`.
    pub fn method<P, R, F, Fut>(
        &mut self,
        name: &'static str,
        summary: &'static str,
        f: F,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + 'static,
        F: Fn(P, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let handler: Arc<Handler> = Arc::new(move |params, ctx| {
            let f = f.clone();
            Box::pin(async move {
                let p: P = parse_params(params.as_deref())?;
                to_result(&f(p, ctx).await?)
            })
        });
        self.insert::<P, R>(name, summary, MethodKind::Queued, Entry::Queued(handler))
    }

    fn insert<P: JsonSchema, R: JsonSchema>(
        &mut self,
        name: &'static str,
        summary: &'static str,
        kind: MethodKind,
        entry: Entry,
    ) -> &mut Self {
        self.methods.insert(
            name,
            Method {
                doc: MethodDoc {
                    name,
                    summary,
                    kind,
                    params: |g| g.subschema_for::<P>(),
                    result: (kind != MethodKind::Notification)
                        .then_some(|g| g.subschema_for::<R>()),
                },
                entry,
            },
        );
        self
    }

    /// Registers a control method with typed params `P` and result `R`: answered at
    /// once on the reader (never queued, also while the queue is full or the server
    /// drains), from `f(params, server state)`. `f` must not block.
    pub fn control<P, R, F>(&mut self, name: &'static str, summary: &'static str, f: F) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + JsonSchema + 'static,
        F: Fn(P, &dyn ServerState) -> Result<R, RpcError> + Send + Sync + 'static,
    {
        let handler: Arc<ControlHandler> =
            Arc::new(move |params, state| to_result(&f(parse_params(params)?, state)?));
        self.insert::<P, R>(name, summary, MethodKind::Control, Entry::Control(handler))
    }

    /// Documents a method or notification the server answers itself (no handler here).
    pub fn document<P: JsonSchema, R: JsonSchema>(
        &mut self,
        name: &'static str,
        summary: &'static str,
        kind: MethodKind,
    ) -> &mut Self {
        self.insert::<P, R>(name, summary, kind, Entry::Documented)
    }

    /// A registered method: its name (static, for statistics) and how it is answered.
    pub(crate) fn entry(&self, name: &str) -> Option<(&'static str, Entry)> {
        let m = self.methods.get(name)?;
        Some((m.doc.name, m.entry.clone()))
    }

    /// The handler of a queued method.
    pub(crate) fn handler(&self, name: &str) -> Option<(&'static str, Arc<Handler>)> {
        match self.entry(name)? {
            (name, Entry::Queued(h)) => Some((name, h)),
            _ => None,
        }
    }

    /// Names of every method a host can call (for `sidecar/ready`), sorted.
    pub fn method_names(&self) -> Vec<String> {
        self.methods
            .values()
            .filter(|m| m.doc.kind != MethodKind::Notification)
            .map(|m| m.doc.name.to_owned())
            .collect()
    }

    /// Contract documentation of every registered method, sorted by name.
    pub fn docs(&self) -> impl Iterator<Item = &MethodDoc> {
        self.methods.values().map(|m| &m.doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct P {
        ms: u64,
        inner: Option<Inner>,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        depth: u32,
    }

    fn field_of(json: &str) -> String {
        let raw = RawValue::from_string(json.into()).unwrap();
        let err = parse_params::<P>(Some(&raw)).err().unwrap();
        err.data["details"]["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn invalid_params_name_the_field() {
        assert_eq!(field_of(r#"{}"#), "ms");
        assert_eq!(field_of(r#"{"ms":"x"}"#), "ms");
        assert_eq!(field_of(r#"{"ms":1,"inner":{"depth":-1}}"#), "inner.depth");
    }
}
