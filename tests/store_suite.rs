//! The store suite, written against the `Store` trait: every backend runs the same
//! checks. The embedded Qdrant backend runs it on a real data folder here, the Qdrant
//! server backend on a real server (skipped, saying so, where there is none).

mod common;

use std::time::Duration;

use common::qdrant::{Server, binary_or_skip};
use quarry::store::edge::EdgeStore;
use quarry::store::qdrant::{QdrantOptions, QdrantStore};
use quarry::store::{
    CollectionSpec, Condition, Filter, Point, Query, Ranking, SparseVector, Store, StoreError,
    scroll_all,
};
use serde_json::{Map, Value, json};

fn spec() -> CollectionSpec {
    CollectionSpec {
        keyword_fields: vec!["path", "tags"],
        integer_fields: vec!["n"],
        dense_dim: None,
        ordered_fields: vec!["mtime"],
    }
}

fn point(id: u64, terms: &[(u32, f32)], path: &str, n: i64, tags: &[&str]) -> Point {
    let mut payload = Map::new();
    payload.insert("path".into(), json!(path));
    payload.insert("n".into(), json!(n));
    payload.insert("tags".into(), json!(tags));
    Point {
        id,
        sparse: SparseVector {
            indices: terms.iter().map(|t| t.0).collect(),
            values: terms.iter().map(|t| t.1).collect(),
        },
        dense: None,
        payload,
    }
}

fn query(terms: &[u32], filter: Option<Filter>, limit: usize) -> Query {
    Query {
        ranking: Ranking::Sparse(SparseVector {
            indices: terms.to_vec(),
            values: vec![1.0; terms.len()],
        }),
        filter,
        limit,
    }
}

fn ids(hits: &[quarry::store::Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

/// Every backend must pass this.
fn suite(store: &dyn Store) {
    // Collections.
    assert!(store.collections().unwrap().is_empty());
    assert!(store.create_collection("c1", &spec()).unwrap());
    assert!(!store.create_collection("c1", &spec()).unwrap());
    assert!(store.create_collection("c2", &spec()).unwrap());
    assert_eq!(store.collections().unwrap(), ["c1", "c2"]);
    assert!(matches!(
        store.create_collection("bad name!", &spec()),
        Err(StoreError::InvalidName(_))
    ));
    assert!(matches!(
        store.count("nope", None),
        Err(StoreError::NoCollection(_))
    ));

    // Upsert, count, scroll.
    let points = vec![
        point(1, &[(10, 1.0), (11, 1.0)], "/a/x.py", 0, &["/a", "/a/x.py"]),
        point(2, &[(10, 1.0)], "/a/x.py", 1, &["/a", "/a/x.py"]),
        point(3, &[(10, 1.0), (12, 2.0)], "/b/y.py", 0, &["/b", "/b/y.py"]),
        point(4, &[(10, 0.5)], "/b/z.md", 0, &["/b", "/b/z.md"]),
    ];
    store.upsert("c1", points.clone()).unwrap();
    store.flush("c1").unwrap();
    assert_eq!(store.count("c1", None).unwrap(), 4);
    assert_eq!(store.count("c2", None).unwrap(), 0);
    let f = Filter::must(Condition::Keyword("path", "/a/x.py".into()));
    assert_eq!(store.count("c1", Some(&f)).unwrap(), 2);
    let f0 = Filter::must(Condition::Integer("n", 0));
    assert_eq!(store.count("c1", Some(&f0)).unwrap(), 3);
    let scoped = Filter::must(Condition::Keyword("tags", "/b".into()));
    assert_eq!(store.count("c1", Some(&scoped)).unwrap(), 2);
    let any = Filter::must(Condition::KeywordAny(
        "path",
        vec!["/a/x.py".into(), "/b/z.md".into()],
    ));
    assert_eq!(store.count("c1", Some(&any)).unwrap(), 3);
    let at_least = Filter::must(Condition::IntegerAtLeast("n", 1));
    assert_eq!(store.count("c1", Some(&at_least)).unwrap(), 1);
    // A point without the field matches no range: excluding the range keeps it.
    let none = Filter::must(Condition::IntegerAtLeast("missing", 0));
    assert_eq!(store.count("c1", Some(&none)).unwrap(), 0);
    let kept = Filter::default().and_not(Condition::IntegerAtLeast("missing", 0));
    assert_eq!(store.count("c1", Some(&kept)).unwrap(), 4);
    let not = Filter::must(Condition::Keyword("tags", "/b".into()))
        .and_not(Condition::Keyword("path", "/b/z.md".into()));
    assert_eq!(store.count("c1", Some(&not)).unwrap(), 1);
    let page = store.scroll("c1", Some(&f), None, 10, &["path"]).unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.next, None);
    for r in &page.records {
        assert_eq!(r.payload.get("path"), Some(&json!("/a/x.py")));
        assert!(r.payload.get("n").is_none(), "only the fields asked for");
    }
    // Pages: in id order, each starting where the last one said, nothing twice.
    let first = store.scroll("c1", None, None, 3, &[]).unwrap();
    assert_eq!(
        first.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(first.next, Some(4));
    let second = store.scroll("c1", None, first.next, 3, &[]).unwrap();
    assert_eq!(second.records.iter().map(|r| r.id).collect::<Vec<_>>(), [4]);
    assert_eq!(second.next, None);
    let all = scroll_all(store, "c1", None, 1, &["n"]).unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3, 4]);

    // Upsert replaces by id.
    store
        .upsert("c1", vec![point(4, &[(13, 1.0)], "/b/z.md", 0, &["/b"])])
        .unwrap();
    assert_eq!(store.count("c1", None).unwrap(), 4);

    // Ranking: the rare term (12, in one point) outweighs the common one (10, in three),
    // IDF applied by the store.
    let hits = store.query("c1", &query(&[10, 12], None, 10)).unwrap();
    assert_eq!(hits[0].id, 3, "{:?}", ids(&hits));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(hits[0].payload.get("path"), Some(&Value::from("/b/y.py")));
    let hits = store.query("c1", &query(&[11], None, 10)).unwrap();
    assert_eq!(ids(&hits), [1]);
    let hits = store
        .query(
            "c1",
            &query(
                &[10],
                Some(Filter::must(Condition::Keyword("tags", "/a".into()))),
                10,
            ),
        )
        .unwrap();
    let mut got = ids(&hits);
    got.sort();
    assert_eq!(got, [1, 2]);
    assert_eq!(store.query("c1", &query(&[10], None, 1)).unwrap().len(), 1);
    assert!(
        store
            .query("c1", &query(&[999], None, 5))
            .unwrap()
            .is_empty()
    );

    // Delete by filter.
    store.delete("c1", &f).unwrap();
    assert_eq!(store.count("c1", None).unwrap(), 2);
    store.optimize("c1").unwrap();
    assert_eq!(store.count("c1", None).unwrap(), 2);
    assert_eq!(
        ids(&store.query("c1", &query(&[12], None, 5)).unwrap()),
        [3]
    );

    // IDF is the store's: a rare term outranks a common one with twice the weight,
    // which a raw dot product would rank the other way round.
    assert!(store.create_collection("idf", &spec()).unwrap());
    store
        .upsert(
            "idf",
            vec![
                point(1, &[(10, 2.0)], "/1", 0, &[]),
                point(2, &[(10, 1.0)], "/2", 0, &[]),
                point(3, &[(10, 1.0)], "/3", 0, &[]),
                point(4, &[(12, 1.0)], "/4", 0, &[]),
            ],
        )
        .unwrap();
    let hits = store.query("idf", &query(&[10, 12], None, 10)).unwrap();
    assert_eq!(ids(&hits)[..2], [4, 1], "{hits:?}");
    // BM25's IDF, ln(1 + (N - n + 0.5) / (n + 0.5)): N = 4 points, n = 1 and 3.
    let idf = |n: f32| (1.0 + (4.0 - n + 0.5) / (n + 0.5)).ln();
    assert!((hits[0].score - idf(1.0)).abs() < 1e-3, "{hits:?}");
    assert!((hits[1].score - 2.0 * idf(3.0)).abs() < 1e-3, "{hits:?}");
    assert!(store.delete_collection("idf").unwrap());

    // Dense vectors: cosine ranking, only over points that have one; set later on
    // existing points without touching their sparse vector or payload; read back.
    let dense_spec = CollectionSpec {
        dense_dim: Some(3),
        ..spec()
    };
    assert!(store.create_collection("dense", &dense_spec).unwrap());
    assert_eq!(store.dense_dim("dense").unwrap(), Some(3));
    let at = |id, mtime: i64| {
        let mut p = point(id, &[(1, 1.0)], &format!("/{id}"), 0, &[]);
        p.payload.insert("mtime".into(), json!(mtime));
        p
    };
    let mut one = at(1, 30);
    one.dense = Some(vec![0.0, 0.0, 1.0]);
    store
        .upsert("dense", vec![one, at(2, 10), at(3, 20)])
        .unwrap();
    let dense_query = |v: [f32; 3], filter| Query {
        ranking: Ranking::Dense(v.to_vec()),
        filter,
        limit: 10,
    };
    assert_eq!(
        ids(&store
            .query("dense", &dense_query([1.0, 0.0, 0.0], None))
            .unwrap()),
        [1]
    );
    let pending = Filter::default().and_not(Condition::HasDense);
    assert_eq!(store.count("dense", Some(&pending)).unwrap(), 2);
    // Newest first by an ordered field.
    let latest = store
        .latest("dense", Some(&pending), "mtime", 10, &["path"])
        .unwrap();
    assert_eq!(latest.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(latest[0].payload["path"], json!("/3"));
    // Setting vectors: a missing id is skipped, not an error.
    let set = store
        .set_dense(
            "dense",
            vec![
                (2, vec![0.8, 0.6, 0.0]),
                (3, vec![1.0, 0.0, 0.0]),
                (99, vec![1.0, 0.0, 0.0]),
            ],
        )
        .unwrap();
    assert_eq!(set, 2);
    assert_eq!(store.count("dense", Some(&pending)).unwrap(), 0);
    assert_eq!(store.count("dense", None).unwrap(), 3);
    let hits = store
        .query("dense", &dense_query([1.0, 0.0, 0.0], None))
        .unwrap();
    assert_eq!(ids(&hits), [3, 2, 1], "{hits:?}");
    assert!((hits[0].score - 1.0).abs() < 1e-5 && (hits[1].score - 0.8).abs() < 1e-5);
    // The sparse vector and payload are intact.
    assert_eq!(
        ids(&store.query("dense", &query(&[1], None, 10)).unwrap()).len(),
        3
    );
    let f = Filter::must(Condition::Keyword("path", "/2".into()));
    assert_eq!(
        ids(&store
            .query("dense", &dense_query([1.0, 0.0, 0.0], Some(f.clone())))
            .unwrap()),
        [2]
    );
    let read = store.dense_vectors("dense", &f, 10, &["path"]).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0.id, 2);
    assert!((read[0].1[0] - 0.8).abs() < 1e-5, "{read:?}");
    // Metadata: empty, then set and read back.
    assert!(store.metadata("dense").unwrap().is_empty());
    let mut meta = Map::new();
    meta.insert("model".into(), json!({ "name": "m", "dimension": 3 }));
    store.set_metadata("dense", &meta).unwrap();
    assert_eq!(store.metadata("dense").unwrap(), meta);
    assert!(store.delete_collection("dense").unwrap());
    // A collection created without dense vectors gains them.
    assert!(store.create_collection("later", &spec()).unwrap());
    store.upsert("later", vec![at(7, 1)]).unwrap();
    assert_eq!(store.dense_dim("later").unwrap(), None);
    assert!(store.add_dense("later", 3).unwrap());
    assert!(!store.add_dense("later", 3).unwrap());
    assert_eq!(store.dense_dim("later").unwrap(), Some(3));
    assert_eq!(
        store
            .set_dense("later", vec![(7, vec![0.0, 1.0, 0.0])])
            .unwrap(),
        1
    );
    assert_eq!(
        ids(&store
            .query("later", &dense_query([0.0, 1.0, 0.0], None))
            .unwrap()),
        [7]
    );
    assert!(store.delete_collection("later").unwrap());

    // Delete collections.
    assert!(store.delete_collection("c2").unwrap());
    assert!(!store.delete_collection("c2").unwrap());
    assert_eq!(store.collections().unwrap(), ["c1"]);
}

#[test]
fn embedded_qdrant_passes_the_store_suite_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EdgeStore::open(dir.path()).unwrap();
        suite(&store);
    }
    // Reopened from disk: the same data answers.
    let store = EdgeStore::open(dir.path()).unwrap();
    // One holder at a time, also within a process: the folder's lock says who.
    match EdgeStore::open(dir.path()) {
        Err(StoreError::Locked { pid, path }) => {
            assert_eq!(pid, Some(std::process::id()));
            assert!(path.ends_with(quarry::store::edge::LOCK_FILE));
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a held folder opened twice"),
    }
    assert_eq!(store.collections().unwrap(), ["c1"]);
    assert_eq!(store.count("c1", None).unwrap(), 2);
    assert_eq!(
        ids(&store.query("c1", &query(&[12], None, 5)).unwrap()),
        [3]
    );
}

#[test]
fn dense_vectors_added_later_and_metadata_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta = Map::new();
    meta.insert("denseModel".into(), json!({ "name": "m" }));
    {
        let store = EdgeStore::open(dir.path()).unwrap();
        store.create_collection("c", &spec()).unwrap();
        store
            .upsert("c", vec![point(1, &[(1, 1.0)], "/1", 0, &[])])
            .unwrap();
        assert!(store.add_dense("c", 2).unwrap());
        assert_eq!(store.set_dense("c", vec![(1, vec![1.0, 0.0])]).unwrap(), 1);
        store.set_metadata("c", &meta).unwrap();
        store.flush("c").unwrap();
    }
    let store = EdgeStore::open(dir.path()).unwrap();
    assert_eq!(store.dense_dim("c").unwrap(), Some(2));
    assert_eq!(store.metadata("c").unwrap(), meta);
    let hits = store
        .query(
            "c",
            &Query {
                ranking: Ranking::Dense(vec![1.0, 0.0]),
                filter: None,
                limit: 5,
            },
        )
        .unwrap();
    assert_eq!(ids(&hits), [1]);
    // The sparse vector is still there after the dense one was set.
    assert_eq!(ids(&store.query("c", &query(&[1], None, 5)).unwrap()), [1]);
}

fn options(server: &Server, prefix: &str) -> QdrantOptions {
    let mut o = QdrantOptions::new(server.url());
    o.prefix = prefix.to_owned();
    o.retry = Duration::from_secs(30);
    o
}

#[test]
fn a_qdrant_server_passes_the_store_suite_and_keeps_prefixes_apart() {
    let Some(bin) = binary_or_skip("a_qdrant_server_passes_the_store_suite") else {
        return;
    };
    let server = Server::start(&bin);
    {
        let store = QdrantStore::connect(options(&server, "suite_")).unwrap();
        suite(&store);
    }
    // A new connection sees the same data.
    let store = QdrantStore::connect(options(&server, "suite_")).unwrap();
    assert_eq!(store.collections().unwrap(), ["c1"]);
    assert_eq!(store.count("c1", None).unwrap(), 2);
    assert_eq!(
        ids(&store.query("c1", &query(&[12], None, 5)).unwrap()),
        [3]
    );
    // Another prefix is another deployment: it sees none of it, and its own `c1` is
    // another collection.
    let other = QdrantStore::connect(options(&server, "other_")).unwrap();
    assert!(other.collections().unwrap().is_empty());
    assert!(other.create_collection("c1", &spec()).unwrap());
    assert_eq!(other.count("c1", None).unwrap(), 0);
    assert_eq!(store.count("c1", None).unwrap(), 2);
}

#[test]
fn a_qdrant_server_that_restarts_is_waited_for_and_one_that_is_down_is_named() {
    let Some(bin) = binary_or_skip("a_qdrant_server_that_restarts_is_waited_for") else {
        return;
    };
    let mut server = Server::start(&bin);
    let store = QdrantStore::connect(options(&server, "r_")).unwrap();
    store.create_collection("c", &spec()).unwrap();
    store
        .upsert("c", vec![point(1, &[(1, 1.0)], "/1", 0, &[])])
        .unwrap();
    // Killed and started again: calls made meanwhile are retried until it is back, and
    // nothing acknowledged is lost.
    server.kill();
    let restarted = std::thread::scope(|scope| {
        let writer = scope.spawn(|| store.upsert("c", vec![point(2, &[(1, 1.0)], "/2", 0, &[])]));
        std::thread::sleep(Duration::from_millis(500));
        server.restart();
        writer.join().unwrap()
    });
    restarted.unwrap();
    assert_eq!(store.count("c", None).unwrap(), 2);

    // Down for longer than the retry budget: `Unavailable`, naming the server.
    server.kill();
    let mut quick = options(&server, "r_");
    quick.retry = Duration::from_millis(300);
    match QdrantStore::connect(quick.clone()) {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains("unavailable") || m.contains("connect"), "{m}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to a server that is down"),
    }
    server.restart();
    let store = QdrantStore::connect(quick).unwrap();
    server.kill();
    assert!(matches!(
        store.count("c", None),
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn a_qdrant_server_with_an_api_key_refuses_a_wrong_one_by_name() {
    let Some(bin) = binary_or_skip("a_qdrant_server_with_an_api_key") else {
        return;
    };
    let server = Server::start_with_key(&bin, "s3cret-key");
    match QdrantStore::connect(options(&server, "k_")) {
        Err(StoreError::Unauthorized(m)) => assert!(m.contains("--qdrant-api-key"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("no key accepted"),
    }
    let mut wrong = options(&server, "k_");
    wrong.api_key = Some("nope".into());
    assert!(matches!(
        QdrantStore::connect(wrong),
        Err(StoreError::Unauthorized(_))
    ));
    let mut right = options(&server, "k_");
    right.api_key = Some("s3cret-key".into());
    let store = QdrantStore::connect(right).unwrap();
    assert!(store.create_collection("c", &spec()).unwrap());
}
