//! Chunks into points: each chunk's terms (file name, heading context, text, and the
//! names it defines, boosted) become its sparse BM25 vector; the payload carries what a
//! hit shows (a document's chunk also its `location`) and what filters use. Point ids derive from (document, content hash, chunk
//! index), so replaying an ingest is idempotent.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::chunk::{chunk, chunk_code, chunk_sections};
use super::document::Location;
use super::read::TextFile;
use super::text::terms;
use super::{Engine, document_id, field, scopes, semantic, syntax};
use crate::store::Point;

impl Engine {
    /// Chunks and embeds one document.
    pub(crate) fn points(
        &self,
        path: &str,
        hash: &str,
        file: &TextFile,
        metadata: Option<&Value>,
    ) -> Vec<Point> {
        let doc_id = document_id(path);
        let p = Path::new(path);
        let mut title = Vec::new();
        if let Some(stem) = p.file_stem() {
            terms(&stem.to_string_lossy(), &mut title);
        }
        let scopes = scopes(p);
        let found = if self.config.parse_code {
            syntax::symbols_within(file.language, path, &file.text, self.config.parse_budget)
        } else {
            Vec::new()
        };
        let mut locations: Vec<Option<&Location>> = Vec::new();
        let chunks = if !file.sections.is_empty() {
            // A document: chunks follow its pages, headings, chapters or cells.
            let spans: Vec<(usize, usize, String)> = file
                .sections
                .iter()
                .map(|s| (s.start, s.end, s.location.context()))
                .collect();
            chunk_sections(&file.text, &spans, &self.config.chunking)
                .into_iter()
                .map(|(section, c)| {
                    locations.push(Some(&file.sections[section].location));
                    c
                })
                .collect()
        } else if self.config.syntax_chunks && !found.is_empty() {
            chunk_code(&file.text, &found, &self.config.chunking)
        } else {
            chunk(&file.text, file.language, &self.config.chunking)
        };
        locations.resize(chunks.len(), None);
        // Each definition goes with the first chunk holding its first line.
        let mut symbols: Vec<Vec<syntax::Symbol>> = vec![Vec::new(); chunks.len()];
        for s in found {
            if let Some(i) = chunks
                .iter()
                .position(|c| c.start_line as u32 <= s.line && s.line <= c.end_line as u32)
            {
                symbols[i].push(s);
            }
        }
        chunks
            .into_iter()
            .zip(symbols)
            .zip(locations)
            .map(|((c, symbols), location)| {
                let mut ts = title.clone();
                terms(&c.context, &mut ts);
                terms(&c.text, &mut ts);
                if self.config.definition_boost {
                    definitions(&c.text, &mut ts);
                }
                let id_bytes = blake3::hash(format!("{doc_id}:{hash}:{}", c.index).as_bytes());
                let id =
                    u64::from_le_bytes(id_bytes.as_bytes()[..8].try_into().unwrap_or_default());
                let mut payload = Map::new();
                payload.insert(field::PATH.into(), json!(path));
                payload.insert(field::SCOPES.into(), json!(scopes));
                payload.insert(field::DOCUMENT_ID.into(), json!(doc_id));
                payload.insert(field::LANGUAGE.into(), json!(file.language));
                payload.insert(field::CONTENT_HASH.into(), json!(hash));
                payload.insert(field::SHA256.into(), json!(file.sha256));
                payload.insert(field::CHUNK_INDEX.into(), json!(c.index));
                payload.insert(field::START_LINE.into(), json!(c.start_line));
                payload.insert(field::END_LINE.into(), json!(c.end_line));
                payload.insert(field::MTIME.into(), json!(file.modified_ms));
                payload.insert(field::CONTEXT.into(), json!(c.context));
                payload.insert(
                    field::CHUNK_HASH.into(),
                    json!(semantic::input_hash(&semantic::input(
                        path, &c.context, &c.text
                    ))),
                );
                payload.insert(field::TEXT.into(), json!(c.text));
                if !symbols.is_empty() {
                    payload.insert(field::SYMBOLS.into(), json!(symbols));
                }
                if let Some(location) = location.filter(|l| !l.is_empty()) {
                    payload.insert(field::LOCATION.into(), json!(location));
                }
                if let Some(m) = metadata {
                    payload.insert(field::METADATA.into(), m.clone());
                }
                Point {
                    id,
                    sparse: self.embedder.document(&ts),
                    dense: None,
                    payload,
                }
            })
            .collect()
    }
}

/// Keywords that introduce a definition in common languages.
const DEFINERS: &[&str] = &[
    "def",
    "class",
    "fn",
    "struct",
    "enum",
    "trait",
    "impl",
    "func",
    "function",
    "interface",
    "type",
    "mod",
    "module",
    "macro_rules!",
];

/// How many extra times a defined name's terms count (a symbol boost: the chunk that
/// defines `namedtuple` outranks the tests that call it).
const DEFINITION_WEIGHT: usize = 3;

/// Appends the terms of the names defined in `text` (`def NAME`, `class NAME`,
/// `fn NAME`, ...), [`DEFINITION_WEIGHT`] times.
fn definitions(text: &str, out: &mut Vec<String>) {
    for line in text.lines() {
        let mut words = line
            .split(|c: char| c.is_whitespace() || c == '(' || c == ':' || c == '<' || c == '{')
            .filter(|w| !w.is_empty())
            .skip_while(|w| {
                matches!(
                    *w,
                    "pub"
                        | "pub(crate)"
                        | "async"
                        | "export"
                        | "static"
                        | "unsafe"
                        | "const"
                        | "public"
                        | "private"
                        | "protected"
                )
            });
        let (Some(kw), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if DEFINERS.contains(&kw) {
            let start = out.len();
            terms(name, out);
            let defined: Vec<String> = out[start..].to_vec();
            for _ in 1..DEFINITION_WEIGHT {
                out.extend(defined.iter().cloned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defined_names_are_boosted() {
        let mut out = Vec::new();
        definitions(
            "    def namedtuple(typename):\npub fn parse_args() {}\nx = 1\nclass Foo:",
            &mut out,
        );
        let count = |t: &str| out.iter().filter(|x| *x == t).count();
        assert_eq!(count("namedtuple"), DEFINITION_WEIGHT);
        assert_eq!(count("parse_args"), DEFINITION_WEIGHT);
        assert_eq!(count("args"), DEFINITION_WEIGHT);
        assert_eq!(count("foo"), DEFINITION_WEIGHT);
        assert_eq!(count("x"), 0);
    }
}
