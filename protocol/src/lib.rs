//! `quarry-protocol`: the JSON-RPC 2.0 vocabulary of the Quarry wire protocol
//! (`PROTOCOL.md`), shared by the server (`quarry serve`), the proxy (`quarry
//! supervise`) and the supervisor crate. No runtime, no engine.
//!
//! - [`codec`]: the bounded line codec (PROTOCOL.md §1).
//! - [`id`]: raw request ids, echoed byte for byte, and their comparison keys (§2).
//! - [`message`]: what a server reads (requests, batches) and writes (responses,
//!   notifications).
//! - [`meta`]: `params._meta` — priority, deadline, progress token, idempotent (§3, §10).
//! - [`error`]: the error kinds and their codes (§8, §10).
//! - [`control`]: the wire types of ready, progress, cancellation and health (§5–7).
//! - [`client`]: the client role — request lines out, responses and notifications in.

pub mod client;
pub mod codec;
pub mod control;
pub mod error;
pub mod id;
pub mod message;
pub mod meta;

pub use codec::{Frame, LineCodec};
pub use error::{ErrorKind, RpcError};
pub use id::{Id, IdKey, cancel_target};
pub use message::{Line, Message, Outgoing, Request, Response, decode_line};
pub use meta::{Meta, OutgoingMeta, Priority, merge_meta, split_meta};
