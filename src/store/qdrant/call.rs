//! Running the client's async calls from the store's synchronous trait: on the store's
//! own runtime, each with a deadline, transient failures retried with backoff, and
//! every failure turned into a typed [`StoreError`].

use std::future::Future;
use std::time::{Duration, Instant};

use qdrant_client::QdrantError;
use tonic::Code;

use crate::store::StoreError;

/// First retry delay; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Largest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a failed call is classified.
#[derive(Debug)]
pub(super) enum Failure {
    /// Worth another attempt: the server is unreachable, restarting, busy or slow.
    Transient(StoreError),
    /// Final.
    Final(StoreError),
}

/// Classifies a client error for the call `what` on collection `collection` (the
/// user's name, without the prefix).
pub(super) fn classify(what: &str, collection: Option<&str>, e: QdrantError) -> Failure {
    let status = match e {
        QdrantError::ResponseError { status } => status,
        QdrantError::ResourceExhaustedError { status, .. } => {
            return Failure::Transient(StoreError::Unavailable(format!(
                "{what}: the Qdrant server is overloaded: {}",
                status.message()
            )));
        }
        QdrantError::InvalidUri(e) => {
            return Failure::Final(StoreError::Backend(format!("invalid --qdrant-url: {e}")));
        }
        other => return Failure::Final(StoreError::Backend(format!("{what}: {other}"))),
    };
    let message = status.message().to_owned();
    match status.code() {
        Code::Unavailable | Code::Aborted => Failure::Transient(StoreError::Unavailable(format!(
            "{what}: the Qdrant server is unavailable: {message}"
        ))),
        // Transport failures before any answer arrive as `Unknown`/`Internal` with the
        // transport's words.
        Code::Unknown | Code::Internal if is_transport(&message) => {
            Failure::Transient(StoreError::Unavailable(format!(
                "{what}: the connection to Qdrant failed: {message}"
            )))
        }
        Code::DeadlineExceeded | Code::Cancelled => Failure::Transient(StoreError::Timeout(
            format!("{what}: the Qdrant server did not answer in time: {message}"),
        )),
        Code::Unauthenticated | Code::PermissionDenied => {
            Failure::Final(StoreError::Unauthorized(format!(
                "{what}: the Qdrant server refused the API key (set --qdrant-api-key or \
                 QUARRY_QDRANT_API_KEY): {message}"
            )))
        }
        Code::NotFound => match collection {
            Some(c) if message.contains("ollection") => {
                Failure::Final(StoreError::NoCollection(c.to_owned()))
            }
            _ => Failure::Final(StoreError::Backend(format!("{what}: {message}"))),
        },
        code => Failure::Final(StoreError::Backend(format!(
            "{what}: Qdrant answered {code:?}: {message}"
        ))),
    }
}

fn is_transport(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "transport",
        "connect",
        "connection",
        "broken pipe",
        "h2 protocol",
        "reset",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// Runs futures made by `make` on `runtime` until one succeeds, a failure is final, or
/// `budget` has passed since the first attempt (then the last transient failure is
/// returned). Every attempt is idempotent: the store only sends writes that can be
/// repeated (upserts by id, deletes by filter, vector updates by id).
pub(super) fn with_retry<T, F, Fut>(
    runtime: &tokio::runtime::Handle,
    budget: Duration,
    mut make: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let started = Instant::now();
    let mut delay = FIRST_BACKOFF;
    loop {
        match block_on(runtime, make()) {
            Ok(v) => return Ok(v),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(e)) => {
                if started.elapsed() + delay > budget {
                    return Err(e);
                }
                tracing::debug!(error = %e, delay_ms = delay.as_millis() as u64, "retrying a Qdrant call");
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Runs `fut` on `runtime` and waits for it from this (non-async) thread.
pub(super) fn block_on<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    fut: impl Future<Output = Result<T, Failure>> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(Failure::Final(StoreError::Backend(
            "the Qdrant call's task ended without an answer".into(),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> QdrantError {
        QdrantError::ResponseError {
            status: tonic::Status::new(code, message),
        }
    }

    #[test]
    fn failures_are_typed_and_transient_ones_retried() {
        let c = Some("docs");
        assert!(matches!(
            classify("upsert", c, status(Code::Unavailable, "tcp connect error")),
            Failure::Transient(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            classify("upsert", c, status(Code::Unknown, "transport error")),
            Failure::Transient(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            classify("query", c, status(Code::DeadlineExceeded, "timeout")),
            Failure::Transient(StoreError::Timeout(_))
        ));
        match classify("count", c, status(Code::Unauthenticated, "Invalid api-key")) {
            Failure::Final(StoreError::Unauthorized(m)) => assert!(m.contains("--qdrant-api-key")),
            f => panic!("{f:?}"),
        }
        assert!(matches!(
            classify(
                "count",
                c,
                status(Code::NotFound, "Collection `quarry_docs` doesn't exist!")
            ),
            Failure::Final(StoreError::NoCollection(n)) if n == "docs"
        ));
        assert!(matches!(
            classify("count", c, status(Code::InvalidArgument, "bad filter")),
            Failure::Final(StoreError::Backend(_))
        ));
    }
}
