//! Hybrid ranking: weighted reciprocal rank fusion (Cormack, Clarke and Büttcher,
//! SIGIR 2009) of the sparse (BM25) and dense (cosine) candidate lists.
//!
//! A chunk at 1-based rank `r` of a list of weight `w` scores `w / (K + r)`; its fused
//! score is the sum over the lists that found it. The weights follow the query's
//! shape ([`weights`]): a query that looks like code trusts exact terms, a sentence
//! trusts meaning.

use crate::store::Hit;

/// The RRF constant `K` (the paper's 60).
pub const K: f32 = 60.0;

/// Which candidate list found a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// BM25 over the sparse vectors.
    Sparse,
    /// Cosine similarity over the dense vectors.
    Dense,
}

impl Source {
    /// The protocol name: `sparse` or `dense` (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sparse => "sparse",
            Source::Dense => "dense",
        }
    }
}

/// List weights for one query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of the sparse list.
    pub sparse: f32,
    /// Weight of the dense list.
    pub dense: f32,
}

/// The shape of a query, which sets the fusion weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Looks like code: one word, or a word with `_`, `::`, `.`, `(` or an inner
    /// capital (`snake_case`, `camelCase`, `Foo::bar`, `os.path`).
    Identifier,
    /// Three or more plain words.
    Sentence,
    /// Anything else (two plain words).
    Mixed,
}

/// Classifies `query` (see [`Shape`]).
pub fn shape(query: &str) -> Shape {
    let words: Vec<&str> = query.split_whitespace().collect();
    let code_like = |w: &&str| {
        w.contains('_')
            || w.contains("::")
            || w.contains('(')
            || (w.contains('.') && !w.ends_with('.'))
            || w.chars().skip(1).any(|c| c.is_uppercase()) && w.chars().any(|c| c.is_lowercase())
    };
    if words.len() <= 1 || words.iter().any(code_like) {
        Shape::Identifier
    } else if words.len() >= 3 {
        Shape::Sentence
    } else {
        Shape::Mixed
    }
}

/// The weights for a query of this shape, tuned on the 60 judged queries of
/// `cargo bench --bench semantic` (its per-shape weight grid): on identifier-shaped
/// queries BM25 alone ranks best and the embedding is kept as a light tie-breaker
/// (within one rank step of BM25 alone on them); on sentences the embedding leads
/// (MRR@10 0.815 at 0.5 : 1 against 0.792 at 1 : 1 and 0.717 for BM25 alone). Two
/// plain words, too few in the set to tune, weigh both alike.
pub fn weights(shape: Shape) -> Weights {
    match shape {
        Shape::Identifier => Weights {
            sparse: 1.0,
            dense: 0.3,
        },
        Shape::Mixed => Weights {
            sparse: 1.0,
            dense: 1.0,
        },
        Shape::Sentence => Weights {
            sparse: 0.5,
            dense: 1.0,
        },
    }
}

/// A fused hit: the store's hit (score replaced by the fused score) and the lists that
/// found it.
#[derive(Debug, Clone)]
pub struct Fused {
    /// The hit, with the fused score.
    pub hit: Hit,
    /// The lists that found it, sparse first.
    pub sources: Vec<Source>,
}

/// What the hit at 0-based `rank` of a list of weight `weight` adds to its fused
/// score: `weight / (K + rank + 1)`.
pub fn rrf(weight: f32, rank: usize) -> f32 {
    weight / (K + rank as f32 + 1.0)
}

/// Fuses the two ranked lists, best first (ties keep the sparse list's order).
pub fn fuse(sparse: Vec<Hit>, dense: Vec<Hit>, w: Weights) -> Vec<Fused> {
    let mut out: Vec<Fused> = Vec::with_capacity(sparse.len() + dense.len());
    let mut at = std::collections::HashMap::new();
    for (list, weight, source) in [
        (sparse, w.sparse, Source::Sparse),
        (dense, w.dense, Source::Dense),
    ] {
        for (rank, mut hit) in list.into_iter().enumerate() {
            let s = rrf(weight, rank);
            match at.get(&hit.id) {
                Some(&i) => {
                    let f: &mut Fused = &mut out[i];
                    f.hit.score += s;
                    if !f.sources.contains(&source) {
                        f.sources.push(source);
                    }
                }
                None => {
                    hit.score = s;
                    at.insert(hit.id, out.len());
                    out.push(Fused {
                        hit,
                        sources: vec![source],
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| b.hit.score.total_cmp(&a.hit.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64) -> Hit {
        Hit {
            id,
            score: 0.0,
            payload: Default::default(),
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(shape("urlsplit"), Shape::Identifier);
        assert_eq!(shape("parse_args options"), Shape::Identifier);
        assert_eq!(shape("Foo::bar"), Shape::Identifier);
        assert_eq!(shape("os.path join"), Shape::Identifier);
        assert_eq!(shape("HashMap entry"), Shape::Identifier);
        assert_eq!(shape("wrap text"), Shape::Mixed);
        assert_eq!(shape("order jobs by their dependencies."), Shape::Sentence);
    }

    #[test]
    fn a_hit_in_both_lists_wins_and_names_both() {
        let w = Weights {
            sparse: 1.0,
            dense: 1.0,
        };
        let fused = fuse(vec![hit(1), hit(2)], vec![hit(3), hit(2)], w);
        let ids: Vec<u64> = fused.iter().map(|f| f.hit.id).collect();
        assert_eq!(ids, [2, 1, 3]);
        assert_eq!(fused[0].sources, [Source::Sparse, Source::Dense]);
        assert_eq!(fused[1].sources, [Source::Sparse]);
        assert_eq!(fused[2].sources, [Source::Dense]);
        assert!((fused[0].hit.score - (1.0 / 62.0 + 1.0 / 62.0)).abs() < 1e-6);
    }

    #[test]
    fn weights_order_the_lists() {
        let w = Weights {
            sparse: 0.5,
            dense: 1.0,
        };
        let fused = fuse(vec![hit(1)], vec![hit(2)], w);
        assert_eq!(fused[0].hit.id, 2);
    }
}
