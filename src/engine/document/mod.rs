//! Documents beyond plain text: PDF, HTML/XHTML, DOCX, ODT, EPUB and Jupyter notebooks
//! turned into clean text plus the structure a person navigates by (pages, headings,
//! chapters, cells).
//!
//! Flow: bytes → one extractor per format ([`pdf`], [`html`], [`office`], [`epub`],
//! [`notebook`]) → a [`builder::TextBuilder`] that wraps the text into lines, records
//! where each [`Location`] starts, and enforces the limits → [`Extracted`].
//!
//! Hostile files are expected. Every extractor is bounded:
//! - archives (DOCX, ODT, EPUB) inflate at most [`Limits::max_inflated_bytes`] in all
//!   ([`archive`]), and a truncated archive is read from its local headers;
//! - XML and HTML are read as streams of events (no tree), so nesting depth costs nothing;
//! - PDF streams decompress at most [`Limits::max_inflated_bytes`] each (lopdf's limit),
//!   a broken cross-reference table is rebuilt by lopdf;
//! - the text kept is at most [`Limits::max_text_bytes`];
//! - extraction stops at [`Limits::time_budget`] (checked as it goes), and a file that
//!   still runs past it is given up by the caller's watchdog;
//! - a panic inside an extractor is caught and reported for that file only.
//!
//! A file cut short by a limit is *partly* extracted: its text so far is kept and
//! [`Extracted::partial`] says why.

mod archive;
mod builder;
mod epub;
mod headings;
mod html;
mod notebook;
mod office;
mod pdf;
mod xml;

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use builder::TextBuilder;

/// Where in a document a chunk is, as a person opens it (PROTOCOL.md §9 `location`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// PDF page, 1-based (the page's position in the file, as viewers number it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Heading path of the section, outermost first, joined by ` > ` (HTML, DOCX, ODT,
    /// EPUB, notebooks; a PDF's bookmark for the page when it has an outline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// EPUB chapter: its title in the book's table of contents, else its first heading,
    /// else its file name in the book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chapter: Option<String>,
    /// Notebook cell, 1-based, counting every cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<u32>,
}

impl Location {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Location::default()
    }

    /// Retrieval context: the chapter and heading, for the chunk's terms.
    pub(crate) fn context(&self) -> String {
        match (&self.chapter, &self.heading) {
            (Some(c), Some(h)) => format!("{c} > {h}"),
            (Some(c), None) => c.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => String::new(),
        }
    }
}

/// One run of lines sharing a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// First line of the run, 0-based in [`Extracted::text`].
    pub start: usize,
    /// Line after the run, 0-based.
    pub end: usize,
    pub location: Location,
}

/// A document's text and structure.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Clean text, lines joined by `\n` (paragraphs wrapped near
    /// [`builder::WRAP`] characters).
    pub text: String,
    /// Runs of lines by location, in order, covering every line.
    pub sections: Vec<Section>,
    /// Why only part of the document was extracted (a limit, damage); `None` when whole.
    pub partial: Option<String>,
}

/// Bounds on one extraction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall time for one file.
    pub time_budget: Duration,
    /// Most bytes decompressed from one archive (all entries) or one PDF stream.
    pub max_inflated_bytes: u64,
    /// Most text kept from one file, in bytes.
    pub max_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_budget: Duration::from_secs(30),
            max_inflated_bytes: 256 * 1024 * 1024,
            max_text_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The document formats, by their `language` names.
pub const FORMATS: [&str; 6] = ["pdf", "html", "docx", "odt", "epub", "notebook"];

/// Whether `language` is a document format extracted here (see [`FORMATS`]).
pub fn is_document(language: &str) -> bool {
    FORMATS.contains(&language)
}

/// Why a document yielded nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExtractError(pub String);

/// Extracts `bytes` of the document format `language` within `limits`, on a thread of
/// its own: a panic there is caught, and a file still running 5 s past its budget is
/// given up (the thread is left to stop at its next check).
///
/// Errors: the reason for people (`encrypted PDF (a password is required)`, `not a
/// DOCX: …`, `extraction panicked: …`, `no text`, …).
pub fn extract(
    language: &'static str,
    bytes: Vec<u8>,
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    contained(language, limits.time_budget + GRACE, move || {
        extract_here(language, &bytes, limits)
    })
}

/// Runs `work` on a thread of its own: its panic becomes an error, and when it has not
/// answered within `patience` it is given up (left to stop at its next check).
fn contained(
    name: &str,
    patience: Duration,
    work: impl FnOnce() -> Result<Extracted, ExtractError> + Send + 'static,
) -> Result<Extracted, ExtractError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name(format!("extract-{name}"))
        // Deep structures recurse in some parsers; a large reserved stack costs only
        // what is touched.
        .stack_size(256 * 1024 * 1024)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(ExtractError(format!("extraction panicked: {message}")))
                });
            let _ = tx.send(outcome);
        });
    if let Err(e) = spawned {
        return Err(ExtractError(format!("cannot start extraction: {e}")));
    }
    match rx.recv_timeout(patience) {
        Ok(outcome) => outcome,
        Err(_) => Err(ExtractError(format!(
            "extraction still running after {} s was given up",
            patience.as_secs_f64()
        ))),
    }
}

/// How long past its budget an extraction may run before it is given up.
const GRACE: Duration = Duration::from_secs(5);

/// [`extract`] on the calling thread (no watchdog, no panic containment).
pub fn extract_here(
    language: &str,
    bytes: &[u8],
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    let mut b = TextBuilder::new(limits, Instant::now() + limits.time_budget);
    let outcome = match language {
        "pdf" => pdf::extract(bytes, &mut b),
        "html" => html::extract(bytes, &mut b),
        "docx" => office::extract_docx(bytes, &mut b),
        "odt" => office::extract_odt(bytes, &mut b),
        "epub" => epub::extract(bytes, &mut b),
        "notebook" => notebook::extract(bytes, &mut b),
        other => Err(format!("not a document format: {other}")),
    };
    let mut extracted = b.finish();
    match outcome {
        Err(reason) if extracted.text.trim().is_empty() => Err(ExtractError(reason)),
        Err(reason) => {
            extracted.partial.get_or_insert(reason);
            Ok(extracted)
        }
        Ok(()) if extracted.text.trim().is_empty() => Err(ExtractError(
            extracted
                .partial
                .map_or_else(|| "no text".to_owned(), |p| format!("no text ({p})")),
        )),
        Ok(()) => Ok(extracted),
    }
}

#[cfg(test)]
mod tests;
