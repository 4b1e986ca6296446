//! Semantic search: a local sentence-embedding model ([`model`]) fills each chunk's
//! `dense` vector in the background ([`backfill`]), and search fuses the dense ranking
//! with BM25's ([`fusion`]).

pub(crate) mod backfill;
pub mod fusion;
pub mod model;

pub use backfill::{Backfill, Busy, DenseStatus, Load, Priority};
pub use model::{Encoder, Model, ModelConfig, ModelError, ModelInfo};

/// The text a chunk is embedded as: its file's name, its heading context and its text.
/// The `chunkHash` payload field is the hash of exactly this, so a chunk whose input is
/// unchanged is never embedded again.
pub(crate) fn input(path: &str, context: &str, text: &str) -> String {
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if context.is_empty() {
        format!("{name}\n{text}")
    } else {
        format!("{name}: {context}\n{text}")
    }
}

/// `chunkHash`: the first 32 hex digits of BLAKE3 of [`input`].
pub(crate) fn input_hash(input: &str) -> String {
    blake3::hash(input.as_bytes()).to_hex()[..32].to_owned()
}
