//! [`Store`] on embedded Qdrant: one `qdrant-edge` shard per collection, in
//! `ROOT/collections/NAME/` (WAL + segments), reopened on start.
//!
//! `qdrant-edge` 0.7.2 is synchronous and its `flush` asserts that no other thread
//! holds the shard's WAL or segment locks, so every write, flush and optimisation of a
//! collection is serialised by that collection's own mutex; queries run concurrently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use qdrant_edge::{
    AnyVariants, Condition as QCondition, CountRequest, CreateIndex, EdgeConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParams, FieldCondition, FieldIndexOperations,
    Filter as QFilter, Fusion, JsonPath, Match, Modifier, NamedQuery, PayloadFieldSchema,
    PayloadSchemaType, PointInsertOperations, PointOperations, PointStruct, Prefetch, QueryEnum,
    QueryRequest, ScoringQuery, ScrollRequest, UpdateOperation, ValueVariants, Vector,
    VectorInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde_json::{Map, Value};

use super::{
    CollectionSpec, Condition, Filter, Hit, Page, Point, Query, Record, SparseVector, Store,
    StoreError, validate_name,
};

/// Name of the sparse named vector.
pub const SPARSE: &str = "sparse";
/// Name of the dense named vector.
pub const DENSE: &str = "dense";

/// The data folder's lock file (GRPC.md §6): an exclusive `flock` on it is held for the
/// store's whole life and released by the kernel when the process dies, so a crash never
/// leaves a stale holder. It holds the holder's pid, for error messages.
pub const LOCK_FILE: &str = "quarry.lock";

/// Takes the data folder's lock, or says who holds it.
fn lock_folder(root: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // Fixed width, written in place: a reader never sees an empty file.
            file.seek(std::io::SeekFrom::Start(0))?;
            file.write_all(format!("{:>10}\n", std::process::id()).as_bytes())?;
            file.set_len(11)?;
            Ok(file)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(StoreError::Locked {
                pid: text.trim().parse().ok(),
                path,
            })
        }
        Err(e) => Err(StoreError::Io(e.into())),
    }
}

struct Collection {
    shard: EdgeShard,
    /// Serialises writes, flushes and optimisation (see the module docs).
    write: Mutex<()>,
}

/// Embedded Qdrant store rooted at a folder.
pub struct EdgeStore {
    root: PathBuf,
    collections: Mutex<BTreeMap<String, Arc<Collection>>>,
    /// Holds the folder's `flock` while the store lives (dropped after the shards).
    _lock: std::fs::File,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_path(field: &str) -> Result<JsonPath, StoreError> {
    JsonPath::try_from(field).map_err(|_| StoreError::Backend(format!("bad field name {field}")))
}

fn condition(c: &Condition) -> Result<QCondition, StoreError> {
    let (field, m) = match c {
        Condition::Keyword(f, v) => (f, Match::new_value(ValueVariants::String(v.clone()))),
        Condition::KeywordAny(f, vs) => (
            f,
            Match::new_any(AnyVariants::Strings(vs.iter().cloned().collect())),
        ),
        Condition::Integer(f, v) => (f, Match::new_value(ValueVariants::Integer(*v))),
    };
    Ok(QCondition::Field(FieldCondition::new_match(
        json_path(field)?,
        m,
    )))
}

fn filter(f: &Filter) -> Result<QFilter, StoreError> {
    let conv = |cs: &[Condition]| -> Result<Option<Vec<QCondition>>, StoreError> {
        if cs.is_empty() {
            Ok(None)
        } else {
            cs.iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
    };
    Ok(QFilter {
        must: conv(&f.must)?,
        must_not: conv(&f.must_not)?,
        should: None,
        min_should: None,
    })
}

fn opt_filter(f: Option<&Filter>) -> Result<Option<QFilter>, StoreError> {
    f.map(filter).transpose()
}

fn point_id(id: &qdrant_edge::PointId) -> u64 {
    match id {
        qdrant_edge::PointId::NumId(n) => *n,
        // This store only writes numeric ids.
        qdrant_edge::PointId::Uuid(u) => u.as_u64_pair().0,
    }
}

fn sparse_query(v: &SparseVector) -> QueryEnum {
    QueryEnum::Nearest(NamedQuery {
        query: VectorInternal::from(qdrant_edge::SparseVector {
            indices: v.indices.clone(),
            values: v.values.clone(),
        }),
        using: Some(SPARSE.to_owned()),
    })
}

impl EdgeStore {
    /// Opens (creating if needed) the store in `root`, taking the folder's lock
    /// ([`LOCK_FILE`]), and reopens every collection.
    ///
    /// Errors: [`StoreError::Locked`] when another process holds the folder; the folder
    /// cannot be created or read, or a collection fails to load.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join("collections");
        std::fs::create_dir_all(&dir)?;
        let lock = lock_folder(root)?;
        let mut collections = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type()?.is_dir() || validate_name(&name).is_err() {
                continue;
            }
            let shard = EdgeShard::load(&entry.path(), None).map_err(|e| {
                let e = e.to_string();
                if e.contains("WouldBlock") {
                    StoreError::Backend(format!(
                        "collection {name} is in use by another process (one quarry process per data folder): {e}"
                    ))
                } else {
                    StoreError::Backend(format!("cannot open collection {name}: {e}"))
                }
            })?;
            collections.insert(
                name,
                Arc::new(Collection {
                    shard,
                    write: Mutex::new(()),
                }),
            );
        }
        Ok(EdgeStore {
            root: root.to_owned(),
            collections: Mutex::new(collections),
            _lock: lock,
        })
    }

    fn get(&self, name: &str) -> Result<Arc<Collection>, StoreError> {
        lock(&self.collections)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NoCollection(name.to_owned()))
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join("collections").join(name)
    }
}

impl Store for EdgeStore {
    fn collections(&self) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.collections).keys().cloned().collect())
    }

    fn create_collection(&self, name: &str, spec: &CollectionSpec) -> Result<bool, StoreError> {
        validate_name(name)?;
        let mut map = lock(&self.collections);
        if map.contains_key(name) {
            return Ok(false);
        }
        let dir = self.dir(name);
        if dir.exists() {
            // Left over from an interrupted create or delete.
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let mut config = EdgeConfig {
            // Chunk text lives in the payload: keep it on disk (indexed fields are in
            // RAM-resident payload indexes), so memory does not grow with the corpus.
            on_disk_payload: true,
            ..EdgeConfig::default()
        };
        config.sparse_vectors.insert(
            SPARSE.into(),
            EdgeSparseVectorParams {
                modifier: Some(Modifier::Idf),
                ..Default::default()
            },
        );
        if let Some(size) = spec.dense_dim {
            config.vectors.insert(
                DENSE.into(),
                EdgeVectorParams {
                    size,
                    distance: qdrant_edge::Distance::Cosine,
                    on_disk: None,
                    multivector_config: None,
                    datatype: None,
                    quantization_config: None,
                    hnsw_config: None,
                },
            );
        }
        let shard = EdgeShard::new(&dir, config).map_err(backend)?;
        let indexes = spec
            .keyword_fields
            .iter()
            .map(|f| (f, PayloadSchemaType::Keyword))
            .chain(
                spec.integer_fields
                    .iter()
                    .map(|f| (f, PayloadSchemaType::Integer)),
            );
        for (field, kind) in indexes {
            shard
                .update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: json_path(field)?,
                        field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                    }),
                ))
                .map_err(backend)?;
        }
        shard.flush();
        map.insert(
            name.to_owned(),
            Arc::new(Collection {
                shard,
                write: Mutex::new(()),
            }),
        );
        Ok(true)
    }

    fn delete_collection(&self, name: &str) -> Result<bool, StoreError> {
        validate_name(name)?;
        let removed = lock(&self.collections).remove(name);
        let Some(collection) = removed else {
            return Ok(false);
        };
        // Wait for writers, then drop our handle (queries in flight keep theirs).
        drop(lock(&collection.write));
        drop(collection);
        std::fs::remove_dir_all(self.dir(name))?;
        Ok(true)
    }

    fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let c = self.get(collection)?;
        let mut persisted = Vec::with_capacity(points.len());
        for p in points {
            let sparse = Vector::new_sparse(p.sparse.indices, p.sparse.values).map_err(backend)?;
            let vectors = match p.dense {
                Some(d) => Vectors::new_named([(SPARSE, sparse), (DENSE, Vector::new_dense(d))]),
                None => Vectors::new_named([(SPARSE, sparse)]),
            };
            persisted.push(PointStruct::new(p.id, vectors, Value::Object(p.payload)).into());
        }
        let _w = lock(&c.write);
        c.shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(persisted)),
            ))
            .map_err(backend)
    }

    fn delete(&self, collection: &str, f: &Filter) -> Result<(), StoreError> {
        let c = self.get(collection)?;
        let f = filter(f)?;
        let _w = lock(&c.write);
        c.shard
            .update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(f),
            ))
            .map_err(backend)
    }

    fn query(&self, collection: &str, q: &Query) -> Result<Vec<Hit>, StoreError> {
        let c = self.get(collection)?;
        let f = opt_filter(q.filter.as_ref())?;
        let request = match &q.dense {
            None => QueryRequest {
                prefetches: vec![],
                query: Some(ScoringQuery::Vector(sparse_query(&q.sparse))),
                filter: f,
                score_threshold: None,
                limit: q.limit,
                offset: 0,
                params: None,
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(true),
            },
            Some(dense) => {
                let candidates = (q.limit * 4).max(20);
                let prefetch = |query| Prefetch {
                    prefetches: vec![],
                    query: Some(ScoringQuery::Vector(query)),
                    limit: candidates,
                    params: None,
                    filter: f.clone(),
                    score_threshold: None,
                };
                QueryRequest {
                    prefetches: vec![
                        prefetch(sparse_query(&q.sparse)),
                        prefetch(QueryEnum::Nearest(NamedQuery {
                            query: VectorInternal::from(dense.clone()),
                            using: Some(DENSE.to_owned()),
                        })),
                    ],
                    query: Some(ScoringQuery::Fusion(Fusion::Rrf {
                        k: 60,
                        weights: None,
                    })),
                    filter: None,
                    score_threshold: None,
                    limit: q.limit,
                    offset: 0,
                    params: None,
                    with_vector: WithVector::Bool(false),
                    with_payload: WithPayloadInterface::Bool(true),
                }
            }
        };
        let points = c.shard.query(request).map_err(backend)?;
        Ok(points
            .into_iter()
            .map(|p| Hit {
                id: point_id(&p.id),
                score: p.score,
                payload: p.payload.map(|p| p.0).unwrap_or_default(),
            })
            .collect())
    }

    fn count(&self, collection: &str, f: Option<&Filter>) -> Result<usize, StoreError> {
        let c = self.get(collection)?;
        c.shard
            .count(CountRequest {
                filter: opt_filter(f)?,
                exact: true,
            })
            .map_err(backend)
    }

    fn scroll(
        &self,
        collection: &str,
        f: Option<&Filter>,
        from: Option<u64>,
        limit: usize,
        fields: &[&str],
    ) -> Result<Page, StoreError> {
        let c = self.get(collection)?;
        let with_payload = if fields.is_empty() {
            WithPayloadInterface::Bool(false)
        } else {
            WithPayloadInterface::Fields(
                fields
                    .iter()
                    .map(|f| json_path(f))
                    .collect::<Result<_, _>>()?,
            )
        };
        let (records, next) = c
            .shard
            .scroll(ScrollRequest {
                offset: from.map(qdrant_edge::PointId::NumId),
                limit: Some(limit.max(1)),
                filter: opt_filter(f)?,
                with_payload: Some(with_payload),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })
            .map_err(backend)?;
        Ok(Page {
            records: records
                .into_iter()
                .map(|r| Record {
                    id: point_id(&r.id),
                    payload: r.payload.map(|p| p.0).unwrap_or_else(Map::new),
                })
                .collect(),
            next: next.as_ref().map(point_id),
        })
    }

    fn flush(&self, collection: &str) -> Result<(), StoreError> {
        let c = self.get(collection)?;
        let _w = lock(&c.write);
        c.shard.flush();
        Ok(())
    }

    fn optimize(&self, collection: &str) -> Result<(), StoreError> {
        let c = self.get(collection)?;
        let _w = lock(&c.write);
        c.shard.optimize().map_err(backend)?;
        c.shard.flush();
        Ok(())
    }
}
