//! `search/symbols`: definitions by name, ranked like an editor's "go to symbol in
//! workspace": the exact name first, then a prefix, then `snake_case`/`camelCase`
//! sub-words (or a `*` glob), then a substring, then a typo-tolerant match;
//! definitions before declarations. `Foo.bar` and `Foo::bar` ask for `bar` inside `Foo`.
//!
//! Symbols live in the chunk payloads (`symbols`); each collection's are read into memory
//! on the first query and again after any write to it (or when its point count moved,
//! for writers in other processes on a shared server).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::syntax::Symbol;
use super::{Engine, EngineError, absolute, field};
use crate::store::scroll_all;

/// A `search/symbols` request.
#[derive(Debug, Clone, Default)]
pub struct SymbolsRequest {
    /// A name, a prefix, sub-words, a `*` glob, or `Container.name` / `Container::name`.
    pub query: String,
    /// Collection (default `"default"`).
    pub collection: Option<String>,
    /// Most symbols (1–100, default 20).
    pub limit: Option<usize>,
    /// Only these kinds.
    pub kinds: Vec<String>,
    /// Only these languages.
    pub languages: Vec<String>,
    /// Only under this path.
    pub path_prefix: Option<std::path::PathBuf>,
}

/// One symbol found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymbolHit {
    /// Its name.
    pub name: String,
    /// LSP `SymbolKind` in camelCase, or `trait`, `type`, `macro`.
    pub kind: String,
    /// Absolute path of its file.
    pub path: String,
    /// First line (1-based).
    pub line: u32,
    /// Last line (1-based).
    pub end_line: u32,
    /// Its file's language.
    pub language: String,
    /// Enclosing definitions, outermost first, joined by `.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The definition's first line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// How well it matches, 0–1 (1: the exact name).
    pub score: f32,
}

/// A symbol ready to be matched.
pub(crate) struct Entry {
    /// The container, lower-cased (qualified queries).
    container: Option<String>,
    symbol: Symbol,
    path: Arc<str>,
    language: Arc<str>,
    lower: String,
    words: Vec<String>,
}

/// A collection's symbols as read, with what they were read after.
pub(crate) struct Table {
    generation: u64,
    points: usize,
    /// When `points` was last compared with the store's count.
    checked: std::sync::Mutex<std::time::Instant>,
    entries: Vec<Entry>,
    /// Every lower-cased name, each after a `\n`, in entry order: one substring search
    /// over it finds the candidates of a query.
    names: String,
    /// Where each entry's name starts in `names`.
    starts: Vec<usize>,
    /// Each entry's first byte and length (lower-cased), for near misses.
    shapes: Vec<(u8, usize)>,
}

impl Table {
    fn new(generation: u64, points: usize, entries: Vec<Entry>) -> Table {
        let mut names = String::new();
        let mut starts = Vec::with_capacity(entries.len());
        let mut shapes = Vec::with_capacity(entries.len());
        for e in &entries {
            names.push('\n');
            starts.push(names.len());
            names.push_str(&e.lower);
            shapes.push((
                e.lower.as_bytes().first().copied().unwrap_or(0),
                e.lower.len(),
            ));
        }
        Table {
            generation,
            points,
            checked: std::sync::Mutex::new(std::time::Instant::now()),
            entries,
            names,
            starts,
            shapes,
        }
    }

    /// Entries that may match `w` (every match is among them), in entry order.
    fn candidates(&self, w: &Wanted) -> Vec<usize> {
        // Every tier but near misses needs a piece of the query inside the name: the
        // whole name, the longest sub-word, or the longest literal part of a glob.
        let piece = if w.glob {
            w.lower.split('*').max_by_key(|p| p.len()).unwrap_or("")
        } else {
            // Whatever the tier, a matching name holds each of the query's sub-words.
            w.words
                .iter()
                .map(String::as_str)
                .max_by_key(|p| p.len())
                .unwrap_or("")
        };
        let mut hit = vec![false; self.entries.len()];
        if piece.is_empty() {
            hit.iter_mut().for_each(|h| *h = true);
        } else {
            for (at, _) in self.names.match_indices(piece) {
                let i = self.starts.partition_point(|&s| s <= at).saturating_sub(1);
                if let Some(h) = hit.get_mut(i) {
                    *h = true;
                }
            }
        }
        if w.typos > 0 && !w.glob {
            let first = w.lower.as_bytes().first().copied().unwrap_or(0);
            for (i, &(f, len)) in self.shapes.iter().enumerate() {
                if f == first && len.abs_diff(w.lower.len()) <= w.typos {
                    hit[i] = true;
                }
            }
        }
        hit.iter()
            .enumerate()
            .filter_map(|(i, h)| h.then_some(i))
            .collect()
    }
}

/// How often a table is checked against the store's point count (for writers in other
/// processes); this process's own writes are seen at once.
const RECOUNT: std::time::Duration = std::time::Duration::from_secs(1);

/// `snake_case`, `camelCase`, `kebab-case` and `HTTPServer` sub-words, lower-cased.
fn sub_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let boundary = i > 0 && c.is_uppercase() && {
            let prev = chars[i - 1];
            prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_lowercase()))
        };
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent swaps), or
/// `None` when it exceeds `max`.
fn distance(a: &str, b: &str, max: usize) -> Option<usize> {
    if a.is_ascii() && b.is_ascii() {
        return osa(a.as_bytes(), b.as_bytes(), max);
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    osa(&a, &b, max)
}

fn osa<T: PartialEq>(a: &[T], b: &[T], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
            row_min = row_min.min(cur[j]);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[b.len()] <= max).then_some(prev[b.len()])
}

/// `*` matches any run of characters (case-insensitive; both lower-cased already).
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

/// What the query asks for.
struct Wanted {
    name: String,
    lower: String,
    words: Vec<String>,
    container: Option<String>,
    glob: bool,
    /// Typos tolerated (0: none).
    typos: usize,
}

impl Wanted {
    fn parse(query: &str) -> Wanted {
        let q = query.trim();
        let split = q
            .rfind("::")
            .map(|i| (&q[..i], &q[i + 2..]))
            .or_else(|| q.rfind('.').map(|i| (&q[..i], &q[i + 1..])))
            .filter(|(c, n)| !c.is_empty() && !n.is_empty());
        let (container, name) = match split {
            Some((c, n)) => (Some(c.replace("::", ".").to_lowercase()), n),
            None => (None, q),
        };
        let lower = name.to_lowercase();
        Wanted {
            name: name.to_owned(),
            glob: lower.contains('*'),
            typos: match lower.chars().count() {
                0..=3 => 0,
                4..=7 => 1,
                _ => 2,
            },
            lower,
            words: sub_words(name),
            container,
        }
    }

    /// The match tier of `e` (higher is better), or `None`.
    fn score(&self, e: &Entry) -> Option<f32> {
        if let Some(c) = &self.container {
            let have = e.container.as_deref()?;
            let inside = have
                .strip_suffix(c.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
            if !inside {
                return None;
            }
        }
        let name = e.symbol.name.as_str();
        let tier = if name == self.name {
            1.0
        } else if e.lower == self.lower {
            0.95
        } else if self.glob {
            if glob(&self.lower, &e.lower) {
                0.7
            } else {
                return None;
            }
        } else if e.lower.starts_with(&self.lower) {
            // Shorter completions first; the query's own case first.
            let case = if name.starts_with(&self.name) {
                0.02
            } else {
                0.0
            };
            0.8 + case + 0.08 * (self.lower.len() as f32 / e.lower.len() as f32)
        } else if !self.words.is_empty() && words_match(&self.words, &e.words) {
            0.6
        } else if self.lower.len() >= 3 && e.lower.contains(&self.lower) {
            0.45
        } else {
            // A near miss keeps its first letter (as editors' fuzzy matchers assume),
            // which also spares the distance for almost every name.
            if self.typos == 0
                || e.lower.as_bytes().first() != self.lower.as_bytes().first()
                || e.lower.len().abs_diff(self.lower.len()) > self.typos
            {
                return None;
            }
            let d = distance(&self.lower, &e.lower, self.typos)?;
            0.35 - 0.1 * d as f32
        };
        // Declarations (prototypes) after definitions of the same tier.
        Some(if e.symbol.declaration {
            tier - 0.01
        } else {
            tier
        })
    }
}

/// Whether the query's sub-words start consecutive sub-words of the name
/// (`req_handler` → `on_request_handler`; `handler` → `requestHandler`).
fn words_match(query: &[String], name: &[String]) -> bool {
    if query.len() > name.len() {
        return false;
    }
    (0..=name.len() - query.len()).any(|start| {
        query
            .iter()
            .zip(&name[start..])
            .all(|(q, n)| n.starts_with(q.as_str()))
    })
}

impl Engine {
    /// Marks a write to the index (symbol tables are read again).
    pub(crate) fn touched(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    fn symbol_table(&self, collection: &str) -> Result<Arc<Table>, EngineError> {
        let generation = self.writes.load(Ordering::Relaxed);
        let cached = self
            .symbol_tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(collection)
            .filter(|t| t.generation == generation)
            .cloned();
        if let Some(t) = &cached {
            let mut checked = t.checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.elapsed() < RECOUNT {
                return Ok(t.clone());
            }
            if self.store.count(collection, None)? == t.points {
                *checked = std::time::Instant::now();
                return Ok(t.clone());
            }
        }
        let points = self.store.count(collection, None)?;
        let records = scroll_all(
            &*self.store,
            collection,
            None,
            1024,
            &[field::PATH, field::LANGUAGE, field::SYMBOLS],
        )?;
        let mut interned: HashMap<String, Arc<str>> = HashMap::new();
        let mut entries = Vec::new();
        for r in records {
            let Some(list) = r.payload.get(field::SYMBOLS) else {
                continue;
            };
            let Ok(symbols) = serde_json::from_value::<Vec<Symbol>>(list.clone()) else {
                continue;
            };
            let mut intern = |key: &str| -> Arc<str> {
                let v = r.payload.get(key).and_then(|v| v.as_str()).unwrap_or("");
                interned
                    .entry(v.to_owned())
                    .or_insert_with(|| Arc::from(v))
                    .clone()
            };
            let (path, language) = (intern(field::PATH), intern(field::LANGUAGE));
            for s in symbols {
                entries.push(Entry {
                    container: s.container.as_deref().map(str::to_lowercase),
                    lower: s.name.to_lowercase(),
                    words: sub_words(&s.name),
                    symbol: s,
                    path: path.clone(),
                    language: language.clone(),
                });
            }
        }
        let table = Arc::new(Table::new(generation, points, entries));
        self.symbol_tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(collection.to_owned(), table.clone());
        Ok(table)
    }

    /// How many symbols a collection (default `"default"`) holds.
    ///
    /// Errors: no such collection (`NotFound`), the store failing (`Storage`).
    pub fn symbol_count(&self, collection: Option<&str>) -> Result<usize, EngineError> {
        let c = collection.unwrap_or(super::DEFAULT_COLLECTION);
        Ok(self.symbol_table(c)?.entries.len())
    }

    /// Symbols matching the request, most relevant first.
    ///
    /// Errors: an empty query or a limit outside 1–100 (`InvalidInput`), no such
    /// collection (`NotFound`), the store failing (`Storage`).
    pub fn search_symbols(&self, req: &SymbolsRequest) -> Result<Vec<SymbolHit>, EngineError> {
        let _busy = self.foreground();
        let limit = req.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(EngineError::InvalidInput {
                field: "limit",
                message: "must be between 1 and 100".into(),
            });
        }
        if req.query.trim().is_empty() || req.query.trim() == "*" {
            return Err(EngineError::InvalidInput {
                field: "query",
                message: "must name a symbol".into(),
            });
        }
        let collection = req
            .collection
            .as_deref()
            .unwrap_or(super::DEFAULT_COLLECTION);
        let table = match self.symbol_table(collection) {
            Ok(t) => t,
            // Like `search/query`: nothing ingested yet is no symbols, not an error.
            Err(EngineError::NotFound(_)) if collection == super::DEFAULT_COLLECTION => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let wanted = Wanted::parse(&req.query);
        let prefix = req
            .path_prefix
            .as_deref()
            .map(|p| absolute(p).to_string_lossy().into_owned());
        let under = |path: &str| {
            prefix
                .as_deref()
                .is_none_or(|p| path == p || Path::new(path).starts_with(Path::new(p)))
        };
        let mut scored: Vec<(f32, &Entry)> = table
            .candidates(&wanted)
            .into_iter()
            .map(|i| &table.entries[i])
            .filter(|e| req.kinds.is_empty() || req.kinds.contains(&e.symbol.kind))
            .filter(|e| {
                req.languages.is_empty() || req.languages.iter().any(|l| **l == *e.language)
            })
            .filter(|e| under(&e.path))
            .filter_map(|e| wanted.score(e).map(|s| (s, e)))
            .collect();
        scored.sort_by(|(sa, a), (sb, b)| {
            sb.total_cmp(sa)
                .then(a.symbol.name.len().cmp(&b.symbol.name.len()))
                .then(a.path.cmp(&b.path))
                .then(a.symbol.line.cmp(&b.symbol.line))
        });
        Ok(scored
            .into_iter()
            .take(limit)
            .map(|(score, e)| SymbolHit {
                name: e.symbol.name.clone(),
                kind: e.symbol.kind.clone(),
                path: e.path.to_string(),
                line: e.symbol.line,
                end_line: e.symbol.end_line,
                language: e.language.to_string(),
                container: e.symbol.container.clone(),
                signature: e.symbol.signature.clone(),
                score,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_words_of_every_case() {
        assert_eq!(
            sub_words("on_request_handler"),
            ["on", "request", "handler"]
        );
        assert_eq!(sub_words("parseHTTPRequest"), ["parse", "http", "request"]);
        assert_eq!(sub_words("HTTPServer"), ["http", "server"]);
        assert_eq!(sub_words("urlsplit"), ["urlsplit"]);
    }

    #[test]
    fn distances_and_globs() {
        assert_eq!(distance("urlsplit", "urlspilt", 2), Some(1));
        assert_eq!(distance("urlsplit", "urlparse", 2), None);
        assert!(glob("*_handler", "on_request_handler"));
        assert!(!glob("*_handler", "handler_of"));
        assert!(glob("get*name", "getfullname"));
    }

    fn entry(name: &str, container: Option<&str>) -> Entry {
        Entry {
            container: container.map(str::to_lowercase),
            lower: name.to_lowercase(),
            words: sub_words(name),
            symbol: Symbol {
                name: name.into(),
                kind: "function".into(),
                line: 1,
                end_line: 1,
                container: container.map(str::to_owned),
                signature: None,
                declaration: false,
            },
            path: Arc::from("/a.py"),
            language: Arc::from("python"),
        }
    }

    #[test]
    fn tiers_rank_exact_prefix_words_substring_then_typos() {
        let w = Wanted::parse("urlsplit");
        let exact = w.score(&entry("urlsplit", None)).unwrap();
        let prefix = w.score(&entry("urlsplit_result", None)).unwrap();
        let typo = Wanted::parse("urlspilt")
            .score(&entry("urlsplit", None))
            .unwrap();
        let inner = Wanted::parse("split")
            .score(&entry("urlsplit", None))
            .unwrap();
        let words = Wanted::parse("reqHandler")
            .score(&entry("on_request_handler", None))
            .unwrap();
        assert!(exact > prefix && prefix > words && words > inner && inner > typo);
        assert!(
            Wanted::parse("xyz")
                .score(&entry("urlsplit", None))
                .is_none()
        );
        // Qualified: the container must match.
        let q = Wanted::parse("Shape::area");
        assert!(q.score(&entry("area", Some("geometry.Shape"))).is_some());
        assert!(q.score(&entry("area", Some("Circle"))).is_none());
        assert!(
            Wanted::parse("Shape.area")
                .score(&entry("area", None))
                .is_none()
        );
    }

    #[test]
    fn candidates_hold_every_match() {
        let names = [
            "urlsplit",
            "urlspilt",
            "on_request_handler",
            "requestHandler",
            "HTTPServer",
            "make_square",
            "makeSquare",
            "area",
            "Area",
            "perimeter",
            "__init__",
        ];
        let entries: Vec<Entry> = names.iter().map(|n| entry(n, Some("Shape"))).collect();
        let table = Table::new(0, 0, entries);
        for q in [
            "urlsplit",
            "urlspilt",
            "split",
            "reqHandler",
            "handler",
            "*_square",
            "make*",
            "http",
            "Shape.area",
            "perimiter",
            "__init__",
            "sq",
        ] {
            let w = Wanted::parse(q);
            let got = table.candidates(&w);
            for (i, e) in table.entries.iter().enumerate() {
                if w.score(e).is_some() {
                    assert!(
                        got.contains(&i),
                        "{q}: {} matches but is no candidate",
                        e.symbol.name
                    );
                }
            }
        }
    }
}
