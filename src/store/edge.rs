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
    AnyVariants, Condition as QCondition, CountRequest, CreateIndex, CreateVectorName, Direction,
    EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams, FieldCondition,
    FieldIndexOperations, Filter as QFilter, HasVectorCondition, JsonPath, Match, Modifier,
    NamedQuery, OrderBy, OrderByInterface, PayloadFieldSchema, PayloadSchemaType,
    PointInsertOperations, PointOperations, PointStruct, PointVectorsPersisted, QueryEnum,
    QueryRequest, ScoringQuery, ScrollRequest, UpdateOperation, UpdateVectorsOp, ValueVariants,
    Vector, VectorInternal, VectorNameConfig, VectorNameOperations, VectorOperations,
    VectorPersisted, VectorStructInternal, VectorStructPersisted, Vectors, WithPayloadInterface,
    WithVector,
};
use serde_json::{Map, Value};

use super::{
    CollectionSpec, Condition, Filter, Hit, Page, Point, Query, Ranking, Record, SparseVector,
    Store, StoreError, validate_name,
};

/// Name of the sparse named vector.
pub const SPARSE: &str = "sparse";
/// Name of the dense named vector.
pub const DENSE: &str = "dense";

/// A collection's metadata ([`Store::metadata`]), a JSON object beside its shard.
const METADATA_FILE: &str = "quarry-metadata.json";

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
        Condition::HasDense => {
            return Ok(QCondition::HasVector(HasVectorCondition {
                has_vector: DENSE.into(),
            }));
        }
        Condition::Keyword(f, v) => (f, Match::new_value(ValueVariants::String(v.clone()))),
        Condition::KeywordAny(f, vs) => (
            f,
            Match::new_any(AnyVariants::Strings(vs.iter().cloned().collect())),
        ),
        Condition::Integer(f, v) => (f, Match::new_value(ValueVariants::Integer(*v))),
        Condition::IntegerAtLeast(f, v) => {
            // Built from its JSON form: the range's float type is not re-exported.
            let c: FieldCondition =
                serde_json::from_value(serde_json::json!({ "key": f, "range": { "gte": v } }))
                    .map_err(backend)?;
            return Ok(QCondition::Field(c));
        }
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

fn payload_fields(fields: &[&str]) -> Result<WithPayloadInterface, StoreError> {
    Ok(if fields.is_empty() {
        WithPayloadInterface::Bool(false)
    } else {
        WithPayloadInterface::Fields(
            fields
                .iter()
                .map(|f| json_path(f))
                .collect::<Result<_, _>>()?,
        )
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
                    .chain(&spec.ordered_fields)
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
        let query = match &q.ranking {
            Ranking::Sparse(v) => sparse_query(v),
            Ranking::Dense(v) => QueryEnum::Nearest(NamedQuery {
                query: VectorInternal::from(v.clone()),
                using: Some(DENSE.to_owned()),
            }),
        };
        let request = QueryRequest {
            prefetches: vec![],
            query: Some(ScoringQuery::Vector(query)),
            filter: opt_filter(q.filter.as_ref())?,
            score_threshold: None,
            limit: q.limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
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
        let with_payload = payload_fields(fields)?;
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

    fn latest(
        &self,
        collection: &str,
        f: Option<&Filter>,
        by: &'static str,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<Record>, StoreError> {
        let c = self.get(collection)?;
        let (records, _) = c
            .shard
            .scroll(ScrollRequest {
                offset: None,
                limit: Some(limit.max(1)),
                filter: opt_filter(f)?,
                with_payload: Some(payload_fields(fields)?),
                with_vector: WithVector::Bool(false),
                order_by: Some(OrderByInterface::Struct(OrderBy {
                    key: json_path(by)?,
                    direction: Some(Direction::Desc),
                    start_from: None,
                })),
            })
            .map_err(backend)?;
        Ok(records
            .into_iter()
            .map(|r| Record {
                id: point_id(&r.id),
                payload: r.payload.map(|p| p.0).unwrap_or_else(Map::new),
            })
            .collect())
    }

    fn dense_vectors(
        &self,
        collection: &str,
        f: &Filter,
        limit: usize,
        fields: &[&str],
    ) -> Result<Vec<(Record, Vec<f32>)>, StoreError> {
        let c = self.get(collection)?;
        let f = f.clone().and(Condition::HasDense);
        let (records, _) = c
            .shard
            .scroll(ScrollRequest {
                offset: None,
                limit: Some(limit.max(1)),
                filter: Some(filter(&f)?),
                with_payload: Some(payload_fields(fields)?),
                with_vector: WithVector::Selector(vec![DENSE.into()]),
                order_by: None,
            })
            .map_err(backend)?;
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let dense = match r.vector? {
                    VectorStructInternal::Named(mut named) => match named.remove(DENSE)? {
                        VectorInternal::Dense(d) => d,
                        _ => return None,
                    },
                    _ => return None,
                };
                Some((
                    Record {
                        id: point_id(&r.id),
                        payload: r.payload.map(|p| p.0).unwrap_or_else(Map::new),
                    },
                    dense,
                ))
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
        let c = self.get(collection)?;
        let _w = lock(&c.write);
        // Under the write lock nothing is deleted between this look and the update,
        // which fails as a whole on a missing id.
        let ids: Vec<_> = vectors
            .iter()
            .map(|(id, _)| qdrant_edge::PointId::NumId(*id))
            .collect();
        let present: std::collections::HashSet<u64> = c
            .shard
            .retrieve(
                &ids,
                Some(WithPayloadInterface::Bool(false)),
                Some(WithVector::Bool(false)),
            )
            .map_err(backend)?
            .iter()
            .map(|r| point_id(&r.id))
            .collect();
        let points: Vec<PointVectorsPersisted> = vectors
            .into_iter()
            .filter(|(id, _)| present.contains(id))
            .map(|(id, v)| PointVectorsPersisted {
                id: qdrant_edge::PointId::NumId(id),
                vector: VectorStructPersisted::Named(
                    [(DENSE.to_owned(), VectorPersisted::Dense(v))].into(),
                ),
            })
            .collect();
        let n = points.len();
        if n > 0 {
            c.shard
                .update(UpdateOperation::VectorOperation(
                    VectorOperations::UpdateVectors(UpdateVectorsOp {
                        points,
                        update_filter: None,
                    }),
                ))
                .map_err(backend)?;
        }
        Ok(n)
    }

    fn add_dense(&self, collection: &str, dim: usize) -> Result<bool, StoreError> {
        let c = self.get(collection)?;
        let _w = lock(&c.write);
        if c.shard.config().vectors.contains_key(DENSE) {
            return Ok(false);
        }
        let config: VectorNameConfig = serde_json::from_value(
            serde_json::json!({ "dense": { "size": dim, "distance": "Cosine" } }),
        )
        .map_err(backend)?;
        c.shard
            .update(UpdateOperation::VectorNameOperation(
                VectorNameOperations::CreateVectorName(CreateVectorName {
                    vector_name: DENSE.into(),
                    config,
                }),
            ))
            .map_err(backend)?;
        c.shard.flush();
        Ok(true)
    }

    fn dense_dim(&self, collection: &str) -> Result<Option<usize>, StoreError> {
        let c = self.get(collection)?;
        Ok(c.shard.config().vectors.get(DENSE).map(|v| v.size))
    }

    fn metadata(&self, collection: &str) -> Result<Map<String, Value>, StoreError> {
        self.get(collection)?;
        match std::fs::read(self.dir(collection).join(METADATA_FILE)) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(StoreError::Backend(format!(
                    "collection {collection}: {METADATA_FILE} is not a JSON object"
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn set_metadata(
        &self,
        collection: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        use std::io::Write;
        let c = self.get(collection)?;
        let _w = lock(&c.write);
        let dir = self.dir(collection);
        let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(metadata).map_err(backend)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(METADATA_FILE))?;
        Ok(())
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
