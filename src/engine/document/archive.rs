//! Zip archives (DOCX, ODT, EPUB) read within a budget: every entry read counts its
//! inflated bytes against [`super::Limits::max_inflated_bytes`], so a zip bomb stops at
//! the budget instead of filling memory. An archive whose central directory is missing
//! (a truncated download) is read from its local headers instead, as far as they go.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::rc::Rc;

use zip::ZipArchive;

use super::TextBuilder;

/// An archive being read; see the module documentation.
pub(super) struct Archive<'a> {
    kind: Kind<'a>,
    /// Bytes inflated so far (all members), against `budget`.
    inflated: Rc<Cell<u64>>,
    budget: u64,
    /// Why a member's reads failed on purpose (budget spent, a run without markup).
    failure: Rc<RefCell<Option<String>>>,
}

/// Most bytes of XML between two `<` or `>`: a longer text node or tag (which an XML
/// reader holds whole in memory) is refused. Real office text comes in short runs.
const LONGEST_RUN: u64 = 16 * 1024 * 1024;

enum Kind<'a> {
    /// The central directory was read: members by name, inflated as they are read.
    Indexed(ZipArchive<Cursor<&'a [u8]>>),
    /// Truncated or damaged: the members that could be read, front to back, and why
    /// the stream ended early.
    Streamed {
        entries: HashMap<String, Vec<u8>>,
        damage: String,
    },
}

impl<'a> Archive<'a> {
    /// Opens `bytes` as a zip archive.
    ///
    /// Errors: not a zip archive at all (no member readable).
    pub(super) fn open(bytes: &'a [u8], b: &mut TextBuilder) -> Result<Self, String> {
        let budget = b.limits().max_inflated_bytes;
        let kind = match ZipArchive::new(Cursor::new(bytes)) {
            Ok(zip) => Kind::Indexed(zip),
            Err(e) => {
                let (entries, damage) = stream(bytes, b);
                if entries.is_empty() {
                    return Err(format!("not a readable zip archive: {e}"));
                }
                Kind::Streamed {
                    entries,
                    damage: format!("damaged archive ({e}); read {damage}"),
                }
            }
        };
        Ok(Archive {
            kind,
            inflated: Rc::new(Cell::new(0)),
            budget,
            failure: Rc::new(RefCell::new(None)),
        })
    }

    /// Why the archive could be read only in part (`None` when whole).
    pub(super) fn damage(&self) -> Option<&str> {
        match &self.kind {
            Kind::Indexed(_) => None,
            Kind::Streamed { damage, .. } => Some(damage),
        }
    }

    /// Why reads failed on purpose: the inflate budget passed, or a run of XML without
    /// markup longer than [`LONGEST_RUN`] (reads fail from there on).
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// The member `name`, inflating as it is read (its reads fail once the archive's
    /// inflate budget is spent: see [`Archive::over_budget`]); `None` when there is no
    /// such member (or it could not be read before the damage).
    ///
    /// Errors: the member's header is unreadable.
    pub(super) fn reader(&mut self, name: &str) -> Option<Result<Box<dyn BufRead + '_>, String>> {
        match &mut self.kind {
            Kind::Streamed { entries, .. } => entries
                .remove(name)
                .map(|data| Ok(Box::new(Cursor::new(data)) as Box<dyn BufRead>)),
            Kind::Indexed(zip) => match zip.by_name(name) {
                Ok(member) => Some(Ok(Box::new(BufReader::new(Budgeted {
                    inner: member,
                    inflated: self.inflated.clone(),
                    budget: self.budget,
                    run: 0,
                    failure: self.failure.clone(),
                })))),
                Err(zip::result::ZipError::FileNotFound) => None,
                Err(e) => Some(Err(format!("{name}: {e}"))),
            },
        }
    }

    /// The member `name`, inflated into memory (for small parts: a package, a chapter).
    ///
    /// Errors: unreadable, or past the inflate budget (then `b` is stopped too).
    pub(super) fn read(
        &mut self,
        name: &str,
        b: &mut TextBuilder,
    ) -> Option<Result<Vec<u8>, String>> {
        let read = match self.reader(name)? {
            Ok(mut r) => {
                let mut out = Vec::new();
                r.read_to_end(&mut out)
                    .map(|_| out)
                    .map_err(|e| format!("{name}: {e}"))
            }
            Err(e) => Err(e),
        };
        if let Some(reason) = self.failure() {
            b.stop(reason.clone());
            return Some(Err(reason));
        }
        Some(read)
    }
}

/// A member's reader that counts what it inflates into the archive's total, and fails
/// once that passes the budget or a run without markup passes [`LONGEST_RUN`].
struct Budgeted<R> {
    inner: R,
    inflated: Rc<Cell<u64>>,
    budget: u64,
    /// Bytes since the last `<` or `>`.
    run: u64,
    failure: Rc<RefCell<Option<String>>>,
}

impl<R: Read> Budgeted<R> {
    fn fail(&self, reason: String) -> std::io::Error {
        self.failure.borrow_mut().get_or_insert(reason.clone());
        std::io::Error::other(reason)
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.inflated.get() > self.budget {
            return Err(self.fail(too_large(self.budget)));
        }
        let n = self.inner.read(buf)?;
        self.inflated.set(self.inflated.get() + n as u64);
        self.run = match memchr::memrchr2(b'<', b'>', &buf[..n]) {
            Some(at) => (n - at - 1) as u64,
            None => self.run + n as u64,
        };
        if self.run > LONGEST_RUN {
            return Err(self.fail(format!(
                "XML text or tag longer than {} MiB without markup (a zip bomb?)",
                LONGEST_RUN / (1024 * 1024)
            )));
        }
        Ok(n)
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
