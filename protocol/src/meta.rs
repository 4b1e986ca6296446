//! `params._meta` (PROTOCOL.md §3, §10): priority, deadline, progress token,
//! idempotency — split off a request's params on the way in, merged into them on the way
//! out.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::RpcError;
use crate::id::Id;

/// Request priority (`_meta.priority`, PROTOCOL.md §3).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, Serialize,
)]
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

/// The `_meta` a client puts into a request it sends (PROTOCOL.md §3, §10); absent
/// members are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingMeta {
    /// Queue priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Deadline in milliseconds (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Token for the request's progress notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_token: Option<u64>,
    /// May be sent again to a new sidecar.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

impl OutgoingMeta {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        *self == OutgoingMeta::default()
    }
}

/// `params` with `meta` as their first member `_meta` (params must be an object, or
/// absent: then `{"_meta": …}`); `params` unchanged when `meta` is empty.
///
/// Errors: `-32602` when `params` is not an object.
pub fn merge_meta(
    params: Option<&RawValue>,
    meta: &OutgoingMeta,
) -> Result<Option<Box<RawValue>>, RpcError> {
    if meta.is_empty() {
        return Ok(params.map(ToOwned::to_owned));
    }
    let meta = serde_json::to_string(meta).map_err(|e| RpcError::internal(e.to_string()))?;
    let text = match params {
        None => format!("{{\"_meta\":{meta}}}"),
        Some(p) => {
            let body = p.get().trim();
            let Some(rest) = body.strip_prefix('{') else {
                return Err(RpcError::invalid_params(
                    "params",
                    "must be an object to carry _meta",
                ));
            };
            let rest = rest.trim_start();
            let sep = if rest.starts_with('}') { "" } else { "," };
            format!("{{\"_meta\":{meta}{sep}{rest}")
        }
    };
    RawValue::from_string(text)
        .map(Some)
        .map_err(|e| RpcError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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

    #[test]
    fn meta_is_merged_first_and_split_back() {
        let meta = OutgoingMeta {
            priority: Some(Priority::High),
            timeout_ms: Some(250),
            progress_token: Some(7),
            idempotent: true,
        };
        let p = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        let merged = merge_meta(Some(&p), &meta).unwrap().unwrap();
        assert_eq!(
            merged.get(),
            r#"{"_meta":{"priority":"high","timeoutMs":250,"progressToken":7,"idempotent":true},"a":1}"#
        );
        let (rest, back) = split_meta(Some(merged)).unwrap();
        assert_eq!(rest.unwrap().get(), r#"{"a":1}"#);
        assert_eq!(back.priority, Priority::High);
        assert_eq!(back.timeout_ms, Some(250));
        assert!(back.idempotent);
        let empty = RawValue::from_string("{ }".into()).unwrap();
        let only = OutgoingMeta {
            priority: Some(Priority::Low),
            ..OutgoingMeta::default()
        };
        assert_eq!(
            merge_meta(Some(&empty), &only).unwrap().unwrap().get(),
            r#"{"_meta":{"priority":"low"}}"#
        );
        assert_eq!(
            merge_meta(None, &only).unwrap().unwrap().get(),
            r#"{"_meta":{"priority":"low"}}"#
        );
        assert!(
            merge_meta(None, &OutgoingMeta::default())
                .unwrap()
                .is_none()
        );
        let arr = RawValue::from_string("[1]".into()).unwrap();
        assert!(merge_meta(Some(&arr), &only).is_err());
    }
}
