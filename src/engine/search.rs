//! Search: query terms → sparse query (IDF by the store) → hits deduplicated per
//! chunk, with a snippet around the best-matching lines.

use std::collections::HashSet;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::text::terms;
use super::{DEFAULT_COLLECTION, Engine, EngineError, absolute, field};
use crate::store::{Condition, Filter, Query, StoreError};

/// Most hits one search may ask for.
pub const MAX_LIMIT: usize = 100;
/// Hits when a search names no limit.
pub const DEFAULT_LIMIT: usize = 10;

/// A search, as every front end (JSON-RPC, gRPC, the CLI) hands it to the engine: the
/// engine alone defaults and validates it.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// Words, identifiers or a description; must hold at least one searchable word.
    pub query: String,
    /// Collection (default [`DEFAULT_COLLECTION`]).
    pub collection: Option<String>,
    /// Most hits, 1–[`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
    pub limit: Option<usize>,
    /// Restrictions.
    pub filter: SearchFilter,
}

/// Restricts a search.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Only documents at this path or under this folder.
    pub path_prefix: Option<PathBuf>,
    /// Only documents of these languages (empty: all).
    pub languages: Vec<String>,
}

/// One hit.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    /// Absolute path of the document.
    pub path: String,
    /// Relevance (BM25 with IDF; higher is better).
    pub score: f32,
    /// Chunk position in the document, 0-based.
    pub chunk_index: u64,
    /// First line of the chunk, 1-based.
    pub start_line: u64,
    /// Last line of the chunk, 1-based, inclusive.
    pub end_line: u64,
    /// Up to three lines around the best-matching line of the chunk.
    pub snippet: String,
    /// First line of the snippet, 1-based.
    pub snippet_line: u64,
    /// Language of the document.
    pub language: String,
    /// Stable id of the document.
    pub document_id: String,
}

/// `search/query` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SearchResult {
    /// Best first.
    pub hits: Vec<SearchHit>,
}

/// Longest snippet line, in characters.
const SNIPPET_LINE: usize = 200;

fn snippet(text: &str, first_line: u64, query: &HashSet<String>) -> (String, u64) {
    let lines: Vec<&str> = text.lines().collect();
    let mut best = (0usize, 0usize);
    let mut buf = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        buf.clear();
        terms(line, &mut buf);
        let distinct: HashSet<&String> = buf.iter().filter(|t| query.contains(*t)).collect();
        if distinct.len() > best.1 {
            best = (i, distinct.len());
        }
    }
    let start = best.0.saturating_sub(1);
    let end = (best.0 + 2).min(lines.len());
    let text = lines[start..end]
        .iter()
        .map(|l| {
            let l = l.trim_end();
            match l.char_indices().nth(SNIPPET_LINE) {
                Some((cut, _)) => format!("{}…", &l[..cut]),
                None => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (text, first_line + start as u64)
}

fn str_field(payload: &serde_json::Map<String, Value>, key: &str) -> String {
    payload
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn int_field(payload: &serde_json::Map<String, Value>, key: &str) -> u64 {
    payload.get(key).and_then(Value::as_u64).unwrap_or_default()
}

impl Engine {
    /// The `limit` best chunks for `query`.
    ///
    /// Errors: a query without terms or a limit outside 1–[`MAX_LIMIT`]
    /// (`InvalidInput`), an unknown collection other than the default one (`NotFound`;
    /// the default one answers no hits), `Storage`.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResult, EngineError> {
        let SearchRequest {
            query,
            collection,
            limit,
            filter,
        } = request;
        let collection = collection.as_deref().unwrap_or(DEFAULT_COLLECTION);
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(EngineError::InvalidInput {
                field: "limit",
                message: format!("must be between 1 and {MAX_LIMIT}"),
            });
        }
        let mut qterms = Vec::new();
        terms(query, &mut qterms);
        if qterms.is_empty() {
            return Err(EngineError::InvalidInput {
                field: "query",
                message: "the query has no searchable words".into(),
            });
        }
        let mut f = Filter::default();
        if let Some(prefix) = &filter.path_prefix {
            f = f.and(Condition::Keyword(
                field::SCOPES,
                absolute(prefix).to_string_lossy().into_owned(),
            ));
        }
        if !filter.languages.is_empty() {
            f = f.and(Condition::KeywordAny(
                field::LANGUAGE,
                filter.languages.clone(),
            ));
        }
        let q = Query {
            sparse: self.embedder.query(&qterms),
            dense: None,
            filter: (!f.must.is_empty()).then_some(f),
            // Room for duplicates left by an interrupted replace.
            limit: limit.saturating_mul(2).max(limit + 5),
        };
        let hits = match self.store.query(collection, &q) {
            Ok(h) => h,
            Err(StoreError::NoCollection(_)) if collection == DEFAULT_COLLECTION => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let qset: HashSet<String> = qterms.into_iter().collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for h in hits {
            let p = &h.payload;
            let path = str_field(p, field::PATH);
            let chunk_index = int_field(p, field::CHUNK_INDEX);
            if !seen.insert((path.clone(), chunk_index)) {
                continue;
            }
            let start_line = int_field(p, field::START_LINE);
            let text = p
                .get(field::TEXT)
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (snippet, snippet_line) = snippet(text, start_line, &qset);
            out.push(SearchHit {
                score: h.score,
                chunk_index,
                start_line,
                end_line: int_field(p, field::END_LINE),
                snippet,
                snippet_line,
                language: str_field(p, field::LANGUAGE),
                document_id: str_field(p, field::DOCUMENT_ID),
                path,
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(SearchResult { hits: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_centres_on_the_best_line() {
        let text = "a\nb\ndef parse_args(argv):\nreturn x\nz";
        let q: HashSet<String> = ["parse_args".into(), "parse".into(), "args".into()].into();
        let (s, line) = snippet(text, 10, &q);
        assert_eq!(s, "b\ndef parse_args(argv):\nreturn x");
        assert_eq!(line, 11);
    }
}
