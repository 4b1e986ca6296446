//! Search: query terms → sparse query (IDF by the store) and, with a model, the
//! query's embedding → dense query; the two lists fused by weighted reciprocal rank
//! ([`super::semantic::fusion`]) → hits deduplicated per chunk, with a snippet around
//! the best-matching lines.

use std::collections::HashSet;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::dense::Binding;
use super::document::Location;
use super::semantic::fusion::{self, Fused, Source};
use super::text::terms;
use super::{DEFAULT_COLLECTION, Engine, EngineError, absolute, field};
use crate::store::{Condition, Filter, Query, Ranking, StoreError};

/// How a search ranks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    Serialize,
    JsonSchema,
    Default,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// BM25 and the embedding, fused by reciprocal rank (the default when the
    /// collection has dense vectors).
    Hybrid,
    /// BM25 only (the default otherwise).
    #[default]
    Sparse,
    /// The embedding only (chunks not yet embedded are not found).
    Dense,
}

impl SearchMode {
    /// Every mode, by its protocol name.
    const ALL: [SearchMode; 3] = [SearchMode::Hybrid, SearchMode::Sparse, SearchMode::Dense];

    /// The protocol name: `hybrid`, `sparse` or `dense` (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Sparse => "sparse",
            SearchMode::Dense => "dense",
        }
    }

    /// The mode of a protocol name, `None` for another string.
    pub fn from_name(name: &str) -> Option<SearchMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

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
    /// How to rank (default: `hybrid` when the collection has this server's dense
    /// vectors, else `sparse`).
    pub mode: Option<SearchMode>,
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
    /// Relevance, higher is better (see [`SearchResult::hits`]).
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
    /// The candidate lists that found this chunk: `sparse` (BM25), `dense` (the
    /// embedding), or both.
    pub sources: Vec<Source>,
    /// Where the chunk is in a document (PDF page, heading, EPUB chapter, notebook
    /// cell); absent for plain text and code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// `search/query` result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SearchResult {
    /// Best first. `score` is BM25 in `sparse` mode, cosine similarity in `dense`
    /// mode, and the fused reciprocal-rank score in `hybrid` mode.
    pub hits: Vec<SearchHit>,
    /// The ranking used.
    pub mode: SearchMode,
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
        let _busy = self.foreground();
        let SearchRequest {
            query,
            collection,
            limit,
            filter,
            mode,
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
        if qterms.is_empty() && *mode != Some(SearchMode::Dense) {
            return Err(EngineError::InvalidInput {
                field: "query",
                message: "the query has no searchable words".into(),
            });
        }
        if query.trim().is_empty() {
            return Err(EngineError::InvalidInput {
                field: "query",
                message: "the query is empty".into(),
            });
        }
        let binding = match self.binding(collection) {
            Ok(b) => Some(b),
            Err(EngineError::NotFound(_)) if collection == DEFAULT_COLLECTION => None,
            Err(e) => return Err(e),
        };
        let mode = self.resolve_mode(collection, *mode, binding.as_ref())?;
        let Some(_) = binding else {
            return Ok(SearchResult {
                hits: Vec::new(),
                mode,
            });
        };
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
        let filter = (!f.must.is_empty()).then_some(f);
        // Room for duplicates left by an interrupted replace, and for fusion.
        let candidates = match mode {
            SearchMode::Sparse | SearchMode::Dense => limit.saturating_mul(2).max(limit + 5),
            SearchMode::Hybrid => limit.saturating_mul(3).max(30),
        };
        let sparse = |limit| {
            self.store.query(
                collection,
                &Query {
                    ranking: Ranking::Sparse(self.embedder.query(&qterms)),
                    filter: filter.clone(),
                    limit,
                },
            )
        };
        let dense = |limit| -> Result<Vec<crate::store::Hit>, EngineError> {
            let model = self.config.model.as_ref().ok_or_else(no_model)?;
            let vector = model
                .embed_query(query)
                .map_err(|e| EngineError::Storage(StoreError::Backend(e.to_string())))?;
            Ok(self.store.query(
                collection,
                &Query {
                    ranking: Ranking::Dense(vector),
                    filter: filter.clone(),
                    limit,
                },
            )?)
        };
        let fused: Vec<Fused> = match mode {
            SearchMode::Sparse => only(sparse(candidates)?, Source::Sparse),
            SearchMode::Dense => only(dense(candidates)?, Source::Dense),
            SearchMode::Hybrid => fusion::fuse(
                sparse(candidates)?,
                dense(candidates)?,
                fusion::weights(fusion::shape(query)),
            ),
        };
        let qset: HashSet<String> = qterms.into_iter().collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for Fused { hit: h, sources } in fused {
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
                sources,
                location: p
                    .get(field::LOCATION)
                    .and_then(|l| serde_json::from_value(l.clone()).ok()),
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(SearchResult { hits: out, mode })
    }

    /// The ranking a search uses: the one asked for if the collection allows it, else
    /// `hybrid` for a collection with this server's vectors and `sparse` otherwise.
    fn resolve_mode(
        &self,
        collection: &str,
        asked: Option<SearchMode>,
        binding: Option<&Binding>,
    ) -> Result<SearchMode, EngineError> {
        let ours = binding == Some(&Binding::Ours) && self.config.model.is_some();
        match (asked, binding) {
            (None, _) => Ok(if ours {
                SearchMode::Hybrid
            } else {
                SearchMode::Sparse
            }),
            (Some(SearchMode::Sparse), _) => Ok(SearchMode::Sparse),
            (Some(m), _) if ours => Ok(m),
            (Some(_), _) if self.config.model.is_none() => Err(no_model()),
            (Some(_), Some(Binding::Other(stored))) => {
                Err(self.mismatch(collection, stored.clone()))
            }
            (Some(m), None) => Ok(m),
            (Some(_), Some(_)) => Err(EngineError::InvalidInput {
                field: "mode",
                message: format!("collection {collection} has no dense vectors"),
            }),
        }
    }
}

fn no_model() -> EngineError {
    EngineError::InvalidInput {
        field: "mode",
        message: "this server has no embedding model (start it with --embed-model and --embed-tokenizer, and ORT_DYLIB_PATH)".into(),
    }
}

fn only(hits: Vec<crate::store::Hit>, source: Source) -> Vec<Fused> {
    hits.into_iter()
        .map(|hit| Fused {
            hit,
            sources: vec![source],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_are_the_serialised_ones() {
        for m in SearchMode::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
            assert_eq!(SearchMode::from_name(m.as_str()), Some(m));
        }
        assert_eq!(SearchMode::from_name("Hybrid"), None);
        for s in [Source::Sparse, Source::Dense] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn snippet_centres_on_the_best_line() {
        let text = "a\nb\ndef parse_args(argv):\nreturn x\nz";
        let q: HashSet<String> = ["parse_args".into(), "parse".into(), "args".into()].into();
        let (s, line) = snippet(text, 10, &q);
        assert_eq!(s, "b\ndef parse_args(argv):\nreturn x");
        assert_eq!(line, 11);
    }
}
