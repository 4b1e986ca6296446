//! PDF: one section per page (lopdf's per-page text, each stream's decompression
//! bounded), the heading taken from the document outline (bookmarks) when it has one.

use lopdf::{Document, LoadOptions};

use super::headings::Headings;
use super::{Location, TextBuilder};

/// Extracts every page's text into `b`.
///
/// Errors: not a PDF, unreadable beyond repair, or encrypted with a password; pages
/// that fail alone are left out and counted in the partial reason.
pub(super) fn extract(bytes: &[u8], b: &mut TextBuilder) -> Result<(), String> {
    let limit = usize::try_from(b.limits().max_inflated_bytes).unwrap_or(usize::MAX);
    let options = LoadOptions {
        // Many PDFs are encrypted only to carry permissions, with an empty user
        // password: those open.
        password: Some(String::new()),
        max_decompressed_size: Some(limit),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options).map_err(|e| match e {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => {
            "encrypted PDF (a password is required)".to_owned()
        }
        e => format!("unreadable PDF: {e}"),
    })?;
    if doc.is_encrypted() && doc.encryption_state.is_none() {
        return Err("encrypted PDF (a password is required)".into());
    }
    let pages = doc.get_pages();
    let headings = outline(&doc, pages.len());
    let (mut failed, mut first_error) = (0usize, None);
    for &number in pages.keys() {
        if b.out_of_time() {
            break;
        }
        let text = match doc.extract_text_with_limit(&[number], limit) {
            Ok(t) => t,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("page {number}: {e}"));
                continue;
            }
        };
        b.locate(Location {
            page: Some(number),
            heading: headings.get(number as usize).cloned().flatten(),
            ..Location::default()
        });
        b.text(&unligature(&text));
    }
    if let Some(e) = first_error {
        let reason = format!("{failed} of {} pages unreadable ({e})", pages.len());
        if failed == pages.len() {
            return Err(reason);
        }
        b.stop(reason);
    }
    Ok(())
}

/// For each page number (index), the heading path of the outline entry it falls under.
fn outline(doc: &Document, pages: usize) -> Vec<Option<String>> {
    let mut by_page = vec![None; pages + 1];
    let Ok(toc) = doc.get_toc() else {
        return by_page;
    };
    let mut entries = toc.toc;
    entries.sort_by_key(|e| e.page);
    let mut path = Headings::default();
    let mut next = 0;
    for (page, slot) in by_page.iter_mut().enumerate().skip(1) {
        while next < entries.len() && entries[next].page <= page {
            path.enter(entries[next].level, &entries[next].title);
            next += 1;
        }
        *slot = path.path();
    }
    by_page
}

/// Typographic ligatures (U+FB00–U+FB06) spelled out, so `ﬁle` is found as `file`.
fn unligature(text: &str) -> String {
    if !text.contains(|c: char| ('\u{FB00}'..='\u{FB06}').contains(&c)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            c => out.push(c),
        }
    }
    out
}
