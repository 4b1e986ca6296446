//! Translations between the store's types and the Qdrant API's.

use std::collections::HashMap;

use qdrant_client::Payload;
use qdrant_client::qdrant::{
    self, NamedVectors, PointId, PointStruct, Range, Vector, Vectors, r#match::MatchValue,
    point_id::PointIdOptions, vector_output, vectors_output,
};
use serde_json::{Map, Value};

use crate::store::edge::{DENSE, SPARSE};
use crate::store::{Condition, Filter, Point};

/// One condition. Strings always match as keywords (the client's own conversion would
/// make a string with a space a full-text match).
fn condition(c: &Condition) -> qdrant::Condition {
    match c {
        Condition::HasDense => qdrant::Condition::has_vector(DENSE),
        Condition::Keyword(f, v) => qdrant::Condition::matches(*f, MatchValue::Keyword(v.clone())),
        Condition::KeywordAny(f, vs) => qdrant::Condition::matches(
            *f,
            MatchValue::Keywords(qdrant::RepeatedStrings {
                strings: vs.clone(),
            }),
        ),
        Condition::Integer(f, v) => qdrant::Condition::matches(*f, MatchValue::Integer(*v)),
        Condition::IntegerAtLeast(f, v) => qdrant::Condition::range(
            *f,
            Range {
                gte: Some(*v as f64),
                ..Default::default()
            },
        ),
    }
}

/// A filter.
pub(super) fn filter(f: &Filter) -> qdrant::Filter {
    qdrant::Filter {
        must: f.must.iter().map(condition).collect(),
        must_not: f.must_not.iter().map(condition).collect(),
        ..Default::default()
    }
}

/// An optional filter.
pub(super) fn opt_filter(f: Option<&Filter>) -> Option<qdrant::Filter> {
    f.map(filter)
}

/// A point, with its named vectors.
pub(super) fn point(p: Point) -> PointStruct {
    let mut vectors: HashMap<String, Vector> = HashMap::new();
    vectors.insert(
        SPARSE.into(),
        Vector::new_sparse(p.sparse.indices, p.sparse.values),
    );
    if let Some(d) = p.dense {
        vectors.insert(DENSE.into(), Vector::new_dense(d));
    }
    PointStruct::new(p.id, NamedVectors { vectors }, Payload::from(p.payload))
}

/// The `dense` vector alone, for a vector update.
pub(super) fn dense_only(v: Vec<f32>) -> Vectors {
    let mut vectors = HashMap::new();
    vectors.insert(DENSE.to_owned(), Vector::new_dense(v));
    Vectors::from(NamedVectors { vectors })
}

/// A numeric point id (this store writes no others).
pub(super) fn id_of(id: Option<&PointId>) -> u64 {
    match id.and_then(|i| i.point_id_options.as_ref()) {
        Some(PointIdOptions::Num(n)) => *n,
        Some(PointIdOptions::Uuid(u)) => {
            u64::from_str_radix(&u.replace('-', "")[..16.min(u.len())], 16).unwrap_or(0)
        }
        None => 0,
    }
}

/// A payload as a JSON object.
pub(super) fn payload(p: HashMap<String, qdrant::Value>) -> Map<String, Value> {
    Map::from(Payload::from(p))
}

/// The `dense` vector of a point read back, if it has one.
pub(super) fn dense_of(v: Option<qdrant::VectorsOutput>) -> Option<Vec<f32>> {
    match v?.vectors_options? {
        vectors_output::VectorsOptions::Vectors(mut named) => {
            match named.vectors.remove(DENSE)?.into_vector() {
                vector_output::Vector::Dense(d) => Some(d.data),
                _ => None,
            }
        }
        vectors_output::VectorsOptions::Vector(_) => None,
    }
}

/// A JSON value as a Qdrant value (for collection metadata).
pub(super) fn value(v: Value) -> qdrant::Value {
    qdrant::Value::from(v)
}

/// A Qdrant value as JSON.
pub(super) fn json(v: qdrant::Value) -> Value {
    v.into_json()
}
