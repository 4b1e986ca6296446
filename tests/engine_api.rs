//! The engine in process, on the real embedded store and real temporary trees (no
//! binary, no JSON-RPC): ingest, the reconcile that watches use, cancellation, and the
//! validation every front end relies on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quarry::engine::{
    Engine, EngineConfig, EngineError, FileChange, IngestDirOptions, Scope, SearchRequest,
};
use quarry::store::edge::EdgeStore;
use tokio_util::sync::CancellationToken;

fn engine(data: &Path) -> Engine {
    let store = EdgeStore::open(data).unwrap();
    Engine::new(Arc::new(store), EngineConfig::default()).unwrap()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn documents(e: &Engine) -> u64 {
    e.collections()
        .unwrap()
        .iter()
        .find(|c| c.name == "default")
        .map_or(0, |c| c.documents)
}

fn reconcile(e: &Engine, root: &Path, dir: &Path, recursive: bool) -> Vec<FileChange> {
    let scope = Scope {
        dir: dir.to_owned(),
        recursive,
    };
    let (_, changes) = e
        .ingest_tree(
            None,
            root,
            Some(&scope),
            &IngestDirOptions::default(),
            &CancellationToken::new(),
            &|_| {},
        )
        .unwrap();
    changes
}

#[test]
fn reconciling_one_folder_leaves_its_subfolders_alone() {
    let data = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path().canonicalize().unwrap();
    write(&root, "README.md", "# top\n");
    write(&root, "src/a.py", "def a(): pass\n");
    write(&root, "src/deep/b.py", "def b(): pass\n");
    let e = engine(data.path());
    let r = e
        .ingest_dir(
            None,
            &root,
            &IngestDirOptions::default(),
            &CancellationToken::new(),
            &|_| {},
        )
        .unwrap();
    assert_eq!(r.files, 3);

    // The top folder alone, then the middle one alone: nothing below them is touched.
    write(&root, "README.md", "# top\nmore\n");
    let changes = reconcile(&e, &root, &root, false);
    assert_eq!(
        changes,
        [FileChange::Written {
            path: root.join("README.md").to_string_lossy().into_owned(),
            existed: true,
            partial: None,
        }]
    );
    assert!(reconcile(&e, &root, &root.join("src"), false).is_empty());
    assert_eq!(documents(&e), 3);

    // A file gone from a folder is removed by that folder's reconcile, and only it.
    std::fs::remove_file(root.join("src/a.py")).unwrap();
    std::fs::remove_file(root.join("src/deep/b.py")).unwrap();
    let changes = reconcile(&e, &root, &root.join("src"), false);
    assert_eq!(
        changes,
        [FileChange::Removed {
            path: root.join("src/a.py").to_string_lossy().into_owned()
        }]
    );
    assert_eq!(documents(&e), 2);
    // The recursive one sees the rest.
    let changes = reconcile(&e, &root, &root.join("src"), true);
    assert_eq!(
        changes,
        [FileChange::Removed {
            path: root.join("src/deep/b.py").to_string_lossy().into_owned()
        }]
    );
    assert_eq!(documents(&e), 1);
}

#[test]
fn a_cancelled_ingest_keeps_every_file_it_reported_done() {
    let data = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        write(
            tree.path(),
            &format!("d{}/f{i}.txt", i % 10),
            &format!("file {i} says hello\n"),
        );
    }
    let e = engine(data.path());
    let cancel = CancellationToken::new();
    let reported = AtomicU64::new(0);
    let progress = |p: quarry::engine::Progress| {
        reported.store(p.files_done, Ordering::SeqCst);
        if p.files_done >= 700 {
            cancel.cancel();
        }
    };
    let r = e.ingest_dir(
        None,
        tree.path(),
        &IngestDirOptions::default(),
        &cancel,
        &progress,
    );
    assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
    let done = reported.load(Ordering::SeqCst);
    assert!((700..2000).contains(&done), "{done}");
    assert!(
        documents(&e) >= done,
        "{} documents stored, {done} reported done",
        documents(&e)
    );
}

#[test]
fn the_engine_validates_search_requests_for_every_front_end() {
    let data = tempfile::tempdir().unwrap();
    let e = engine(data.path());
    for limit in [0, 101] {
        let r = e.search(&SearchRequest {
            query: "anything".into(),
            limit: Some(limit),
            ..SearchRequest::default()
        });
        assert!(
            matches!(r, Err(EngineError::InvalidInput { field: "limit", .. })),
            "{limit}: {r:?}"
        );
    }
    let r = e.search(&SearchRequest {
        query: "  ,, ".into(),
        ..SearchRequest::default()
    });
    assert!(matches!(
        r,
        Err(EngineError::InvalidInput { field: "query", .. })
    ));
    // The default collection before any ingest: no hits, not an error.
    let r = e
        .search(&SearchRequest {
            query: "anything".into(),
            ..SearchRequest::default()
        })
        .unwrap();
    assert!(r.hits.is_empty());
    let r = e.search(&SearchRequest {
        query: "anything".into(),
        collection: Some("missing".into()),
        ..SearchRequest::default()
    });
    assert!(matches!(r, Err(EngineError::NotFound(_))), "{r:?}");
}
