//! Request ids (JSON-RPC 2.0 §4; PROTOCOL.md §2): kept as their raw JSON token and
//! echoed byte for byte, so every id a host may send (negative, beyond 64 bits, any
//! string) is answered with exactly what it sent; compared by [`IdKey`].

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

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
    pub(crate) fn classify(raw: &RawValue) -> Result<Id, Option<Box<RawValue>>> {
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
