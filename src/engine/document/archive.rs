//! Zip archives (DOCX, ODT, EPUB) read within a budget: every entry read counts its
//! inflated bytes against [`super::Limits::max_inflated_bytes`], so a zip bomb stops at
//! the budget instead of filling memory. An archive whose central directory is missing
//! (a truncated download) is read from its local headers instead, as far as they go.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::TextBuilder;

/// An archive being read; see the module documentation.
pub(super) enum Archive<'a> {
    /// The central directory was read: entries by name, on demand.
    Indexed {
        zip: ZipArchive<Cursor<&'a [u8]>>,
        inflated: u64,
    },
    /// Truncated or damaged: the entries that could be read, front to back.
    Streamed {
        entries: HashMap<String, Vec<u8>>,
        /// Why the stream ended early.
        damage: String,
    },
}

impl<'a> Archive<'a> {
    /// Opens `bytes` as a zip archive.
    ///
    /// Errors: not a zip archive at all (no entry readable).
    pub(super) fn open(bytes: &'a [u8], b: &mut TextBuilder) -> Result<Self, String> {
        match ZipArchive::new(Cursor::new(bytes)) {
            Ok(zip) => Ok(Archive::Indexed { zip, inflated: 0 }),
            Err(e) => {
                let (entries, damage) = stream(bytes, b);
                if entries.is_empty() {
                    return Err(format!("not a readable zip archive: {e}"));
                }
                Ok(Archive::Streamed {
                    entries,
                    damage: format!("damaged archive ({e}); read {damage}"),
                })
            }
        }
    }

    /// Why the archive could be read only in part (`None` when whole).
    pub(super) fn damage(&self) -> Option<&str> {
        match self {
            Archive::Indexed { .. } => None,
            Archive::Streamed { damage, .. } => Some(damage),
        }
    }

    /// The entry `name`, inflated; `None` when there is no such entry (or it could not
    /// be read before the archive's end).
    ///
    /// Errors: the entry is unreadable, or reading it would pass the inflate budget
    /// (the builder is stopped with the reason too).
    pub(super) fn read(
        &mut self,
        name: &str,
        b: &mut TextBuilder,
    ) -> Option<Result<Vec<u8>, String>> {
        match self {
            Archive::Streamed { entries, .. } => entries.remove(name).map(Ok),
            Archive::Indexed { zip, inflated } => {
                let budget = b.limits().max_inflated_bytes;
                let entry = match zip.by_name(name) {
                    Ok(entry) => entry,
                    Err(zip::result::ZipError::FileNotFound) => return None,
                    Err(e) => return Some(Err(format!("{name}: {e}"))),
                };
                let mut out = Vec::new();
                let left = budget.saturating_sub(*inflated);
                let read = entry.take(left + 1).read_to_end(&mut out);
                *inflated += out.len() as u64;
                if let Err(e) = read {
                    return Some(Err(format!("{name}: {e}")));
                }
                if *inflated > budget {
                    let reason = too_large(budget);
                    b.stop(reason.clone());
                    return Some(Err(reason));
                }
                Some(Ok(out))
            }
        }
    }
}

fn too_large(budget: u64) -> String {
    format!(
        "archive inflates beyond {} MiB (a zip bomb?)",
        budget / (1024 * 1024)
    )
}

/// Reads entries from local headers until the data ends or the budget is spent:
/// the entries, and a description of how far it got.
fn stream(bytes: &[u8], b: &mut TextBuilder) -> (HashMap<String, Vec<u8>>, String) {
    let budget = b.limits().max_inflated_bytes;
    let mut reader = Cursor::new(bytes);
    let mut entries = HashMap::new();
    let mut inflated = 0u64;
    loop {
        let mut entry = match zip::read::read_zipfile_from_stream(&mut reader) {
            Ok(Some(entry)) => entry,
            Ok(None) | Err(_) => break,
        };
        let Ok(name) = entry.name().map(|n| n.into_owned()) else {
            break;
        };
        let mut out = Vec::new();
        let left = budget.saturating_sub(inflated);
        let read = (&mut entry).take(left + 1).read_to_end(&mut out);
        inflated += out.len() as u64;
        if inflated > budget {
            b.stop(too_large(budget));
            break;
        }
        if read.is_err() {
            break;
        }
        entries.insert(name, out);
    }
    let count = entries.len();
    (entries, format!("{count} entries before the damage"))
}
