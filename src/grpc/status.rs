//! Protocol errors as gRPC statuses (GRPC.md §3): the code of the error's kind and a
//! `google.rpc.ErrorInfo` detail — `domain: "quarry"`, `reason`: the kind, the kind's
//! data fields in `metadata` (strings as they are, other values as JSON text).

use std::collections::HashMap;

use quarry_protocol::{ErrorKind, RpcError};
use serde_json::Value;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo` domain of every Quarry error.
pub const DOMAIN: &str = "quarry";

/// The gRPC code of an error kind (GRPC.md §3).
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidParams
        | ErrorKind::InvalidPath
        | ErrorKind::ParseError
        | ErrorKind::InvalidRequest
        | ErrorKind::MessageTooLarge
        | ErrorKind::DuplicateId => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::UnsupportedContent => Code::FailedPrecondition,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Overloaded => Code::ResourceExhausted,
        ErrorKind::ShuttingDown | ErrorKind::SidecarExited | ErrorKind::SidecarUnavailable => {
            Code::Unavailable
        }
        ErrorKind::MethodNotFound => Code::Unimplemented,
        ErrorKind::Storage | ErrorKind::Internal => Code::Internal,
    }
}

/// The status of a protocol error, with its `ErrorInfo`.
pub fn status(e: &RpcError) -> Status {
    let metadata: HashMap<String, String> = e
        .data
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    Status::with_error_details(
        code_of(e.kind),
        e.message.clone(),
        ErrorDetails::with_error_info(e.kind.as_str(), DOMAIN, metadata),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code_and_error_info() {
        for kind in ErrorKind::ALL {
            let s = status(&RpcError::new(kind, "m").with("limit", 3).with("field", "q"));
            assert_eq!(s.code(), code_of(kind));
            let info = s.get_details_error_info().expect("ErrorInfo");
            assert_eq!(info.reason, kind.as_str());
            assert_eq!(info.domain, DOMAIN);
            assert_eq!(info.metadata.get("limit").map(String::as_str), Some("3"));
            assert_eq!(info.metadata.get("field").map(String::as_str), Some("q"));
        }
    }
}
