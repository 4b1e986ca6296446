//! The client role (a supervisor talking to its child, any host): request and
//! notification lines out, responses and notifications in. Ids are the client's own
//! integers.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Appends `{"jsonrpc":"2.0","id":ID,"method":M[,"params":P]}` and its `\n` to `out`.
pub fn encode_request(id: u64, method: &str, params: Option<&RawValue>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    encode_rest(method, params, out);
}

/// Appends `{"jsonrpc":"2.0","method":M[,"params":P]}` and its `\n` to `out`.
pub fn encode_notification(method: &str, params: Option<&RawValue>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\"");
    encode_rest(method, params, out);
}

fn encode_rest(method: &str, params: Option<&RawValue>, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"method\":");
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, method);
    if let Some(p) = params {
        out.extend_from_slice(b",\"params\":");
        out.extend_from_slice(p.get().as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

/// A JSON-RPC error object as a client receives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorResponse {
    /// JSON-RPC code.
    pub code: i64,
    /// For people.
    pub message: String,
    /// `data` (carries `kind`, PROTOCOL.md §8).
    #[serde(default)]
    pub data: Option<Value>,
}

impl ErrorResponse {
    /// `data.kind`, when present.
    pub fn kind(&self) -> Option<&str> {
        self.data.as_ref()?.get("kind")?.as_str()
    }
}

/// One message a client reads.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A response; `id` is `None` when it is not one of this client's integer ids.
    Response {
        /// The id answered.
        id: Option<u64>,
        /// The result, or the error.
        body: Result<&'a RawValue, ErrorResponse>,
    },
    /// A notification (`notifications/progress`, `sidecar/ready`, …).
    Notification {
        /// Method.
        method: String,
        /// Params, if any.
        params: Option<&'a RawValue>,
    },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorResponse>,
}

/// Why a line a client read is not a message.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    /// Not a JSON object of the expected shape.
    #[error("not a JSON-RPC message: {0}")]
    Json(#[from] serde_json::Error),
    /// A response without `result` or `error`.
    #[error("a response without result or error")]
    Empty,
}

/// Decodes one line from a server (responses to batches are not expected: the client
/// role sends none).
pub fn decode_incoming(line: &[u8]) -> Result<Incoming<'_>, IncomingError> {
    let env: Envelope<'_> = serde_json::from_slice(line)?;
    if let Some(method) = env.method {
        return Ok(Incoming::Notification {
            method,
            params: env.params,
        });
    }
    let id = env.id.as_ref().and_then(Value::as_u64);
    let body = match (env.result, env.error) {
        (_, Some(e)) => Err(e),
        (Some(r), None) => Ok(r),
        (None, None) => return Err(IncomingError::Empty),
    };
    Ok(Incoming::Response { id, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut out = Vec::new();
        let p = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        encode_request(7, "search/query", Some(&p), &mut out);
        encode_notification("notifications/cancelled", None, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"search/query\",\"params\":{\"a\":1}}\n\
             {\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}\n"
        );
        match decode_incoming(br#"{"jsonrpc":"2.0","id":7,"result":{"x":1}}"#).unwrap() {
            Incoming::Response { id, body } => {
                assert_eq!(id, Some(7));
                assert_eq!(body.unwrap().get(), r#"{"x":1}"#);
            }
            other => panic!("{other:?}"),
        }
        match decode_incoming(
            br#"{"jsonrpc":"2.0","id":"h","error":{"code":-32001,"message":"m","data":{"kind":"timeout"}}}"#,
        )
        .unwrap()
        {
            Incoming::Response { id, body } => {
                assert_eq!(id, None);
                assert_eq!(body.unwrap_err().kind(), Some("timeout"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_incoming(br#"{"jsonrpc":"2.0","method":"sidecar/ready","params":{}}"#),
            Ok(Incoming::Notification { .. })
        ));
        assert!(decode_incoming(b"not json").is_err());
        assert!(matches!(
            decode_incoming(br#"{"jsonrpc":"2.0","id":1}"#),
            Err(IncomingError::Empty)
        ));
    }
}
