//! One JSON-RPC connection over a byte stream, whoever answers its requests: the reader
//! loop (framing, decoding, batches, signals, end of input), the in-flight table (the
//! duplicate-id rule, cancellation), responders (exactly one response per id; a batch's
//! responses as one array) and the hand-off of `shutdown`.
//!
//! `quarry serve` ([`super::server`]) and `quarry supervise` (`crate::supervise`) are
//! two [`Handler`]s of this one core: they differ only in what they do with a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::StreamExt;
use quarry_protocol::{
    ErrorKind, Frame, Id, IdKey, Line, LineCodec, Message, Outgoing, Request, Response, RpcError,
    cancel_target, decode_line,
};
use serde_json::value::RawValue;
use tokio::io::AsyncRead;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::router::Gate;
use super::stats::Stats;
use super::writer::Outbox;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a response goes: straight to the writer, or into its batch's array.
#[derive(Clone)]
pub(crate) enum Sink {
    Direct(Outbox),
    Batch(Arc<Batch>),
}

impl Sink {
    /// Sink for the messages of one decoded line: a batch collector when the line is a
    /// batch owing responses, the writer otherwise (JSON-RPC 2.0 §6: a batch of
    /// notifications gets no answer at all).
    fn for_line(outbox: &Outbox, msgs: &[Message]) -> Sink {
        let owed = msgs
            .iter()
            .filter(|m| match m {
                Message::Request(r) => r.id.is_some(),
                Message::Invalid { .. } => true,
                Message::Response => false,
            })
            .count();
        if owed == 0 {
            Sink::Direct(outbox.clone())
        } else {
            Sink::Batch(Arc::new(Batch {
                outbox: outbox.clone(),
                state: Mutex::new((Vec::with_capacity(owed), owed)),
            }))
        }
    }

    /// Delivers one response.
    fn deliver(&self, response: Response) {
        match self {
            Sink::Direct(outbox) => outbox.send(Outgoing::Response(response)),
            Sink::Batch(batch) => batch.push(response),
        }
    }
}

/// Collects the responses of one batch and writes them as one array.
pub(crate) struct Batch {
    outbox: Outbox,
    state: Mutex<(Vec<Response>, usize)>,
}

impl Batch {
    fn push(&self, r: Response) {
        let mut g = lock(&self.state);
        g.0.push(r);
        g.1 -= 1;
        if g.1 == 0 {
            self.outbox.send(Outgoing::Batch(std::mem::take(&mut g.0)));
        }
    }
}

/// Owes exactly one response: every way out of a request answers through it, and one
/// dropped unanswered answers `-32603` itself (PROTOCOL.md §2).
pub(crate) struct Responder {
    id: Option<Box<RawValue>>,
    sink: Sink,
    /// Closed with the response, so that no progress follows it (§6).
    gate: Option<Arc<Gate>>,
    /// Statistics to record the answer in: (table, method, when the line was read).
    record: Option<(Arc<Stats>, &'static str, Instant)>,
    answered: bool,
}

impl Responder {
    /// A responder for `id` (`None` answers with `id: null`).
    pub(crate) fn new(id: Option<Box<RawValue>>, sink: Sink) -> Self {
        Responder {
            id,
            sink,
            gate: None,
            record: None,
            answered: false,
        }
    }

    /// Records the answer under `method` in `stats`, with the latency since `received`.
    pub(crate) fn recorded(
        mut self,
        stats: Arc<Stats>,
        method: &'static str,
        received: Instant,
    ) -> Self {
        self.record = Some((stats, method, received));
        self
    }

    /// Closes `gate` with the response.
    pub(crate) fn gate(&mut self, gate: Arc<Gate>) {
        self.gate = Some(gate);
    }

    /// Answers.
    pub(crate) fn send(mut self, body: Result<Box<RawValue>, RpcError>) {
        self.answer(body);
    }

    fn answer(&mut self, body: Result<Box<RawValue>, RpcError>) {
        if self.answered {
            return;
        }
        self.answered = true;
        if let Some((stats, method, received)) = &self.record {
            stats.record(
                method,
                body.as_ref().map(|_| ()).map_err(|e| e.kind.as_str()),
                received.elapsed(),
            );
        }
        let response = Response {
            id: self.id.take(),
            body,
        };
        match &self.gate {
            Some(gate) => gate.close_with(|| self.sink.deliver(response)),
            None => self.sink.deliver(response),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(Err(RpcError::internal(
                "the request ended without a response (server bug)",
            )));
        }
    }
}

/// The wire form of results that carry nothing.
pub(crate) fn empty_result() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// The requests in flight, by id: an id may not be reused while its request is in
/// flight (PROTOCOL.md §2), and cancellation finds requests here (§5).
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashMap<IdKey, CancellationToken>>);

impl InFlight {
    /// Registers `key` with a fresh cancellation token; `None` when a request with
    /// that id is still in flight. The entry lives as long as the returned guard.
    fn register(self: &Arc<Self>, key: IdKey) -> Option<InFlightGuard> {
        let mut map = lock(&self.0);
        if map.contains_key(&key) {
            return None;
        }
        let cancel = CancellationToken::new();
        map.insert(key.clone(), cancel.clone());
        Some(InFlightGuard {
            table: self.clone(),
            key,
            cancel,
        })
    }

    /// Cancels the request with `key`, if it is in flight.
    fn cancel(&self, key: &IdKey) {
        if let Some(token) = lock(&self.0).get(key) {
            token.cancel();
        }
    }
}

/// A request's place in the in-flight table, released when dropped.
pub(crate) struct InFlightGuard {
    table: Arc<InFlight>,
    key: IdKey,
    /// Cancelled by `notifications/cancelled` / `$/cancelRequest` naming the request.
    pub(crate) cancel: CancellationToken,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        lock(&self.table.0).remove(&self.key);
    }
}

/// A request handed to a [`Handler`]: its id is registered in flight (keep `in_flight`
/// alive while it runs) and `responder` owes its one response.
pub(crate) struct Call {
    /// The method.
    pub(crate) method: String,
    /// Params, `_meta` included.
    pub(crate) params: Option<Box<RawValue>>,
    /// When its line was read.
    pub(crate) received: Instant,
    /// Answers it.
    pub(crate) responder: Responder,
    /// Its place in the in-flight table, with its cancellation token.
    pub(crate) in_flight: InFlightGuard,
}

/// What a connection's owner decides; the connection does the rest.
pub(crate) trait Handler: Send + Sync + 'static {
    /// A responder for a message of `method` (`None`: it never named a valid one), so
    /// that the owner can record statistics.
    fn responder(
        &self,
        id: Option<Box<RawValue>>,
        sink: Sink,
        method: Option<&str>,
        received: Instant,
    ) -> Responder;

    /// Counts a line or value that never reached a method (`error.kind` says why).
    fn rejected(&self, _error: &RpcError) {}

    /// Counts a notification (every one, cancellations included).
    fn notified(&self) {}

    /// A request whose id was not in flight.
    fn request(self: &Arc<Self>, call: Call);

    /// A notification other than cancellation and `shutdown`.
    fn notification(
        self: &Arc<Self>,
        method: String,
        params: Option<Box<RawValue>>,
        received: Instant,
    );

    /// Stop taking work and drain (PROTOCOL.md §7): `shutdown` (with its responder,
    /// to answer `{}` once drained), end of input, a signal or a broken output. Called
    /// once per cause; the owner makes it idempotent.
    fn shutdown(self: &Arc<Self>, reply: Option<Responder>);
}

/// The core of one connection: decodes what it reads and hands it to its handler.
pub(crate) struct Connection<H: Handler> {
    handler: Arc<H>,
    outbox: Outbox,
    in_flight: Arc<InFlight>,
    max_message_bytes: usize,
    term: Signal,
    int: Signal,
}

impl<H: Handler> Connection<H> {
    /// A connection writing to `outbox`; installs the SIGTERM and SIGINT handlers now,
    /// so that a signal arriving as soon as the peer knows us is not lost.
    ///
    /// Errors: the signal handlers cannot be installed.
    pub(crate) fn new(
        handler: Arc<H>,
        outbox: Outbox,
        max_message_bytes: usize,
    ) -> std::io::Result<Self> {
        Ok(Connection {
            handler,
            outbox,
            in_flight: Arc::new(InFlight::default()),
            max_message_bytes,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Reads `input` until `finished` is cancelled. End of input, SIGTERM, SIGINT and
    /// `broken` (the output failed) start the handler's drain; input is still read
    /// meanwhile (until it ends), so every request gets its answer — `-32003` once
    /// draining — before the owner finishes.
    pub(crate) async fn run<R: AsyncRead + Unpin>(
        mut self,
        input: R,
        broken: CancellationToken,
        finished: CancellationToken,
    ) {
        let mut frames =
            FramedRead::with_capacity(input, LineCodec::new(self.max_message_bytes), 64 * 1024);
        let mut eof = false;
        let mut output_broken = false;
        loop {
            tokio::select! {
                biased;
                _ = finished.cancelled() => break,
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM");
                    self.handler.shutdown(None);
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT");
                    self.handler.shutdown(None);
                }
                _ = broken.cancelled(), if !output_broken => {
                    output_broken = true;
                    self.handler.shutdown(None);
                }
                frame = frames.next(), if !eof => match frame {
                    Some(Ok(frame)) => self.frame(frame, Instant::now()),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read input; draining");
                        eof = true;
                        self.handler.shutdown(None);
                    }
                    None => {
                        tracing::info!("end of input; draining");
                        eof = true;
                        self.handler.shutdown(None);
                    }
                },
            }
        }
    }

    fn direct(&self) -> Sink {
        Sink::Direct(self.outbox.clone())
    }

    /// Answers a line or value that never reached a method.
    fn reject(&self, id: Option<Box<RawValue>>, sink: Sink, error: RpcError, received: Instant) {
        self.handler.rejected(&error);
        self.handler
            .responder(id, sink, None, received)
            .send(Err(error));
    }

    fn frame(&self, frame: Frame, received: Instant) {
        match frame {
            Frame::TooLarge { len } => self.reject(
                None,
                self.direct(),
                RpcError::message_too_large(len, self.max_message_bytes),
                received,
            ),
            Frame::Line(bytes) => match decode_line(&bytes) {
                Line::Error(err) => self.reject(None, self.direct(), err, received),
                Line::Single(msg) => self.message(msg, received, self.direct()),
                Line::Batch(msgs) => {
                    let sink = Sink::for_line(&self.outbox, &msgs);
                    for msg in msgs {
                        self.message(msg, received, sink.clone());
                    }
                }
            },
        }
    }

    fn message(&self, msg: Message, received: Instant, sink: Sink) {
        match msg {
            Message::Response => {
                tracing::debug!("ignoring a response: this side sends no requests");
            }
            Message::Invalid { id, error } => self.reject(id, sink, error, received),
            Message::Request(Request {
                id: None,
                method,
                params,
            }) => {
                self.handler.notified();
                match method.as_str() {
                    "notifications/cancelled" | "$/cancelRequest" => {
                        match cancel_target(params.as_deref()) {
                            Some(key) => self.in_flight.cancel(&key),
                            None => {
                                tracing::debug!(method, "cancellation without a valid request id")
                            }
                        }
                    }
                    "shutdown" => self.handler.shutdown(None),
                    _ => self.handler.notification(method, params, received),
                }
            }
            Message::Request(Request {
                id: Some(Id { raw, key }),
                method,
                params,
            }) => {
                let responder = self
                    .handler
                    .responder(Some(raw), sink, Some(&method), received);
                let Some(in_flight) = self.in_flight.register(key) else {
                    return responder.send(Err(RpcError::new(
                        ErrorKind::DuplicateId,
                        "a request with this id is still in flight",
                    )));
                };
                if method == "shutdown" {
                    drop(in_flight);
                    return self.handler.shutdown(Some(responder));
                }
                self.handler.request(Call {
                    method,
                    params,
                    received,
                    responder,
                    in_flight,
                });
            }
        }
    }
}

/// `shutdown` requests waiting for the drain (PROTOCOL.md §7): answered `{}` once it is
/// complete; one that arrives after that is answered at once.
#[derive(Default)]
pub(crate) struct ShutdownReplies(Mutex<Option<Vec<Responder>>>);

impl ShutdownReplies {
    /// Waiting, nothing answered yet.
    pub(crate) fn new() -> Self {
        ShutdownReplies(Mutex::new(Some(Vec::new())))
    }

    /// Keeps `r` until [`ShutdownReplies::answer_all`] (answers it now if that ran).
    pub(crate) fn push(&self, r: Responder) {
        let mut pending = lock(&self.0);
        match pending.as_mut() {
            Some(list) => list.push(r),
            None => r.send(Ok(empty_result())),
        }
    }

    /// Answers every kept `shutdown` request.
    pub(crate) fn answer_all(&self) {
        let waiting = lock(&self.0).take().unwrap_or_default();
        for r in waiting {
            r.send(Ok(empty_result()));
        }
    }
}
