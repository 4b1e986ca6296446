//! Messages on the wire (JSON-RPC 2.0 §4–6; PROTOCOL.md §1–2): decoding of what a
//! server reads, encoding of what it writes. Params stay [`RawValue`] until the
//! handler deserializes its own type.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::value::RawValue;

use crate::error::{ErrorKind, RpcError};
use crate::id::Id;

/// A valid request or notification.
#[derive(Debug)]
pub struct Request {
    /// `None` for a notification.
    pub id: Option<Id>,
    /// The method name.
    pub method: String,
    /// Params, if any: always an object or an array.
    pub params: Option<Box<RawValue>>,
}

/// What one JSON value on the wire turned out to be.
#[derive(Debug)]
pub enum Message {
    /// A valid request or notification.
    Request(Request),
    /// A response from the host (we send no requests, so it is ignored).
    Response,
    /// Not a valid request: answer with this error, echoing `id` when it was readable.
    Invalid {
        /// The id to echo, `None` for `null`.
        id: Option<Box<RawValue>>,
        /// The error to answer with.
        error: RpcError,
    },
}

/// A decoded line.
#[derive(Debug)]
pub enum Line {
    /// A single message.
    Single(Message),
    /// A non-empty batch.
    Batch(Vec<Message>),
    /// A line that must be answered with one error and `id: null`.
    Error(RpcError),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "some_raw")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    error: Option<&'a RawValue>,
}

/// `Option<&RawValue>` that maps a present `null` to `Some("null")`, not `None`.
fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn invalid(id: Option<Box<RawValue>>, message: &str) -> Message {
    Message::Invalid {
        id,
        error: RpcError::new(ErrorKind::InvalidRequest, message),
    }
}

fn parse_error(message: String) -> RpcError {
    RpcError::new(ErrorKind::ParseError, message)
}

/// Decodes one line (PROTOCOL.md §1, JSON-RPC 2.0 §4–6).
pub fn decode_line(line: &[u8]) -> Line {
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Error(parse_error("message is not valid UTF-8".into()));
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) if items.is_empty() => Line::Error(RpcError::new(
                ErrorKind::InvalidRequest,
                "empty batch: a batch must hold at least one message",
            )),
            Ok(items) => Line::Batch(items.into_iter().map(decode_value).collect()),
            Err(e) => Line::Error(parse_error(format!("invalid JSON: {e}"))),
        }
    } else if trimmed.starts_with('{') {
        match serde_json::from_str::<Envelope<'_>>(text) {
            Ok(env) => Line::Single(decode_envelope(env)),
            Err(e) if e.is_data() => Line::Single(invalid(None, &format!("invalid request: {e}"))),
            Err(e) => Line::Error(parse_error(format!("invalid JSON: {e}"))),
        }
    } else {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Line::Single(invalid(None, "a message must be a JSON object or array")),
            Err(e) => Line::Error(parse_error(format!("invalid JSON: {e}"))),
        }
    }
}

/// Decodes one element of a batch.
fn decode_value(raw: &RawValue) -> Message {
    if !raw.get().starts_with('{') {
        return invalid(None, "a batch element must be a JSON object");
    }
    match serde_json::from_str::<Envelope<'_>>(raw.get()) {
        Ok(env) => decode_envelope(env),
        Err(e) => invalid(None, &format!("invalid request: {e}")),
    }
}

fn decode_envelope(env: Envelope<'_>) -> Message {
    let id = match env.id {
        None => None,
        Some(raw) => match Id::classify(raw) {
            Ok(id) => Some(id),
            Err(echo) => return invalid(echo, "id must be a string or an integer"),
        },
    };
    let echo = || id.as_ref().map(|i| i.raw.clone());
    let Some(method) = env.method else {
        if id.is_some() && (env.result.is_some() || env.error.is_some()) {
            return Message::Response;
        }
        return invalid(echo(), "missing \"method\"");
    };
    match env.jsonrpc {
        Some(v) if v.get() == "\"2.0\"" => {}
        Some(v) if serde_json::from_str::<Cow<'_, str>>(v.get()).is_ok_and(|s| s == "2.0") => {}
        Some(_) => return invalid(echo(), "\"jsonrpc\" must be exactly \"2.0\""),
        None => return invalid(echo(), "missing \"jsonrpc\": \"2.0\""),
    }
    let Ok(method) = serde_json::from_str::<String>(method.get()) else {
        return invalid(echo(), "\"method\" must be a string");
    };
    let params = match env.params {
        None => None,
        Some(p) if p.get().starts_with(['{', '[']) => Some(p.to_owned()),
        Some(_) => return invalid(echo(), "\"params\" must be an object or an array"),
    };
    Message::Request(Request { id, method, params })
}

/// One response: `{"jsonrpc":"2.0","id":ID,"result":R}` or `...,"error":E}`.
#[derive(Debug)]
pub struct Response {
    /// The id to echo; `None` writes `null`.
    pub id: Option<Box<RawValue>>,
    /// The result or the error.
    pub body: Result<Box<RawValue>, RpcError>,
}

/// A message for the writer.
#[derive(Debug)]
pub enum Outgoing {
    /// One response.
    Response(Response),
    /// The responses to one batch, written as one array.
    Batch(Vec<Response>),
    /// A notification `{"jsonrpc":"2.0","method":M,"params":P}`.
    Notification {
        /// Method name.
        method: Cow<'static, str>,
        /// Params object.
        params: Box<RawValue>,
    },
}

impl Response {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        match &self.id {
            Some(id) => out.extend_from_slice(id.get().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        match &self.body {
            Ok(result) => {
                out.extend_from_slice(b",\"result\":");
                out.extend_from_slice(result.get().as_bytes());
            }
            Err(e) => {
                out.extend_from_slice(b",\"error\":");
                // Serializing a map of JSON values into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &e.to_object());
            }
        }
        out.push(b'}');
    }
}

impl Outgoing {
    /// Appends this message and its `\n` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Outgoing::Response(r) => r.encode(out),
            Outgoing::Batch(rs) => {
                out.push(b'[');
                for (i, r) in rs.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    r.encode(out);
                }
                out.push(b']');
            }
            Outgoing::Notification { method, params } => {
                out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":");
                // Writing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, method.as_ref());
                out.extend_from_slice(b",\"params\":");
                out.extend_from_slice(params.get().as_bytes());
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(line: &str) -> Message {
        match decode_line(line.as_bytes()) {
            Line::Single(m) => m,
            other => panic!("not single: {other:?}"),
        }
    }

    #[test]
    fn ids_of_every_kind() {
        for (id, ok) in [
            ("1", true),
            ("-7", true),
            ("18446744073709551616123", true),
            ("\"abc\"", true),
            ("1.5", false),
            ("1e3", false),
            ("null", false),
            ("true", false),
            ("{}", false),
            ("[]", false),
        ] {
            let m = single(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
            match (m, ok) {
                (Message::Request(r), true) => assert_eq!(r.id.unwrap().raw.get(), id),
                (Message::Invalid { .. }, false) => {}
                (m, _) => panic!("{id}: {m:?}"),
            }
        }
    }
}
