//! The tower middleware of every gRPC call (GRPC.md §3), outermost first:
//!
//! 1. `x-request-id`: taken from the request or generated (a UUID v4) —
//!    `tower_http::request_id`;
//! 2. a tracing span per call with the method, the request id, the status and the
//!    duration — `tower_http::trace` (the id is on every log line of the call);
//! 3. the request id echoed in the response headers;
//! 4. a panic in a handler answered `INTERNAL` (with `ErrorInfo` reason `internal`)
//!    while the server lives on — `tower_http::catch_panic`.
//!
//! Bearer-token authentication is an interceptor on `quarry.v1.Quarry` only ([`auth`]):
//! health and reflection stay open.

use std::any::Any;
use std::sync::Arc;

use quarry_protocol::RpcError;
use subtle::ConstantTimeEq;
use tonic::codegen::http;
use tonic::{Request, Status};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::status::status;

/// The response to a panicking handler: `INTERNAL`, the panic message, `ErrorInfo`.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> http::Response<String> {
    let what = err
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %what, "a gRPC handler panicked");
    status(&RpcError::internal(format!("handler panicked: {what}"))).into_http()
}

/// The layers, in order: set the request id, trace, echo the id, catch panics.
#[allow(clippy::type_complexity)]
pub fn layers() -> (
    SetRequestIdLayer<MakeRequestUuid>,
    TraceLayer<
        tower_http::classify::SharedClassifier<tower_http::classify::GrpcErrorsAsFailures>,
        fn(&http::Request<tonic::body::Body>) -> tracing::Span,
    >,
    PropagateRequestIdLayer,
    CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> http::Response<String>>,
) {
    fn span(req: &http::Request<tonic::body::Body>) -> tracing::Span {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!("grpc", method = %req.uri().path(), request_id = %id)
    }
    (
        SetRequestIdLayer::x_request_id(MakeRequestUuid),
        TraceLayer::new_for_grpc().make_span_with(span as fn(&_) -> _),
        PropagateRequestIdLayer::x_request_id(),
        CatchPanicLayer::custom(panic_response as fn(_) -> _),
    )
}

/// An interceptor requiring `authorization: Bearer <token>` when `token` is set,
/// compared in constant time; `UNAUTHENTICATED` otherwise.
pub fn auth(
    token: Option<Arc<str>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(token) = &token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "a valid `authorization: Bearer <token>` is required",
            ))
        }
    }
}
