//! A tower layer recording every gRPC call in the process's [`Stats`] (shared with the
//! stdio `stats` method and Prometheus): under its full method name
//! (`quarry.v1.Quarry/Search`), with its outcome and its latency from the request to the
//! end of the response stream.
//!
//! The outcome is read from the `grpc-status` of the response headers (a trailers-only
//! answer) or trailers: `OK`, else the `google.rpc.ErrorInfo` reason when the status
//! carries one (the JSON-RPC `data.kind` of the same error), else the code's name. A
//! response dropped before its trailers (the client went away) counts as `cancelled`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http::{self, HeaderMap};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::{Layer, Service};

use crate::rpc::stats::Stats;

/// Records each call in `stats`.
#[derive(Clone)]
pub struct StatsLayer {
    stats: Arc<Stats>,
}

impl StatsLayer {
    /// A layer recording into `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        StatsLayer { stats }
    }
}

impl<S> Layer<S> for StatsLayer {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            stats: self.stats.clone(),
        }
    }
}

/// The service of [`StatsLayer`].
#[derive(Clone)]
pub struct Recorded<S> {
    inner: S,
    stats: Arc<Stats>,
}

impl<S, B, R> Service<http::Request<B>> for Recorded<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<RecordedBody<R>>;
    type Error = S::Error;
    type Future = RecordedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = Call {
            stats: self.stats.clone(),
            method: req.uri().path().trim_start_matches('/').to_owned(),
            started: Instant::now(),
            done: false,
        };
        RecordedFuture {
            inner: self.inner.call(req),
            call: Some(call),
        }
    }
}

/// One call being timed; recorded once, as `cancelled` if dropped unanswered.
struct Call {
    stats: Arc<Stats>,
    method: String,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(mut self, outcome: Result<(), String>) {
        self.done = true;
        self.stats.record(
            &self.method,
            outcome.as_ref().map(|_| ()).map_err(String::as_str),
            self.started.elapsed(),
        );
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.stats
                .record(&self.method, Err("cancelled"), self.started.elapsed());
        }
    }
}

/// The outcome named by the `grpc-status` in `headers`, if there is one.
fn outcome(headers: &HeaderMap) -> Option<Result<(), String>> {
    let status = Status::from_header_map(headers)?;
    if status.code() == Code::Ok {
        return Some(Ok(()));
    }
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .filter(|r| !r.is_empty());
    Some(Err(
        reason.unwrap_or_else(|| code_name(status.code()).to_owned())
    ))
}

/// The snake-case name of a status code (`grpc/doc/statuscodes.md`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Recorded`].
    pub struct RecordedFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, R, E> std::future::Future for RecordedFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<R>, E>>,
{
    type Output = Result<http::Response<RecordedBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                // A trailers-only answer (every error before the first message) is
                // complete now; otherwise the body's trailers will say.
                let call = match (call, outcome(response.headers())) {
                    (Some(call), Some(done)) => {
                        call.finish(done);
                        None
                    }
                    (call, _) => call,
                };
                Ok(response.map(|inner| RecordedBody { inner, call }))
            }
            Err(e) => {
                if let Some(call) = call {
                    call.finish(Err("internal".to_owned()));
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers pass (or it ends, or is
    /// dropped).
    pub struct RecordedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(call) = this.call.take()
                {
                    call.finish(outcome(trailers).unwrap_or(Ok(())));
                }
            }
            Some(Err(_)) => {
                if let Some(call) = this.call.take() {
                    call.finish(Err("internal".to_owned()));
                }
            }
            None => {
                // gRPC always ends with trailers; a body without them was not gRPC.
                if let Some(call) = this.call.take() {
                    call.finish(Ok(()));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
