//! Read and decode: a file's bytes into checked text (binary, too large, not UTF-8 and
//! unreadable files are refused with the reason), with its content hash. Documents
//! (PDF, HTML, DOCX, ODT, EPUB, notebooks) are extracted by [`super::document`].

use std::path::Path;

use super::chunk::language_of;
use super::document::{self, Section};
use super::{Engine, EngineError};

/// A file read and checked.
pub(crate) struct TextFile {
    pub(crate) text: String,
    pub(crate) hash: String,
    /// Hex SHA-256 of the bytes.
    pub(crate) sha256: String,
    pub(crate) bytes: u64,
    pub(crate) language: &'static str,
    /// Last modification, in milliseconds since the Unix epoch (the file's mtime, or
    /// when given content was received).
    pub(crate) modified_ms: i64,
    /// A document's runs of lines by location (empty for plain text and code).
    pub(crate) sections: Vec<Section>,
    /// Why a document was only partly extracted.
    pub(crate) partial: Option<String>,
}

fn epoch_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Bytes inspected for NUL when deciding whether a file is binary.
const SNIFF: usize = 8 * 1024;

impl Engine {
    /// Reads `path` as text: the reason it cannot be is an [`EngineError`].
    pub(crate) fn read_text(&self, path: &Path) -> Result<TextFile, EngineError> {
        self.read_text_if_changed(path, None)
            .map(|f| f.expect("no known hash, never unchanged"))
    }

    /// [`Engine::read_text`], or `None` when the file's content hash is `known` (so a
    /// document is not extracted again to find it unchanged).
    pub(crate) fn read_text_if_changed(
        &self,
        path: &Path,
        known: Option<&str>,
    ) -> Result<Option<TextFile>, EngineError> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EngineError::NotFound(format!("no such file: {shown}")),
            _ => EngineError::InvalidPath(format!("unreadable: {shown}: {e}")),
        })?;
        if !meta.is_file() {
            return Err(EngineError::InvalidPath(format!(
                "not a regular file: {shown}"
            )));
        }
        let Some(language) = language_of(path) else {
            return Err(EngineError::UnsupportedContent(format!(
                "binary file type: {shown}"
            )));
        };
        self.check_size(path, meta.len(), language)?;
        let bytes = std::fs::read(path)
            .map_err(|e| EngineError::InvalidPath(format!("unreadable: {shown}: {e}")))?;
        let hash = content_hash(&bytes, language);
        if known == Some(hash.as_str()) {
            return Ok(None);
        }
        let mut file = self.text_of_hashed(path, &bytes, language, hash)?;
        if let Ok(t) = meta.modified() {
            file.modified_ms = epoch_ms(t);
        }
        Ok(Some(file))
    }

    /// Refuses a file over the size limit of its kind (`--max-document-bytes` for
    /// documents, `--max-file-bytes` otherwise).
    fn check_size(&self, path: &Path, bytes: u64, language: &str) -> Result<(), EngineError> {
        let (limit, flag) = if document::is_document(language) {
            (self.config.max_document_bytes, "--max-document-bytes")
        } else {
            (self.config.max_file_bytes, "--max-file-bytes")
        };
        if bytes > limit {
            return Err(EngineError::UnsupportedContent(format!(
                "too large: {} has {bytes} bytes, the limit is {limit} ({flag})",
                path.display()
            )));
        }
        Ok(())
    }

    /// `bytes` (a file's, or content sent for the document `path`) as checked text.
    ///
    /// Errors: `UnsupportedContent` when too large, binary or not UTF-8.
    pub(crate) fn text_of(
        &self,
        path: &Path,
        bytes: &[u8],
        language: &'static str,
    ) -> Result<TextFile, EngineError> {
        self.text_of_hashed(path, bytes, language, content_hash(bytes, language))
    }

    /// [`Engine::text_of`] with the content `hash` already computed.
    fn text_of_hashed(
        &self,
        path: &Path,
        bytes: &[u8],
        language: &'static str,
        hash: String,
    ) -> Result<TextFile, EngineError> {
        let shown = path.display();
        self.check_size(path, bytes.len() as u64, language)?;
        let (text, sections, partial) = if document::is_document(language) {
            let extracted = document::extract(language, bytes.to_vec(), self.config.documents)
                .map_err(|e| {
                    EngineError::UnsupportedContent(format!("{shown}: {language}: {e}"))
                })?;
            (extracted.text, extracted.sections, extracted.partial)
        } else {
            let text = decode(bytes).ok_or_else(|| {
                EngineError::UnsupportedContent(format!("not text (binary or not UTF-8): {shown}"))
            })?;
            (text, Vec::new(), None)
        };
        Ok(TextFile {
            hash,
            sha256: super::sha256_hex(bytes),
            bytes: bytes.len() as u64,
            text,
            language,
            modified_ms: epoch_ms(std::time::SystemTime::now()),
            sections,
            partial,
        })
    }
}

/// What a document's content hash covers besides its bytes: the extraction. Bumped
/// when extraction changes what a document yields, so that documents indexed by an
/// older Quarry (HTML once indexed as markup) are extracted again instead of being
/// taken as unchanged.
const EXTRACTION: &[u8] = b"quarry-documents-1\0";

/// A file's content hash as stored (`contentHash`): 32 hex digits of BLAKE3 of its
/// bytes (preceded by [`EXTRACTION`] for documents).
fn content_hash(bytes: &[u8], language: &str) -> String {
    let mut h = blake3::Hasher::new();
    if document::is_document(language) {
        h.update(EXTRACTION);
    }
    h.update(bytes);
    h.finalize().to_hex()[..32].to_owned()
}

/// Text of a file: UTF-8, or lossily decoded when at most 1 % of it is invalid;
/// `None` for binary content (a NUL byte in the first 8 KiB) or mostly-invalid text.
pub(crate) fn decode(bytes: &[u8]) -> Option<String> {
    if memchr::memchr(0, &bytes[..bytes.len().min(SNIFF)]).is_some() {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s.to_owned()),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let bad = text.matches('\u{FFFD}').count();
            (bad * 100 <= bytes.len()).then(|| text.into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documents_hash_covers_its_extraction() {
        let bytes = b"<p>same bytes</p>";
        assert_eq!(
            content_hash(bytes, "text"),
            blake3::hash(bytes).to_hex()[..32]
        );
        assert_ne!(content_hash(bytes, "html"), content_hash(bytes, "text"));
    }

    #[test]
    fn binary_and_lossy_decoding() {
        assert_eq!(decode(b"plain"), Some("plain".into()));
        assert_eq!(decode(b"a\x00b"), None);
        let mut mostly = b"x".repeat(200);
        mostly.push(0xff);
        assert!(decode(&mostly).is_some());
        assert!(decode(&b"\xe9".repeat(50)).is_none());
    }
}
