//! [`Store`] on a Qdrant server or cluster, through the official `qdrant-client`
//! (gRPC). Collection `NAME` is the server's collection `PREFIX` + `NAME`, so one server
//! holds several Quarry deployments apart. The data model is the embedded store's: a
//! `sparse` named vector (BM25 weights computed by Quarry, IDF applied by the server), an
//! optional cosine `dense` vector, the same payload indexes, filters and paging, and the
//! collection's metadata in Qdrant's own collection metadata.
//!
//! Upserts are acknowledged once the server has logged them (`wait = false`), so that
//! Quarry reads and chunks the next files while the server indexes; the first read,
//! delete or flush of a collection after such writes sends a barrier (an operation that
//! matches nothing, with `wait = true`, ordered through each shard's leader like the
//! upserts, so applied after them), so what one
//! call wrote, the next reads. Every call is idempotent and retried with backoff while
//! the server is unreachable, restarting or busy, within [`QdrantOptions::retry`].
//! Several Quarry processes may share one server: there is no data-folder lock.

mod call;
mod convert;

use std::collections::HashMap;
use std::time::Duration;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    self, CollectionInfo, CountPoints, CreateCollection, CreateFieldIndexCollection,
    CreateVectorNameRequest, DeletePoints, Direction, Distance, FieldType, GetPoints, Modifier,
    OrderBy, PointId, PointVectors, PointsSelector, Query as QQuery, QueryPoints, ScrollPoints,
    SparseVectorConfig, SparseVectorParams, UpdateCollection, UpdatePointVectors, UpsertPoints,
    VectorInput, VectorParams, VectorParamsMap, VectorsConfig, WithPayloadSelector,
    WithVectorsSelector, create_vector_name_request, points_selector, vectors_config,
    with_payload_selector, with_vectors_selector,
};
use serde_json::{Map, Value};

use super::edge::{DENSE, SPARSE};
use super::{
    CollectionSpec, Filter, Hit, Page, Point, Query, Ranking, Record, Store, StoreError,
    validate_name,
};
use call::{Failure, classify, with_retry};

/// How [`QdrantStore`] reaches its server and lays out new collections.
#[derive(Debug, Clone)]
pub struct QdrantOptions {
    /// The server's gRPC URL, e.g. `http://127.0.0.1:6334` (`https://` for TLS).
    pub url: String,
    /// Sent as the `api-key` header when set.
    pub api_key: Option<String>,
    /// Prepended to every collection name on the server (`[A-Za-z0-9_-]*`).
    pub prefix: String,
    /// Shards of a new collection (the server's default when `None`).
    pub shards: Option<u32>,
    /// Copies of each shard of a new collection (cluster mode).
    pub replicas: Option<u32>,
    /// Replicas that must acknowledge a write to a new collection.
    pub write_consistency: Option<u32>,
    /// Deadline of each request to the server.
    pub timeout: Duration,
    /// How long a call keeps retrying while the server is unreachable or busy.
    pub retry: Duration,
}

impl QdrantOptions {
    /// Options for `url` with the defaults: prefix `quarry_`, the server's layout,
    /// 30 s per request, 15 s of retries.
    pub fn new(url: impl Into<String>) -> Self {
        QdrantOptions {
            url: url.into(),
            api_key: None,
            prefix: "quarry_".into(),
            shards: None,
            replicas: None,
            write_consistency: None,
            timeout: Duration::from_secs(30),
            retry: Duration::from_secs(15),
        }
    }
}

/// Most bytes of points sent in one upsert request (the server accepts 32 MiB gRPC
/// messages; smaller requests keep a retry cheap and the server's memory flat).
const UPSERT_BYTES: usize = 4 << 20;

/// Ids looked up per request by [`Store::set_dense`].
const LOOKUP_IDS: usize = 1024;

/// The store on a Qdrant server.
pub struct QdrantStore {
    client: Qdrant,
    options: QdrantOptions,
    /// Collections with upserts acknowledged but perhaps not applied yet.
    unsettled: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Runs the client's futures; the trait is synchronous.
    runtime: tokio::runtime::Runtime,
}

impl QdrantStore {
    /// Connects to the server and checks that it answers and accepts the API key.
    ///
    /// Errors: [`StoreError::Unavailable`] (nothing answers at the URL),
    /// [`StoreError::Unauthorized`] (the key is missing or wrong),
    /// [`StoreError::Backend`] (a malformed URL or prefix).
    pub fn connect(options: QdrantOptions) -> Result<Self, StoreError> {
        if !options
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(StoreError::Backend(format!(
                "invalid --qdrant-prefix {:?}: use letters, digits, '_' or '-'",
                options.prefix
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("quarry-qdrant")
            .enable_all()
            .build()?;
        // The compatibility check prints to stdout, which carries protocol messages.
        let client = Qdrant::from_url(&options.url)
            .api_key(options.api_key.clone())
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(5))
            .keep_alive_while_idle()
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::Backend(format!("invalid --qdrant-url: {e}")))?;
        let store = QdrantStore {
            client,
            options,
            unsettled: std::sync::Mutex::new(std::collections::HashSet::new()),
            runtime,
        };
        // One attempt: a server that is down at start is reported at once (the engine
        // opens again on the next call).
        let c = store.client.clone();
        call::block_on(store.runtime.handle(), async move {
            c.list_collections()
                .await
                .map_err(|e| classify("connect", None, e))
        })
        .map_err(|f| match f {
            Failure::Transient(e) | Failure::Final(e) => e,
        })?;
        Ok(store)
    }

    /// The server's name of collection `name`.
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.options.prefix)
    }

    /// Runs the request made by `make` (given a client and the server's collection
    /// name), retried while transient.
    fn call<T, F, Fut>(
        &self,
        what: &'static str,
        collection: &str,
        make: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Qdrant, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, qdrant_client::QdrantError>> + Send + 'static,
    {
        let user = collection.to_owned();
        with_retry(self.runtime.handle(), self.options.retry, || {
            let fut = make(self.client.clone(), self.name(collection));
            let user = user.clone();
            async move {
                fut.await
                    .map_err(|e| classify(what, Some(user.as_str()), e))
            }
        })
    }

    /// Waits until every write acknowledged for `collection` is applied: a delete that
    /// matches nothing, waited for, is applied after them (each shard applies its
    /// operations in order).
    fn settle(&self, collection: &str) -> Result<(), StoreError> {
        let pending = self
            .unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(collection);
        if !pending {
            return Ok(());
        }
        let nothing = qdrant::Filter {
            must: vec![qdrant::Condition::has_id([0u64])],
            must_not: vec![qdrant::Condition::has_id([0u64])],
            ..Default::default()
        };
        self.call("settle", collection, move |c, name| {
            let request = DeletePoints {
                collection_name: name,
                wait: Some(true),
                points: Some(PointsSelector {
                    points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                        nothing.clone(),
                    )),
                }),
                ordering: Some(ordering()),
                ..Default::default()
            };
            async move { c.delete_points(request).await }
        })?;
        self.unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(collection);
        Ok(())
    }

    fn info(&self, collection: &str) -> Result<CollectionInfo, StoreError> {
        self.call("collection info", collection, |c, name| async move {
            c.collection_info(name).await
        })?
        .result
        .ok_or_else(|| StoreError::Backend(format!("collection {collection}: no info")))
    }

    fn exists(&self, collection: &str) -> Result<bool, StoreError> {
        self.call("collection exists", collection, |c, name| async move {
            c.collection_exists(name).await
        })
    }

    /// Fails with `NoCollection` unless the collection exists (for calls the server
    /// would answer without complaint on a missing one).
    fn require(&self, collection: &str) -> Result<(), StoreError> {
        if self.exists(collection)? {
            Ok(())
        } else {
            Err(StoreError::NoCollection(collection.to_owned()))
        }
    }

    fn create_index(
        &self,
        collection: &str,
        field: &str,
        kind: FieldType,
    ) -> Result<(), StoreError> {
        let field = field.to_owned();
        self.call("create payload index", collection, move |c, name| {
            let request = CreateFieldIndexCollection {
                collection_name: name,
                wait: Some(true),
                field_name: field.clone(),
                field_type: Some(kind as i32),
                ..Default::default()
            };
            async move { c.create_field_index(request).await }
        })
        .map(|_| ())
    }

    fn scroll_request(
        &self,
        collection: &str,
        request: ScrollPoints,
    ) -> Result<(Vec<qdrant::RetrievedPoint>, Option<u64>), StoreError> {
        self.settle(collection)?;
        let r = self.call("scroll", collection, move |c, name| {
            let mut request = request.clone();
            request.collection_name = name;
            async move { c.scroll(request).await }
        })?;
        let next = r
            .next_page_offset
            .as_ref()
            .map(|id| convert::id_of(Some(id)));
        Ok((r.result, next))
    }
}

fn with_payload(fields: &[&str]) -> WithPayloadSelector {
    WithPayloadSelector {
        selector_options: Some(if fields.is_empty() {
            with_payload_selector::SelectorOptions::Enable(false)
        } else {
            with_payload_selector::SelectorOptions::Include(qdrant::PayloadIncludeSelector {
                fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            })
        }),
    }
}

fn without_vectors() -> WithVectorsSelector {
    WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
    }
}

fn record(p: qdrant::RetrievedPoint) -> Record {
    Record {
        id: convert::id_of(p.id.as_ref()),
        payload: convert::payload(p.payload),
    }
}

/// About how many bytes a point takes on the wire.
fn point_bytes(p: &Point) -> usize {
    let payload: usize = p
        .payload
        .iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    Value::String(s) => s.len(),
                    other => other.to_string().len(),
                }
        })
        .sum();
    64 + payload + p.sparse.indices.len() * 8 + p.dense.as_ref().map_or(0, |d| d.len() * 4)
}

impl Store for QdrantStore {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        let r = self.call("list collections", "", |c, _| async move {
            c.list_collections().await
        })?;
        let mut names: Vec<String> = r
            .collections
            .into_iter()
            .filter_map(|d| d.name.strip_prefix(&self.options.prefix).map(str::to_owned))
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn create_collection(&self, name: &str, spec: &CollectionSpec) -> Result<bool, StoreError> {
        validate_name(name)?;
        if self.exists(name)? {
            return Ok(false);
        }
        let mut sparse = HashMap::new();
        sparse.insert(
            SPARSE.to_owned(),
            SparseVectorParams {
                modifier: Some(Modifier::Idf as i32),
                ..Default::default()
            },
        );
        let vectors = spec.dense_dim.map(|dim| {
            let mut map = HashMap::new();
            map.insert(DENSE.to_owned(), dense_params(dim));
            VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap { map })),
            }
        });
        let o = &self.options;
        let request = CreateCollection {
            sparse_vectors_config: Some(SparseVectorConfig { map: sparse }),
            vectors_config: vectors,
            shard_number: o.shards,
            replication_factor: o.replicas,
            write_consistency_factor: o.write_consistency,
            ..Default::default()
        };
        let created = self.call("create collection", name, move |c, name| {
            let mut request = request.clone();
            request.collection_name = name;
            async move { c.create_collection(request).await }
        });
        let created = match created {
            Ok(_) => true,
            // Another process created it first.
            Err(StoreError::Backend(m)) if m.contains("already exists") => false,
            Err(e) => return Err(e),
        };
        // Indexes are created (again) either way: another process may have created the
        // collection and not yet its indexes; creating an existing index changes nothing.
        for f in &spec.keyword_fields {
            self.create_index(name, f, FieldType::Keyword)?;
        }
        for f in spec.integer_fields.iter().chain(&spec.ordered_fields) {
            self.create_index(name, f, FieldType::Integer)?;
        }
        Ok(created)
    }

    fn delete_collection(&self, name: &str) -> Result<bool, StoreError> {
        validate_name(name)?;
        self.unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let r = self.call("delete collection", name, |c, name| async move {
            c.delete_collection(name).await
        })?;
        Ok(r.result)
    }

    fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        // Requests of about UPSERT_BYTES, sent at once; each waits until applied.
        let mut requests: Vec<Vec<qdrant::PointStruct>> = vec![Vec::new()];
        let mut bytes = 0;
        for p in points {
            let size = point_bytes(&p);
            if bytes + size > UPSERT_BYTES && !requests.last().is_some_and(Vec::is_empty) {
                requests.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(last) = requests.last_mut() {
                last.push(convert::point(p));
            }
        }
        let requests = std::sync::Arc::new(requests);
        self.call("upsert", collection, move |c, name| {
            let requests = requests.clone();
            async move {
                let mut sent = tokio::task::JoinSet::new();
                for points in requests.iter() {
                    let request = UpsertPoints {
                        collection_name: name.clone(),
                        wait: Some(false),
                        ordering: Some(ordering()),
                        points: points.clone(),
                        ..Default::default()
                    };
                    let c = c.clone();
                    sent.spawn(async move { c.upsert_points(request).await });
                }
                while let Some(r) = sent.join_next().await {
                    r.map_err(|e| {
                        qdrant_client::QdrantError::ConversionError(format!("upsert task: {e}"))
                    })??;
                }
                Ok(())
            }
        })?;
        self.unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(collection.to_owned());
        Ok(())
    }

    fn delete(&self, collection: &str, f: &Filter) -> Result<(), StoreError> {
        self.settle(collection)?;
        let f = convert::filter(f);
        self.call("delete", collection, move |c, name| {
            let request = DeletePoints {
                collection_name: name,
                wait: Some(true),
                points: Some(PointsSelector {
                    points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                        f.clone(),
                    )),
                }),
                ..Default::default()
            };
            async move { c.delete_points(request).await }
        })
        .map(|_| ())
    }

    fn query(&self, collection: &str, q: &Query) -> Result<Vec<Hit>, StoreError> {
        let (input, using) = match &q.ranking {
            Ranking::Sparse(v) => (
                VectorInput::new_sparse(v.indices.clone(), v.values.clone()),
                SPARSE,
            ),
            Ranking::Dense(v) => (VectorInput::new_dense(v.clone()), DENSE),
        };
        self.settle(collection)?;
        let request = QueryPoints {
            query: Some(QQuery::new_nearest(input)),
            using: Some(using.to_owned()),
            filter: convert::opt_filter(q.filter.as_ref()),
            limit: Some(q.limit as u64),
            with_payload: Some(true.into()),
            with_vectors: Some(without_vectors()),
            ..Default::default()
        };
        let r = self.call("query", collection, move |c, name| {
            let mut request = request.clone();
            request.collection_name = name;
            async move { c.query(request).await }
        })?;
        Ok(r.result
            .into_iter()
            .map(|p| Hit {
                id: convert::id_of(p.id.as_ref()),
                score: p.score,
                payload: convert::payload(p.payload),
            })
            .collect())
    }

    fn count(&self, collection: &str, f: Option<&Filter>) -> Result<usize, StoreError> {
        self.settle(collection)?;
        let f = convert::opt_filter(f);
        let r = self.call("count", collection, move |c, name| {
            let request = CountPoints {
                collection_name: name,
                filter: f.clone(),
                exact: Some(true),
                ..Default::default()
            };
            async move { c.count(request).await }
        })?;
        Ok(r.result.map_or(0, |r| r.count as usize))
    }

    fn scroll(
        &self,
        collection: &str,
        f: Option<&Filter>,
        from: Option<u64>,
        limit: usize,
        fields: &[&str],
    ) -> Result<Page, StoreError> {
        let (records, next) = self.scroll_request(
            collection,
            ScrollPoints {
                filter: convert::opt_filter(f),
                offset: from.map(PointId::from),
                limit: Some(limit.clamp(1, u32::MAX as usize) as u32),
                with_payload: Some(with_payload(fields)),
                with_vectors: Some(without_vectors()),
                ..Default::default()
            },
        )?;
        Ok(Page {
            records: records.into_iter().map(record).collect(),
            next,
        })
    }

    fn latest(
        &self,
        collection: &str,
        f: Option<&Filter>,
        by: &'static str,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<Record>, StoreError> {
        let (records, _) = self.scroll_request(
            collection,
            ScrollPoints {
                filter: convert::opt_filter(f),
                limit: Some(limit.clamp(1, u32::MAX as usize) as u32),
                with_payload: Some(with_payload(fields)),
                with_vectors: Some(without_vectors()),
                order_by: Some(OrderBy {
                    key: by.to_owned(),
                    direction: Some(Direction::Desc as i32),
                    start_from: None,
                }),
                ..Default::default()
            },
        )?;
        Ok(records.into_iter().map(record).collect())
    }

    fn dense_vectors(
        &self,
        collection: &str,
        f: &Filter,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<(Record, Vec<f32>)>, StoreError> {
        let f = f.clone().and(super::Condition::HasDense);
        let (records, _) = self.scroll_request(
            collection,
            ScrollPoints {
                filter: Some(convert::filter(&f)),
                limit: Some(limit.clamp(1, u32::MAX as usize) as u32),
                with_payload: Some(with_payload(fields)),
                with_vectors: Some(WithVectorsSelector {
                    selector_options: Some(with_vectors_selector::SelectorOptions::Include(
                        qdrant::VectorsSelector {
                            names: vec![DENSE.to_owned()],
                        },
                    )),
                }),
                ..Default::default()
            },
        )?;
        Ok(records
            .into_iter()
            .filter_map(|mut p| {
                let dense = convert::dense_of(p.vectors.take())?;
                Some((record(p), dense))
            })
            .collect())
    }

    fn set_dense(
        &self,
        collection: &str,
        vectors: Vec<(u64, Vec<f32>)>,
    ) -> Result<usize, StoreError> {
        if vectors.is_empty() {
            return Ok(0);
        }
        // The update fails as a whole on a missing id: look the ids up first. A point
        // deleted between the look and the update fails it; then look again.
        self.settle(collection)?;
        let mut set = 0;
        for part in vectors.chunks(LOOKUP_IDS) {
            let mut attempts = 0;
            loop {
                let ids: Vec<PointId> = part.iter().map(|(id, _)| PointId::from(*id)).collect();
                let found = self.call("get points", collection, move |c, name| {
                    let request = GetPoints {
                        collection_name: name,
                        ids: ids.clone(),
                        with_payload: Some(false.into()),
                        with_vectors: Some(without_vectors()),
                        ..Default::default()
                    };
                    async move { c.get_points(request).await }
                })?;
                let present: std::collections::HashSet<u64> = found
                    .result
                    .iter()
                    .map(|p| convert::id_of(p.id.as_ref()))
                    .collect();
                let points: Vec<PointVectors> = part
                    .iter()
                    .filter(|(id, _)| present.contains(id))
                    .map(|(id, v)| PointVectors {
                        id: Some(PointId::from(*id)),
                        vectors: Some(convert::dense_only(v.clone())),
                    })
                    .collect();
                if points.is_empty() {
                    break;
                }
                let n = points.len();
                let updated = self.call("update vectors", collection, move |c, name| {
                    let request = UpdatePointVectors {
                        collection_name: name,
                        wait: Some(true),
                        points: points.clone(),
                        ..Default::default()
                    };
                    async move { c.update_vectors(request).await }
                });
                match updated {
                    Ok(_) => {
                        set += n;
                        break;
                    }
                    Err(StoreError::Backend(m))
                        if m.contains("No point with id") && attempts < 3 =>
                    {
                        attempts += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(set)
    }

    fn add_dense(&self, collection: &str, dim: usize) -> Result<bool, StoreError> {
        if self.dense_dim(collection)?.is_some() {
            return Ok(false);
        }
        let r = self.call("create vector", collection, move |c, name| {
            let request = CreateVectorNameRequest {
                collection_name: name,
                wait: Some(true),
                vector_name: DENSE.to_owned(),
                vector_config: Some(create_vector_name_request::VectorConfig::DenseConfig(
                    qdrant::DenseVectorCreationConfig {
                        size: dim as u64,
                        distance: Distance::Cosine as i32,
                        ..Default::default()
                    },
                )),
                ..Default::default()
            };
            async move { c.create_vector_name(request).await }
        });
        match r {
            Ok(_) => Ok(true),
            Err(StoreError::Backend(m)) if m.contains("already exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn dense_dim(&self, collection: &str) -> Result<Option<usize>, StoreError> {
        let info = self.info(collection)?;
        let vectors = info
            .config
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config);
        Ok(match vectors {
            Some(vectors_config::Config::ParamsMap(m)) => m.map.get(DENSE).map(|p| p.size as usize),
            _ => None,
        })
    }

    fn metadata(&self, collection: &str) -> Result<Map<String, Value>, StoreError> {
        let info = self.info(collection)?;
        Ok(info
            .config
            .map(|c| c.metadata)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, convert::json(v)))
            // A key set to null is a key removed (Qdrant merges metadata updates).
            .filter(|(_, v)| !v.is_null())
            .collect())
    }

    fn set_metadata(
        &self,
        collection: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let old = self.metadata(collection)?;
        let mut update: HashMap<String, qdrant::Value> = old
            .keys()
            .filter(|k| !metadata.contains_key(*k))
            .map(|k| (k.clone(), convert::value(Value::Null)))
            .collect();
        update.extend(
            metadata
                .iter()
                .map(|(k, v)| (k.clone(), convert::value(v.clone()))),
        );
        self.call("update collection", collection, move |c, name| {
            let request = UpdateCollection {
                collection_name: name,
                metadata: update.clone(),
                ..Default::default()
            };
            async move { c.update_collection(request).await }
        })
        .map(|_| ())
    }

    fn flush(&self, collection: &str) -> Result<(), StoreError> {
        // The server makes what it logged durable; settled, it is also searchable.
        self.require(collection)?;
        self.settle(collection)
    }

    fn optimize(&self, collection: &str) -> Result<(), StoreError> {
        // The server's optimizers run on their own.
        self.require(collection)
    }
}

/// Writes go through each shard's dynamically chosen leader, so a barrier is applied
/// after the upserts before it on every replica (`Strong` would pin the permanent leader
/// and fail while its node is down; `Weak` may reorder).
fn ordering() -> qdrant::WriteOrdering {
    qdrant::WriteOrdering {
        r#type: qdrant::WriteOrderingType::Medium as i32,
    }
}

fn dense_params(dim: usize) -> VectorParams {
    VectorParams {
        size: dim as u64,
        distance: Distance::Cosine as i32,
        ..Default::default()
    }
}
