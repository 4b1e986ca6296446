//! JSON-RPC error objects and the one table mapping each failure to its code and
//! `data.kind` (PROTOCOL.md §8).

use serde::Serialize;
use serde_json::{Map, Value, json};

/// Every failure the protocol can report, one variant per `data.kind`.
///
/// [`ErrorKind::code`] and [`ErrorKind::as_str`] are the only place where kinds are
/// mapped to JSON-RPC codes (PROTOCOL.md §8, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// -32700: the line is not JSON or not UTF-8.
    ParseError,
    /// -32600: the value is not a valid JSON-RPC request object.
    InvalidRequest,
    /// -32600: the line exceeded `--max-message-bytes`.
    MessageTooLarge,
    /// -32600: a request reused an id that is still in flight.
    DuplicateId,
    /// -32601: no such method.
    MethodNotFound,
    /// -32602: params fail the method's schema.
    InvalidParams,
    /// -32603: a bug or a panic inside a handler.
    Internal,
    /// -32800: cancelled by the host.
    Cancelled,
    /// -32001: the request's deadline passed.
    Timeout,
    /// -32002: the queue was full.
    Overloaded,
    /// -32003: the server is shutting down.
    ShuttingDown,
    /// -32004: the sidecar died while the request was in flight (supervisor, §10).
    SidecarExited,
    /// -32005: the supervisor gave up restarting the sidecar (§10).
    SidecarUnavailable,
    /// -32010: no such document, collection, watch or path.
    NotFound,
    /// -32011: a path outside the allowed roots, unreadable, or of the wrong type.
    InvalidPath,
    /// -32012: a file that cannot be parsed as text.
    UnsupportedContent,
    /// -32013: the vector store failed.
    Storage,
}

impl ErrorKind {
    /// The JSON-RPC error code (PROTOCOL.md §8).
    pub const fn code(self) -> i64 {
        match self {
            ErrorKind::ParseError => -32700,
            ErrorKind::InvalidRequest | ErrorKind::MessageTooLarge | ErrorKind::DuplicateId => {
                -32600
            }
            ErrorKind::MethodNotFound => -32601,
            ErrorKind::InvalidParams => -32602,
            ErrorKind::Internal => -32603,
            ErrorKind::Cancelled => -32800,
            ErrorKind::Timeout => -32001,
            ErrorKind::Overloaded => -32002,
            ErrorKind::ShuttingDown => -32003,
            ErrorKind::SidecarExited => -32004,
            ErrorKind::SidecarUnavailable => -32005,
            ErrorKind::NotFound => -32010,
            ErrorKind::InvalidPath => -32011,
            ErrorKind::UnsupportedContent => -32012,
            ErrorKind::Storage => -32013,
        }
    }

    /// The `data.kind` string (PROTOCOL.md §8).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ParseError => "parse_error",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::MessageTooLarge => "message_too_large",
            ErrorKind::DuplicateId => "duplicate_id",
            ErrorKind::MethodNotFound => "method_not_found",
            ErrorKind::InvalidParams => "invalid_params",
            ErrorKind::Internal => "internal",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::SidecarExited => "sidecar_exited",
            ErrorKind::SidecarUnavailable => "sidecar_unavailable",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidPath => "invalid_path",
            ErrorKind::UnsupportedContent => "unsupported_content",
            ErrorKind::Storage => "storage",
        }
    }

    /// Every kind, for documentation and schema generation.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::ParseError,
        ErrorKind::InvalidRequest,
        ErrorKind::MessageTooLarge,
        ErrorKind::DuplicateId,
        ErrorKind::MethodNotFound,
        ErrorKind::InvalidParams,
        ErrorKind::Internal,
        ErrorKind::Cancelled,
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::ShuttingDown,
        ErrorKind::SidecarExited,
        ErrorKind::SidecarUnavailable,
        ErrorKind::NotFound,
        ErrorKind::InvalidPath,
        ErrorKind::UnsupportedContent,
        ErrorKind::Storage,
    ];
}

/// A JSON-RPC error object: `{ code, message, data: { kind, ... } }`.
///
/// `data` always carries `kind`; extra fields (`limit`, `timeoutMs`, `stage`, `details`,
/// ...) are added with [`RpcError::with`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({})", kind.as_str())]
pub struct RpcError {
    /// What went wrong, for programs.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// Extra `data` fields besides `kind`.
    pub data: Map<String, Value>,
}

impl RpcError {
    /// An error of `kind` with a human-readable `message` and no extra data.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RpcError {
            kind,
            message: message.into(),
            data: Map::new(),
        }
    }

    /// Adds the field `key` to `data`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_owned(), value.into());
        self
    }

    /// -32602 with `data.details = { field, message }` naming the offending field.
    pub fn invalid_params(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let field = field.into();
        RpcError::new(
            ErrorKind::InvalidParams,
            format!("invalid params: {field}: {message}"),
        )
        .with("details", json!({ "field": field, "message": message }))
    }

    /// The kind whose `data.kind` string is `kind`.
    pub fn kind_named(kind: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// -32600 `message_too_large` for a line of `size` bytes over `limit`, with
    /// `data.limit` and `data.size` (PROTOCOL.md §1).
    pub fn message_too_large(size: usize, limit: usize) -> Self {
        RpcError::new(
            ErrorKind::MessageTooLarge,
            format!("message of {size} bytes exceeds the limit of {limit} bytes"),
        )
        .with("limit", limit)
        .with("size", size)
    }

    /// -32603 for bugs.
    pub fn internal(message: impl Into<String>) -> Self {
        RpcError::new(ErrorKind::Internal, message)
    }

    /// -32601 for `method`.
    pub fn method_not_found(method: &str) -> Self {
        RpcError::new(
            ErrorKind::MethodNotFound,
            format!("method not found: {method}"),
        )
        .with("method", method)
    }

    /// The wire form of this error.
    pub fn to_object(&self) -> ErrorObject<'_> {
        ErrorObject {
            code: self.kind.code(),
            message: &self.message,
            data: ErrorData {
                kind: self.kind.as_str(),
                rest: &self.data,
            },
        }
    }
}

/// Serialized form of [`RpcError`].
#[derive(Serialize)]
pub struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
    data: ErrorData<'a>,
}

#[derive(Serialize)]
struct ErrorData<'a> {
    kind: &'static str,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_serializes_with_its_code() {
        for kind in ErrorKind::ALL {
            let err = RpcError::new(kind, "m").with("x", 1);
            let v = serde_json::to_value(err.to_object()).unwrap();
            assert_eq!(v["code"], kind.code());
            assert_eq!(v["data"]["kind"], kind.as_str());
            assert_eq!(v["data"]["x"], 1);
        }
    }
}
