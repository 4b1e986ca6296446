//! Decoding of incoming JSON-RPC 2.0 messages and encoding of outgoing ones.
//!
//! Ids are kept as their raw JSON token and echoed byte for byte, so every id a host
//! may send (negative, beyond 64 bits, any string) is answered with exactly what it sent.
//! Params stay [`RawValue`] until the handler deserializes its own type.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::error::{ErrorKind, RpcError};

/// Key identifying an id for duplicate detection and cancellation.
///
/// Strings are compared by value (after unescaping); integers by their decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdKey {
    /// A string id.
    Str(String),
    /// An integer id, as written.
    Int(String),
}

/// A request id: the raw token to echo and its comparison key.
#[derive(Debug, Clone)]
pub struct Id {
    /// The id exactly as the host wrote it.
    pub raw: Box<RawValue>,
    /// Its comparison key.
    pub key: IdKey,
}

impl Id {
    /// Classifies a raw id token (JSON-RPC 2.0 §4; PROTOCOL.md §2: string or integer).
    ///
    /// Returns `Err(Some(raw))` for a number that is not an integer (echoable, but
    /// invalid) and `Err(None)` for null, booleans, objects and arrays.
    fn classify(raw: &RawValue) -> Result<Id, Option<Box<RawValue>>> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => match serde_json::from_str::<String>(text) {
                Ok(s) => Ok(Id {
                    raw: raw.to_owned(),
                    key: IdKey::Str(s),
                }),
                Err(_) => Err(None),
            },
            Some(b'-' | b'0'..=b'9') => {
                if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    Err(Some(raw.to_owned()))
                } else {
                    let key = if text == "-0" { "0" } else { text };
                    Ok(Id {
                        raw: raw.to_owned(),
                        key: IdKey::Int(key.to_owned()),
                    })
                }
            }
            _ => Err(None),
        }
    }

    /// An id from a key, for ids named inside params (cancellation).
    pub fn key_of(raw: &RawValue) -> Option<IdKey> {
        Self::classify(raw).ok().map(|id| id.key)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw.get())
    }
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelParams<'a> {
    #[serde(borrow, alias = "id")]
    request_id: &'a RawValue,
}

/// The id named by `notifications/cancelled` (`requestId`) or `$/cancelRequest`
/// (`id`) params (PROTOCOL.md §5); `None` when absent or not a valid id.
pub fn cancel_target(params: Option<&RawValue>) -> Option<IdKey> {
    let p: CancelParams<'_> = serde_json::from_str(params?.get()).ok()?;
    Id::key_of(p.request_id)
}

/// Request priority (`_meta.priority`, PROTOCOL.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Runs after everything else.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Runs first.
    High,
}

impl Priority {
    /// Index into per-priority queues, highest first.
    pub fn rank(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

/// The `_meta` object of a request's params (PROTOCOL.md §3, §10).
#[derive(Debug, Default)]
pub struct Meta {
    /// Queue priority.
    pub priority: Priority,
    /// Deadline in milliseconds from the moment the line was read.
    pub timeout_ms: Option<u64>,
    /// Token for progress notifications (string or integer), raw.
    pub progress_token: Option<Box<RawValue>>,
    /// `_meta.idempotent` (PROTOCOL.md §10): may be sent again to a new sidecar.
    pub idempotent: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMeta<'a> {
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(borrow, default)]
    progress_token: Option<&'a RawValue>,
    #[serde(default)]
    idempotent: Option<bool>,
}

/// An object's members in order, values raw.
struct RawMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Removes `_meta` from `params` (when it is an object) and parses it.
///
/// Errors are `-32602` naming the offending `_meta` field.
pub fn split_meta(
    params: Option<Box<RawValue>>,
) -> Result<(Option<Box<RawValue>>, Meta), RpcError> {
    let Some(params) = params else {
        return Ok((None, Meta::default()));
    };
    if !params.get().starts_with('{')
        || memchr::memmem::find(params.get().as_bytes(), b"_meta").is_none()
    {
        return Ok((Some(params), Meta::default()));
    }
    let members: RawMembers<'_> = serde_json::from_str(params.get())
        .map_err(|e| RpcError::invalid_params("params", e.to_string()))?;
    let Some(pos) = members.0.iter().position(|(k, _)| k == "_meta") else {
        return Ok((Some(params), Meta::default()));
    };
    let mut meta = Meta::default();
    let raw_meta = members.0[pos].1;
    if raw_meta.get() != "null" {
        let m: RawMeta<'_> = serde_path_to_error::deserialize(
            &mut serde_json::Deserializer::from_str(raw_meta.get()),
        )
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "_meta".to_owned()
            } else {
                format!("_meta.{path}")
            };
            RpcError::invalid_params(field, e.into_inner().to_string())
        })?;
        meta.priority = m.priority.unwrap_or_default();
        meta.idempotent = m.idempotent.unwrap_or(false);
        if let Some(t) = m.timeout_ms {
            if t == 0 {
                return Err(RpcError::invalid_params(
                    "_meta.timeoutMs",
                    "must be an integer > 0",
                ));
            }
            meta.timeout_ms = Some(t);
        }
        if let Some(tok) = m.progress_token {
            if Id::key_of(tok).is_none() {
                return Err(RpcError::invalid_params(
                    "_meta.progressToken",
                    "must be a string or an integer",
                ));
            }
            meta.progress_token = Some(tok.to_owned());
        }
    }
    let mut out = String::with_capacity(params.get().len());
    out.push('{');
    let mut first = true;
    for (i, (k, v)) in members.0.iter().enumerate() {
        if i == pos {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    let stripped = RawValue::from_string(out).map_err(|e| RpcError::internal(e.to_string()))?;
    Ok((Some(stripped), meta))
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

    #[test]
    fn meta_is_removed_and_parsed() {
        let p = RawValue::from_string(
            r#"{"a":1,"_meta":{"priority":"high","timeoutMs":5,"progressToken":"t","x":0},"b":[2]}"#
                .into(),
        )
        .unwrap();
        let (rest, meta) = split_meta(Some(p)).unwrap();
        assert_eq!(rest.unwrap().get(), r#"{"a":1,"b":[2]}"#);
        assert_eq!(meta.priority, Priority::High);
        assert_eq!(meta.timeout_ms, Some(5));
        assert_eq!(meta.progress_token.unwrap().get(), "\"t\"");
    }

    #[test]
    fn bad_meta_names_its_field() {
        let p = RawValue::from_string(r#"{"_meta":{"priority":"urgent"}}"#.into()).unwrap();
        let err = split_meta(Some(p)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParams);
        assert_eq!(err.data["details"]["field"], "_meta.priority");
    }
}
