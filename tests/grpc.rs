//! `quarry.v1.Quarry` over the real local endpoint (GRPC.md §1–4): a real
//! `quarry daemon` (and `quarry serve`) process, its Unix socket, a tonic client.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, channel, discover};
use common::{Sidecar, WAIT, bin};
use quarry::grpc::proto::quarry_client::QuarryClient;
use quarry::grpc::proto::{self, ingest_dir_update, watch_update};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

/// The status's `google.rpc.ErrorInfo` reason (the protocol's kind).
fn reason(s: &Status) -> String {
    let info = s.get_details_error_info().expect("an ErrorInfo detail");
    assert_eq!(info.domain, "quarry");
    info.reason
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_errors_and_health_on_the_unix_socket() {
    let d = Daemon::start();
    let ch = channel(&d.socket).await;
    let mut health = HealthClient::new(ch.clone());
    for service in ["", "quarry.v1.Quarry"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let mut q = QuarryClient::new(ch);
    let r = q
        .create_collection(proto::CreateCollectionRequest { name: "c".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(r.created);
    let r = q
        .index_file(proto::IndexFileRequest {
            path: "/notes/okapi.txt".into(),
            collection: "c".into(),
            content: Some(b"the okapi lives in the forest\n".to_vec()),
            metadata: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.chunks, r.unchanged), (1, false));
    let r = q
        .search(proto::SearchRequest {
            query: "okapi".into(),
            collection: "c".into(),
            limit: 0,
            filter: None,
            mode: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let hits = r.hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, "/notes/okapi.txt");
    // No model here: BM25, and the hit says which list found it.
    assert_eq!(r.mode, "sparse");
    assert_eq!(hits[0].sources, ["sparse"]);
    // Plain text has no location; a document's hit says where it is.
    assert_eq!(hits[0].location, None);
    let html = b"<html><body><h1>Zoo</h1><h2>Forest animals</h2><p>An okapi eats leaves.</p></body></html>";
    q.index_file(proto::IndexFileRequest {
        path: "/docs/zoo.html".into(),
        collection: "docs".into(),
        content: Some(html.to_vec()),
        metadata: None,
    })
    .await
    .unwrap();
    let r = q
        .search(proto::SearchRequest {
            query: "okapi leaves".into(),
            collection: "docs".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.hits[0].snippet, "Forest animals\nAn okapi eats leaves.");
    assert_eq!(
        r.hits[0].location,
        Some(proto::Location {
            heading: Some("Zoo > Forest animals".into()),
            ..Default::default()
        })
    );
    // Symbols stream, most relevant first.
    let r = q
        .index_file(proto::IndexFileRequest {
            path: "/src/shapes.py".into(),
            collection: "code".into(),
            content: Some(b"class Shape:\n    def area(self):\n        return 0\n\ndef area_of(s):\n    return 1\n".to_vec()),
            metadata: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.chunks, 1);
    let mut stream = q
        .search_symbols(proto::SymbolsRequest {
            query: "area".into(),
            collection: "code".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut symbols = Vec::new();
    while let Some(s) = stream.message().await.unwrap() {
        symbols.push((s.name, s.kind, s.container, s.line, s.end_line));
    }
    assert_eq!(
        symbols,
        [
            ("area".into(), "method".into(), "Shape".into(), 2, 3),
            ("area_of".into(), "function".into(), String::new(), 5, 6)
        ]
    );
    for (mode, reason_kind) in [("dense", "invalid_params"), ("semantic", "invalid_params")] {
        let e = q
            .search(proto::SearchRequest {
                query: "okapi".into(),
                collection: "c".into(),
                mode: mode.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::InvalidArgument, reason_kind),
            "{mode}: {e:?}"
        );
    }
    let cs = q
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    assert!(
        cs.iter()
            .any(|c| c.name == "c" && c.documents == 1 && c.points == 1 && c.dense.is_none())
    );

    // Errors: the status of the kind, and ErrorInfo naming the kind.
    let e = q
        .search(proto::SearchRequest {
            query: "okapi".into(),
            collection: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::NotFound, "not_found")
    );
    let e = q
        .search(proto::SearchRequest {
            query: "okapi".into(),
            limit: 101,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "invalid_params")
    );
    let e = q
        .index_file(proto::IndexFileRequest {
            path: "/blob.bin.txt".into(),
            content: Some(vec![0, 1, 2, 0xff]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "unsupported_content")
    );
    let r = q
        .delete_documents(proto::DeleteDocumentsRequest {
            path: Some("/notes".into()),
            document_id: None,
            collection: "c".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted, 1);
    assert!(
        q.delete_collection(proto::DeleteCollectionRequest { name: "c".into() })
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_dir_streams_progress_then_one_result_and_bulk_index_reports_bad_files() {
    let d = Daemon::start();
    let mut q = QuarryClient::new(channel(&d.socket).await);
    let mut updates = q
        .ingest_dir(proto::IngestDirRequest {
            root: corpus().display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut progress = Vec::new();
    let mut results = Vec::new();
    while let Some(u) = updates.message().await.unwrap() {
        assert!(results.is_empty(), "a message after the result");
        match u.update.unwrap() {
            ingest_dir_update::Update::Progress(p) => progress.push(p.progress),
            ingest_dir_update::Update::Result(r) => results.push(r),
        }
    }
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].files, 10);
    assert!(!progress.is_empty() && progress.windows(2).all(|w| w[0] < w[1]));
    let hits = q
        .search(proto::SearchRequest {
            query: "split a string using shell-like syntax".into(),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(hits[0].path.ends_with("/shlex.py"), "{hits:?}");

    // BulkIndex: files sent by a client that does not share the file system.
    let files = vec![
        proto::IndexFileRequest {
            path: "/remote/a.md".into(),
            collection: "bulk".into(),
            content: Some(b"# A\nthe quokka smiles\n".to_vec()),
            metadata: None,
        },
        proto::IndexFileRequest {
            path: "/remote/b.txt".into(),
            collection: "bulk".into(),
            content: Some(vec![0, 0, 0]),
            metadata: None,
        },
        proto::IndexFileRequest {
            path: "/remote/c.txt".into(),
            collection: "bulk".into(),
            content: Some(b"the wombat digs\n".to_vec()),
            metadata: None,
        },
    ];
    let r = q
        .bulk_index(tokio_stream::iter(files))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.total, r.indexed, r.failed, r.unchanged), (3, 2, 1, 0));
    assert_eq!(r.errors[0].path, "/remote/b.txt");
    assert_eq!(r.errors[0].kind, "unsupported_content");

    // Each file lands in its own collection, however the stream mixes them.
    let mixed = (0..6).map(|i| {
        let (collection, word) = if i % 2 == 0 {
            ("north", "walrus")
        } else {
            ("south", "penguin")
        };
        proto::IndexFileRequest {
            path: format!("/mixed/{collection}-{i}.txt"),
            collection: collection.into(),
            content: Some(format!("the {word} number {i}\n").into_bytes()),
            metadata: None,
        }
    });
    let r = q
        .bulk_index(tokio_stream::iter(mixed.collect::<Vec<_>>()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.total, r.indexed), (6, 6));
    for (collection, word, other) in [
        ("north", "walrus", "penguin"),
        ("south", "penguin", "walrus"),
    ] {
        let hits = q
            .search(proto::SearchRequest {
                query: format!("{word} {other} number"),
                collection: collection.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .hits;
        let paths: Vec<_> = hits.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{collection}: {paths:?}");
        assert!(
            paths
                .iter()
                .all(|p| p.starts_with(&format!("/mixed/{collection}-"))),
            "{collection}: {paths:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_the_work_and_a_watch_lives_as_long_as_its_call() {
    let d = Daemon::start();
    let mut q = QuarryClient::new(channel(&d.socket).await);
    let tree = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        std::fs::write(
            tree.path().join(format!("f{i}.txt")),
            format!("file {i} of a large tree\n"),
        )
        .unwrap();
    }
    let mut req = Request::new(proto::IngestDirRequest {
        root: tree.path().display().to_string(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(200));
    let mut updates = q.ingest_dir(req).await.unwrap().into_inner();
    let e = loop {
        match updates.message().await {
            Ok(Some(u)) => assert!(
                !matches!(u.update, Some(ingest_dir_update::Update::Result(_))),
                "finished before its deadline"
            ),
            Ok(None) => panic!("the stream ended without an answer"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert_eq!(reason(&e), "timeout");

    let watched = tempfile::tempdir().unwrap();
    let root = watched.path().canonicalize().unwrap();
    let mut events = q
        .watch(proto::WatchRequest {
            root: root.display().to_string(),
            debounce_ms: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = events.message().await.unwrap().unwrap();
    let Some(watch_update::Update::Started(started)) = first.update else {
        panic!("first message: {first:?}");
    };
    assert!(started.watch_id.starts_with('w'));
    // The reconcile's progress ends with progress == total: the watch is in step.
    loop {
        let u = tokio::time::timeout(WAIT, events.message())
            .await
            .expect("no progress")
            .unwrap()
            .unwrap();
        match u.update {
            Some(watch_update::Update::Progress(p)) if p.progress == p.total => break,
            Some(watch_update::Update::Progress(_)) => {}
            other => panic!("before the reconcile ended: {other:?}"),
        }
    }
    std::fs::write(root.join("new.txt"), "the pangolin curls\n").unwrap();
    let event = loop {
        let u = tokio::time::timeout(WAIT, events.message())
            .await
            .expect("no event")
            .unwrap()
            .unwrap();
        if let Some(watch_update::Update::Event(e)) = u.update {
            break e;
        }
    };
    assert_eq!((event.kind.as_str(), event.indexed), ("created", true));
    assert!(event.path.ends_with("/new.txt"));
    assert_eq!(event.error, "");
}

#[test]
fn serve_announces_its_endpoint_and_daemon_drains_on_sigterm() {
    let run = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("serve").env("XDG_RUNTIME_DIR", run.path());
    let mut s = Sidecar::spawn_cmd(cmd);
    let endpoint = s.ready["endpoint"].as_str().unwrap().to_owned();
    let socket = PathBuf::from(endpoint.strip_prefix("unix:").unwrap());
    assert_eq!(
        socket,
        run.path().join("quarry").join(format!("{}.sock", s.pid()))
    );
    assert!(quarry::grpc::endpoint::is_socket(&socket));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&run.path().join("quarry")), 0o700);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut q = QuarryClient::new(channel(&socket).await);
        // The same engine as the host's stdio: what one ingests, the other finds.
        q.index_file(proto::IndexFileRequest {
            path: "/x/ibis.txt".into(),
            content: Some(b"the ibis wades\n".to_vec()),
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let v = s.request(1, "search/query", serde_json::json!({"query": "ibis"}));
    assert_eq!(v["result"]["hits"][0]["path"], "/x/ibis.txt", "{v}");
    s.close_stdin();
    assert_eq!(s.wait_exit().code(), Some(0));
    assert!(!socket.exists(), "the socket outlived its server");

    let mut d = Daemon::start();
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!d.socket.exists());
}

#[test]
fn the_registry_lists_live_instances_and_drops_dead_ones() {
    let mut d = Daemon::start();
    let pid = d.child.id();
    let entry = d.run.join("quarry/instances").join(format!("{pid}.json"));
    let deadline = Instant::now() + WAIT;
    while !entry.exists() {
        assert!(Instant::now() < deadline, "no registry entry");
        std::thread::sleep(Duration::from_millis(10));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let live = discover(&d.run);
    assert_eq!(live.len(), 1, "{live:?}");
    let e = &live[0];
    assert_eq!(e["registryVersion"], 1);
    assert_eq!(e["pid"], pid);
    assert_eq!(e["unix"], d.socket.display().to_string());
    assert_eq!(e["status"], "serving");
    assert_eq!(e["role"], "owner");
    assert_eq!(e["tcp"], serde_json::Value::Null);
    assert!(e["processStart"].as_u64().unwrap() > 0);
    assert!(e["startedAt"].as_str().unwrap().ends_with('Z'));
    // A pid that is alive but started at another time is not that Quarry.
    let mut reused = e.clone();
    reused["processStart"] = serde_json::json!(e["processStart"].as_u64().unwrap() + 1);
    reused["pid"] = serde_json::json!(std::process::id());
    let fake = d
        .run
        .join("quarry/instances")
        .join(format!("{}.json", std::process::id()));
    std::fs::write(&fake, serde_json::to_vec(&reused).unwrap()).unwrap();
    assert_eq!(discover(&d.run).len(), 1);
    assert!(!fake.exists(), "a stale entry is deleted by its reader");
    // kill -9: the entry stays behind, readers ignore it and delete it.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    assert!(entry.exists());
    assert!(discover(&d.run).is_empty());
    assert!(!entry.exists());
}

#[test]
fn the_proto_names_every_rpc_of_the_contract() {
    use prost::Message;
    let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let file = fds
        .file
        .iter()
        .find(|f| f.package() == "quarry.v1")
        .unwrap();
    let service = file.service.iter().find(|s| s.name() == "Quarry").unwrap();
    let rpcs: Vec<(&str, bool, bool)> = service
        .method
        .iter()
        .map(|m| (m.name(), m.client_streaming(), m.server_streaming()))
        .collect();
    // GRPC.md §1: names and streaming shapes are binding.
    assert_eq!(
        rpcs,
        [
            ("ListCollections", false, false),
            ("CreateCollection", false, false),
            ("DeleteCollection", false, false),
            ("IndexFile", false, false),
            ("IngestDir", false, true),
            ("BulkIndex", true, false),
            ("SyncIndex", true, true),
            ("DeleteDocuments", false, false),
            ("Search", false, false),
            ("SearchSymbols", false, true),
            ("Watch", false, true),
            ("Stats", false, false),
            ("Session", true, true),
        ]
    );
    // The descriptor carries the documentation (reflection clients show it).
    assert!(file.source_code_info.is_some());
}

/// One `SyncIndex` round: the manifest of `files` under `prefix`, then the content of
/// every needed path (all of them, or only the first `send_only` before hanging up).
async fn sync(
    q: &mut QuarryClient<Channel>,
    prefix: &str,
    files: &[(&str, &str)],
    send_only: Option<usize>,
) -> (Vec<String>, Option<proto::SyncResult>, Vec<proto::FileAck>) {
    use proto::sync_request::Request as In;
    use proto::sync_response::Response as Out;
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::SyncRequest>(16);
    let manifest = proto::Manifest {
        collection: "synced".into(),
        prefix: prefix.into(),
        entries: files
            .iter()
            .map(|(p, c)| proto::ManifestEntry {
                path: format!("{prefix}/{p}"),
                sha256: quarry::engine::sha256_hex(c.as_bytes()),
            })
            .collect(),
        more: false,
    };
    tx.send(proto::SyncRequest {
        request: Some(In::Manifest(manifest)),
    })
    .await
    .unwrap();
    let mut out = q
        .sync_index(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(Out::Need(need)) = out.message().await.unwrap().unwrap().response else {
        panic!("the first answer must be Need");
    };
    for (sent, path) in need.paths.iter().enumerate() {
        if send_only.is_some_and(|n| sent == n) {
            // Hang up mid-sync, once the files sent so far are acknowledged.
            let mut acks = Vec::new();
            while acks.len() < sent {
                if let Some(Out::Ack(a)) = out.message().await.unwrap().unwrap().response {
                    acks.push(a);
                }
            }
            drop(tx);
            drop(out);
            return (need.paths.clone(), None, acks);
        }
        let name = path.strip_prefix(&format!("{prefix}/")).unwrap();
        let content = files.iter().find(|(p, _)| *p == name).unwrap().1;
        tx.send(proto::SyncRequest {
            request: Some(In::File(proto::FileContent {
                path: path.clone(),
                content: content.as_bytes().to_vec(),
            })),
        })
        .await
        .unwrap();
    }
    tx.send(proto::SyncRequest {
        request: Some(In::Done(proto::Done {})),
    })
    .await
    .unwrap();
    let mut acks = Vec::new();
    let mut result = None;
    while let Some(m) = out.message().await.unwrap() {
        match m.response.unwrap() {
            Out::Ack(a) => acks.push(a),
            Out::Progress(_) => {}
            Out::Result(r) => result = Some(r),
            Out::Need(_) => panic!("a second Need"),
        }
    }
    (need.paths, result, acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_index_sends_only_what_changed_and_a_hang_up_leaves_whole_files() {
    let d = Daemon::start();
    let mut q = QuarryClient::new(channel(&d.socket).await);
    let prefix = "/client/proj";
    let search = |q: &mut QuarryClient<Channel>, word: &str| {
        let mut q = q.clone();
        let word = word.to_owned();
        async move {
            q.search(proto::SearchRequest {
                query: word,
                collection: "synced".into(),
                limit: 10,
                filter: None,
                mode: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .hits
            .into_iter()
            .map(|h| h.path)
            .collect::<Vec<_>>()
        }
    };
    let v1 = [
        ("a.md", "# A\nthe aardvark\n"),
        ("b.txt", "the badger\n"),
        ("src/c.py", "def civet(): pass\n"),
    ];
    let (need, result, acks) = sync(&mut q, prefix, &v1, None).await;
    assert_eq!(need.len(), 3);
    let r = result.unwrap();
    assert_eq!(
        (r.needed, r.indexed, r.deleted, r.unchanged, r.failed),
        (3, 3, 0, 0, 0)
    );
    assert!(
        acks.iter().all(|a| a.indexed && a.error.is_empty()),
        "{acks:?}"
    );
    // Nothing changed: nothing is asked for.
    let (need, result, _) = sync(&mut q, prefix, &v1, None).await;
    assert!(need.is_empty());
    let r = result.unwrap();
    assert_eq!((r.needed, r.unchanged), (0, 3));
    // b changed, c gone: only b is sent, c is deleted.
    let v2 = [("a.md", "# A\nthe aardvark\n"), ("b.txt", "the bonobo\n")];
    let (need, result, _) = sync(&mut q, prefix, &v2, None).await;
    assert_eq!(need, ["/client/proj/b.txt"]);
    let r = result.unwrap();
    assert_eq!((r.indexed, r.deleted, r.unchanged), (1, 1, 1));
    assert_eq!(search(&mut q, "bonobo").await, ["/client/proj/b.txt"]);
    assert!(search(&mut q, "badger").await.is_empty());
    assert!(search(&mut q, "civet").await.is_empty());
    // A client that hangs up after one of two files: the first is in, the second is
    // still at its old content.
    let v3 = [("a.md", "# A\nthe axolotl\n"), ("b.txt", "the buffalo\n")];
    let (need, result, acks) = sync(&mut q, prefix, &v3, Some(1)).await;
    assert_eq!(need.len(), 2);
    assert!(result.is_none());
    assert!(acks.len() == 1 && acks[0].indexed, "{acks:?}");
    // Exactly one file moved to its new content; the other kept its old one whole.
    let axolotl = search(&mut q, "axolotl").await;
    let buffalo = search(&mut q, "buffalo").await;
    assert_eq!(axolotl.len() + buffalo.len(), 1, "{axolotl:?} {buffalo:?}");
    let old_a = search(&mut q, "aardvark").await;
    let old_b = search(&mut q, "bonobo").await;
    assert_eq!(old_a.len() + old_b.len(), 1, "{old_a:?} {old_b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_request_ids_priorities_and_overload() {
    let d = Daemon::start_with(
        &["--max-concurrency", "1", "--max-queue", "0"],
        &[("QUARRY_TOKEN", "s3cret")],
    );
    let ch = channel(&d.socket).await;
    // Health and reflection stay open; the engine service wants the token.
    let mut health = HealthClient::new(ch.clone());
    assert!(
        health
            .check(HealthCheckRequest {
                service: "quarry.v1.Quarry".into(),
            })
            .await
            .is_ok()
    );
    let mut q = QuarryClient::new(ch);
    let call = |token: Option<&str>, id: Option<&str>, priority: Option<&str>| {
        let mut r = Request::new(proto::ListCollectionsRequest {});
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if let Some(id) = id {
            r.metadata_mut().insert("x-request-id", id.parse().unwrap());
        }
        if let Some(p) = priority {
            r.metadata_mut()
                .insert("quarry-priority", p.parse().unwrap());
        }
        r
    };
    for token in [None, Some("wrong"), Some("s3cret ")] {
        let e = q
            .list_collections(call(token, None, None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}");
    }
    // The request id is echoed, or generated when absent.
    let r = q
        .list_collections(call(Some("s3cret"), Some("req-42"), None))
        .await
        .unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "req-42");
    let r = q
        .list_collections(call(Some("s3cret"), None, Some("high")))
        .await
        .unwrap();
    let generated = r.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(generated.len(), 36, "{generated}");
    let e = q
        .list_collections(call(Some("s3cret"), None, Some("urgent")))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "invalid_params")
    );
    // The registry entry carries the token for local clients (0600).
    let entry = d
        .run
        .join("quarry/instances")
        .join(format!("{}.json", d.child.id()));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
    assert_eq!(v["token"], "s3cret");

    // One slot, no queue: while an ingest holds the slot, another call is refused.
    let tree = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        std::fs::write(tree.path().join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let mut ingest = Request::new(proto::IngestDirRequest {
        root: tree.path().display().to_string(),
        ..Default::default()
    });
    ingest
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let mut updates = q.ingest_dir(ingest).await.unwrap().into_inner();
    let first = updates.message().await.unwrap().unwrap();
    assert!(matches!(
        first.update,
        Some(ingest_dir_update::Update::Progress(_))
    ));
    let e = q
        .list_collections(call(Some("s3cret"), None, None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::ResourceExhausted, "overloaded")
    );
    assert_eq!(
        e.get_details_error_info()
            .unwrap()
            .metadata
            .get("queueLimit")
            .map(String::as_str),
        Some("0")
    );
    drop(updates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_a_token_and_confines_paths_to_the_allowed_roots() {
    // Anything but loopback without TLS is refused at start.
    let out = Command::new(bin())
        .args(["daemon", "--grpc-listen", "0.0.0.0:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("XDG_RUNTIME_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS"));

    let allowed = tempfile::tempdir().unwrap();
    let root = allowed.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/in.txt"), "the ibex climbs\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "the secret\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    let root_arg = root.display().to_string();
    let d = Daemon::start_with(
        &["--grpc-listen", "127.0.0.1:0", "--allow-root", &root_arg],
        &[],
    );
    let entry = d
        .run
        .join("quarry/instances")
        .join(format!("{}.json", d.child.id()));
    let deadline = Instant::now() + WAIT;
    while !entry.exists() {
        assert!(Instant::now() < deadline, "no registry entry");
        std::thread::sleep(Duration::from_millis(10));
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    let tcp = v["tcp"].as_str().unwrap().to_owned();
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(tcp.starts_with("127.0.0.1:") && token.len() >= 32, "{v}");
    let ch = Endpoint::from_shared(format!("http://{tcp}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut q = QuarryClient::new(ch);
    let e = q
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let authed = |root: String| {
        let mut r = Request::new(proto::IngestDirRequest {
            root,
            ..Default::default()
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    // Inside the root: served.
    let mut updates = q
        .ingest_dir(authed(root.join("docs").display().to_string()))
        .await
        .unwrap()
        .into_inner();
    while let Some(u) = updates.message().await.unwrap() {
        if let Some(ingest_dir_update::Update::Result(r)) = u.update {
            assert_eq!(r.files, 1);
        }
    }
    // Outside, through `..`, through a symlink: refused before anything is read.
    for escape in [
        outside.path().display().to_string(),
        format!(
            "{}/docs/../../{}",
            root.display(),
            outside.path().file_name().unwrap().to_string_lossy()
        ),
        root.join("escape").display().to_string(),
    ] {
        let e = q.ingest_dir(authed(escape.clone())).await.unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::InvalidArgument, "invalid_path"),
            "{escape}"
        );
    }
    // The local socket is not confined, but it wants the same token.
    let mut local = QuarryClient::new(channel(&d.socket).await);
    let e = local
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_open_streams_unavailable_and_health_says_not_serving() {
    let mut d = Daemon::start_with(&["--shutdown-grace-ms", "3000"], &[]);
    let ch = channel(&d.socket).await;
    let mut q = QuarryClient::new(ch.clone());
    let watched = tempfile::tempdir().unwrap();
    let mut events = q
        .watch(proto::WatchRequest {
            root: watched.path().display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = events.message().await.unwrap().unwrap();
    assert!(matches!(
        first.update,
        Some(watch_update::Update::Started(_))
    ));
    let mut health = HealthClient::new(ch);
    let mut statuses = health
        .watch(HealthCheckRequest {
            service: "quarry.v1.Quarry".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        statuses.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // The open watch ends with UNAVAILABLE, reason shutting_down.
    let e = loop {
        match tokio::time::timeout(WAIT, events.message())
            .await
            .expect("no end")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watch ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::Unavailable, "shutting_down")
    );
    let status = tokio::task::spawn_blocking(move || d.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_larger_than_one_message_is_sent_in_parts() {
    use proto::sync_request::Request as In;
    use proto::sync_response::Response as Out;
    let d = Daemon::start();
    let mut q = QuarryClient::new(channel(&d.socket).await);
    // 24,000 entries of ~1 KB paths: ~25 MB of manifest, over the 16 MiB message limit,
    // in parts of 4,000 entries.
    let long = "p".repeat(1000);
    let entries: Vec<proto::ManifestEntry> = (0..24_000)
        .map(|i| proto::ManifestEntry {
            path: format!("/big/{long}/{i}.txt"),
            sha256: quarry::engine::sha256_hex(format!("{i}").as_bytes()),
        })
        .collect();
    let parts: Vec<_> = entries.chunks(4000).map(<[_]>::to_vec).collect();
    let last = parts.len() - 1;
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::SyncRequest>(16);
    // The parts are queued before the call: its response starts after the manifest.
    for (i, part) in parts.into_iter().enumerate() {
        tx.send(proto::SyncRequest {
            request: Some(In::Manifest(proto::Manifest {
                collection: "big".into(),
                prefix: "/big".into(),
                entries: part,
                more: i < last,
            })),
        })
        .await
        .unwrap();
    }
    let mut out = q
        .sync_index(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // The Need (~24 MB of paths) comes in parts too.
    let mut needed = 0;
    let mut parts = 0;
    loop {
        let Some(Out::Need(need)) = out.message().await.unwrap().and_then(|m| m.response) else {
            panic!("no Need after the manifest");
        };
        needed += need.paths.len();
        parts += 1;
        if !need.more {
            break;
        }
    }
    assert_eq!(needed, 24_000, "every part's entries are asked for");
    assert!(parts > 1, "a Need over the message limit in one part");
    tx.send(proto::SyncRequest {
        request: Some(In::Done(proto::Done {})),
    })
    .await
    .unwrap();
    let result = loop {
        match out.message().await.unwrap().and_then(|m| m.response) {
            Some(Out::Result(r)) => break r,
            Some(_) => {}
            None => panic!("no result"),
        }
    };
    assert_eq!((result.needed, result.failed), (24_000, 24_000));
}
