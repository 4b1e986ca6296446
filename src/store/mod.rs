//! The vector store behind a small trait, so that the engine never sees a backend's
//! types. [`edge::EdgeStore`] is the default: an embedded Qdrant shard per collection
//! (the `qdrant-edge` crate), persisted under the data folder.
//!
//! Every call is synchronous and may block on disk: call it from a blocking thread.

pub mod edge;
pub mod qdrant;

use serde_json::{Map, Value};

/// A sparse vector: parallel `indices` (term ids) and `values` (weights).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    /// Term ids, unique.
    pub indices: Vec<u32>,
    /// Weights, same length as `indices`.
    pub values: Vec<f32>,
}

/// One point: an id, its vectors and its payload.
#[derive(Debug, Clone)]
pub struct Point {
    /// Stable id (the engine derives it from the chunk's identity).
    pub id: u64,
    /// The `sparse` named vector (BM25 term weights; IDF is applied by the store).
    pub sparse: SparseVector,
    /// The `dense` named vector, when the collection has one.
    pub dense: Option<Vec<f32>>,
    /// Payload object.
    pub payload: Map<String, Value>,
}

/// A payload condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Keyword field equals the string (for an array field: any element equals it).
    Keyword(&'static str, String),
    /// Keyword field equals one of the strings.
    KeywordAny(&'static str, Vec<String>),
    /// Integer field equals the value.
    Integer(&'static str, i64),
    /// Integer field is at least the value (a point without the field does not match).
    IntegerAtLeast(&'static str, i64),
    /// The point has a `dense` vector.
    HasDense,
}

/// A conjunction of conditions, with exclusions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// All must hold.
    pub must: Vec<Condition>,
    /// None may hold.
    pub must_not: Vec<Condition>,
}

impl Filter {
    /// A filter of one required condition.
    pub fn must(c: Condition) -> Self {
        Filter {
            must: vec![c],
            must_not: Vec::new(),
        }
    }

    /// Adds a required condition.
    pub fn and(mut self, c: Condition) -> Self {
        self.must.push(c);
        self
    }

    /// Adds an excluded condition.
    pub fn and_not(mut self, c: Condition) -> Self {
        self.must_not.push(c);
        self
    }
}

/// What a [`Query`] ranks by.
#[derive(Debug, Clone)]
pub enum Ranking {
    /// Sparse dot product (query terms with unit weights; the store applies IDF).
    Sparse(SparseVector),
    /// Cosine similarity to the `dense` vector (points without one are not ranked).
    Dense(Vec<f32>),
}

/// A ranked query over one vector.
#[derive(Debug, Clone)]
pub struct Query {
    /// What ranks the points.
    pub ranking: Ranking,
    /// Restricts the candidates.
    pub filter: Option<Filter>,
    /// Most hits returned.
    pub limit: usize,
}

/// A scored point.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Point id.
    pub id: u64,
    /// Score (higher is better).
    pub score: f32,
    /// Payload.
    pub payload: Map<String, Value>,
}

/// A point read back without scoring.
#[derive(Debug, Clone)]
pub struct Record {
    /// Point id.
    pub id: u64,
    /// Payload (only the fields asked for).
    pub payload: Map<String, Value>,
}

/// One page of a [`Store::scroll`].
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The points, in id order.
    pub records: Vec<Record>,
    /// Where the next page starts; `None` when this was the last.
    pub next: Option<u64>,
}

/// Every point matching `filter` (page by page, `page` points at a time).
pub fn scroll_all(
    store: &dyn Store,
    collection: &str,
    filter: Option<&Filter>,
    page: usize,
    fields: &[&str],
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    let mut from = None;
    loop {
        let p = store.scroll(collection, filter, from, page, fields)?;
        out.extend(p.records);
        match p.next {
            Some(n) => from = Some(n),
            None => return Ok(out),
        }
    }
}

/// How a collection is created.
#[derive(Debug, Clone, Default)]
pub struct CollectionSpec {
    /// Payload fields to index as keywords.
    pub keyword_fields: Vec<&'static str>,
    /// Payload fields to index as integers.
    pub integer_fields: Vec<&'static str>,
    /// Dimension of the `dense` named vector (cosine), if any.
    pub dense_dim: Option<usize>,
    /// Payload fields indexed as integers with range support (for [`Store::latest`]).
    pub ordered_fields: Vec<&'static str>,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The collection does not exist.
    #[error("no such collection: {0}")]
    NoCollection(String),
    /// The collection name is not `[A-Za-z0-9_-]{1,64}`.
    #[error("invalid collection name {0:?}: use 1-64 letters, digits, '_' or '-'")]
    InvalidName(String),
    /// Another process holds the data folder (its lock file is `flock`ed).
    #[error("the data folder {} is locked by {} (one process opens a data folder at a time)", path.display(), pid.map_or_else(|| "another process".to_owned(), |p| format!("process {p}")))]
    Locked {
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
        /// The lock file.
        path: std::path::PathBuf,
    },
    /// The store's server cannot be reached (down, restarting, or refusing work):
    /// worth trying again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's server did not answer in time.
    #[error("store timeout: {0}")]
    Timeout(String),
    /// The store's server refused the credentials.
    #[error("store refused the credentials: {0}")]
    Unauthorized(String),
    /// The backend failed.
    #[error("store failure: {0}")]
    Backend(String),
    /// The file system failed.
    #[error("store I/O failure: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks a collection name: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_owned()))
    }
}

/// A vector store holding named collections of points.
pub trait Store: Send + Sync {
    /// Collection names, sorted.
    fn collections(&self) -> Result<Vec<String>, StoreError>;
    /// Creates a collection; `false` if it already existed.
    fn create_collection(&self, name: &str, spec: &CollectionSpec) -> Result<bool, StoreError>;
    /// Deletes a collection and its data; `false` if it did not exist.
    fn delete_collection(&self, name: &str) -> Result<bool, StoreError>;
    /// Inserts or replaces points, all or none.
    fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), StoreError>;
    /// Deletes the points matching `filter`.
    fn delete(&self, collection: &str, filter: &Filter) -> Result<(), StoreError>;
    /// Ranked query.
    fn query(&self, collection: &str, query: &Query) -> Result<Vec<Hit>, StoreError>;
    /// Exact number of points matching `filter` (all points without one).
    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<usize, StoreError>;
    /// One page of the points matching `filter`, in id order: up to `limit` points with
    /// ids from `from` on (the start when `None`), with only the payload `fields`, and
    /// the id to pass as `from` for the next page (`None` after the last page).
    fn scroll(
        &self,
        collection: &str,
        filter: Option<&Filter>,
        from: Option<u64>,
        limit: usize,
        fields: &[&str],
    ) -> Result<Page, StoreError>;
    /// Up to `limit` points matching `filter` with the largest values of the integer
    /// field `by` (created as one of the spec's `ordered_fields`), largest first, with
    /// only the payload `fields`.
    fn latest(
        &self,
        collection: &str,
        filter: Option<&Filter>,
        by: &'static str,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<Record>, StoreError>;
    /// Up to `limit` points matching `filter` that have a dense vector, with it and the
    /// payload `fields`.
    fn dense_vectors(
        &self,
        collection: &str,
        filter: &Filter,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<(Record, Vec<f32>)>, StoreError>;
    /// Sets the dense vector of existing points, leaving their sparse vector and
    /// payload as they are; ids no longer stored are skipped. Returns how many were set.
    fn set_dense(
        &self,
        collection: &str,
        vectors: Vec<(u64, Vec<f32>)>,
    ) -> Result<usize, StoreError>;
    /// Gives a collection created without one a `dense` vector of `dim` dimensions
    /// (cosine); `false` if it already had one.
    fn add_dense(&self, collection: &str, dim: usize) -> Result<bool, StoreError>;
    /// The dimension of the collection's `dense` vector, if it has one.
    fn dense_dim(&self, collection: &str) -> Result<Option<usize>, StoreError>;
    /// The collection's metadata object (empty when never set).
    fn metadata(&self, collection: &str) -> Result<Map<String, Value>, StoreError>;
    /// Replaces the collection's metadata object, durably.
    fn set_metadata(
        &self,
        collection: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self, collection: &str) -> Result<(), StoreError>;
    /// Compacts and indexes after bursts of writes (may take a while).
    fn optimize(&self, collection: &str) -> Result<(), StoreError>;
}
