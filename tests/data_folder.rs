//! One data folder, many processes (GRPC.md §6): the first `quarry serve` owns the
//! folder, later ones follow it (engine methods carried to the owner, progress,
//! cancellation and watches included), and when the owner goes one follower takes over.

mod common;

use common::*;
use serde_json::{Value, json};

/// `health`'s `(role, ownerPid)`.
fn role(s: &mut Sidecar) -> (String, i64) {
    let v = s.request("h", "health", Value::Null);
    let r = result_of(&v);
    (
        r["role"].as_str().unwrap_or_default().to_owned(),
        r["ownerPid"].as_i64().unwrap_or(-1),
    )
}

/// The paths of `search/query` hits for `query` through `s`.
fn search(s: &mut Sidecar, id: &str, query: &str) -> Vec<String> {
    let v = s.request(id, "search/query", json!({"query": query}));
    let mut paths: Vec<String> = result_of(&v)["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

#[test]
fn a_second_server_follows_the_owner_and_takes_over_when_it_exits() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    assert_eq!(role(&mut a), ("owner".to_owned(), i64::from(a.pid())));
    let v = a.request(
        1,
        "documents/ingest",
        json!({"path": "/notes/okapi.txt", "content": "the okapi is shy"}),
    );
    assert_eq!(result_of(&v)["chunks"], 1);

    // Starts, is ready, serves control methods itself and engine methods through `a`.
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    assert_eq!(result_of(&b.request(1, "ping", Value::Null)), &json!({}));
    assert_eq!(role(&mut b), ("follower".to_owned(), i64::from(a.pid())));
    assert_eq!(search(&mut b, "s1", "okapi"), ["/notes/okapi.txt"]);
    let v = b.request(
        2,
        "documents/ingest",
        json!({"path": "/notes/tapir.txt", "content": "the tapir swims"}),
    );
    assert_eq!(result_of(&v)["chunks"], 1, "{v}");
    // What one host writes, the other finds: one index.
    assert_eq!(search(&mut a, "s2", "tapir"), ["/notes/tapir.txt"]);
    // Errors come back typed, as from the owner.
    let v = b.request(3, "search/query", json!({"query": "okapi", "limit": 0}));
    assert_error(&v, -32602, "invalid_params");
    let v = b.request(4, "collections/create", json!({"name": "bad name!"}));
    assert_error(&v, -32602, "invalid_params");

    // The owner exits cleanly: the follower takes the folder over.
    assert_eq!(
        result_of(&a.request(3, "shutdown", Value::Null)),
        &json!({})
    );
    assert_eq!(a.wait_exit().code(), Some(0));
    assert_eq!(
        search(&mut b, "s3", "okapi tapir"),
        ["/notes/okapi.txt", "/notes/tapir.txt"]
    );
    assert_eq!(role(&mut b), ("owner".to_owned(), i64::from(b.pid())));
}

#[test]
fn a_killed_owner_is_replaced_by_exactly_one_follower() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    let v = a.request(1, "collections/create", json!({"name": "kept"}));
    assert_eq!(result_of(&v)["created"], true);
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    let mut c = Sidecar::spawn_in(data.path(), &[]);
    for s in [&mut b, &mut c] {
        let v = s.request("l", "collections/list", Value::Null);
        assert_eq!(result_of(&v)["collections"][0]["name"], "kept", "{v}");
    }
    a.signal(rustix::process::Signal::KILL);
    a.wait_exit();
    // Both keep answering; one of them now owns the folder, the other follows it.
    for s in [&mut b, &mut c] {
        let v = s.request("l2", "collections/list", Value::Null);
        assert_eq!(result_of(&v)["collections"][0]["name"], "kept", "{v}");
    }
    let (rb, rc) = (role(&mut b), role(&mut c));
    let owner = if rb.0 == "owner" { b.pid() } else { c.pid() };
    let mut roles = [rb.0.clone(), rc.0.clone()];
    roles.sort();
    assert_eq!(roles, ["follower", "owner"], "{rb:?} {rc:?}");
    assert_eq!((rb.1, rc.1), (i64::from(owner), i64::from(owner)));
}

#[test]
fn three_servers_started_at_once_elect_one_owner() {
    let data = tempfile::tempdir().unwrap();
    let mut all: Vec<Sidecar> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| Sidecar::spawn_in(data.path(), &[])))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let roles: Vec<(String, i64)> = all.iter_mut().map(role).collect();
    let owners: Vec<_> = roles.iter().filter(|(r, _)| r == "owner").collect();
    assert_eq!(owners.len(), 1, "{roles:?}");
    let owner = owners[0].1;
    assert!(roles.iter().all(|(_, pid)| *pid == owner), "{roles:?}");
    // Every one of them serves the one index.
    for (i, s) in all.iter_mut().enumerate() {
        let v = s.request(
            "i",
            "documents/ingest",
            json!({"path": format!("/three/{i}.txt"), "content": format!("the heron number {i}")}),
        );
        assert_eq!(result_of(&v)["chunks"], 1, "{v}");
    }
    for s in all.iter_mut() {
        assert_eq!(
            search(s, "q", "heron number"),
            ["/three/0.txt", "/three/1.txt", "/three/2.txt"]
        );
    }
}

#[test]
fn progress_cancellation_and_watches_through_a_follower() {
    let data = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    for i in 0..1500 {
        std::fs::write(
            tree.path().join(format!("f{i}.txt")),
            format!("the gecko number {i} climbs walls\n"),
        )
        .unwrap();
    }
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    assert_eq!(role(&mut a).0, "owner");
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    assert_eq!(role(&mut b).0, "follower");

    // Progress through the follower, under the host's own token, then the result.
    b.send(&json!({"jsonrpc": "2.0", "id": "ing", "method": "documents/ingestDir",
        "params": {"root": tree.path(), "collection": "geckos", "_meta": {"progressToken": "tok"}}}));
    let mut progress = 0;
    let result = loop {
        let m = b.recv();
        if m["method"] == "notifications/progress" {
            assert_eq!(m["params"]["progressToken"], "tok", "{m}");
            progress += 1;
        } else if m["id"] == "ing" {
            break m;
        }
    };
    assert_eq!(result_of(&result)["files"], 1500, "{result}");
    assert!(progress >= 1, "no progress through the follower");

    // Cancellation through the follower stops the owner's work.
    b.send(
        &json!({"jsonrpc": "2.0", "id": "again", "method": "documents/ingestDir",
        "params": {"root": tree.path(), "collection": "geckos2", "_meta": {"progressToken": 7}}}),
    );
    loop {
        let m = b.recv();
        if m["method"] == "notifications/progress" {
            break;
        }
        assert_ne!(
            m["id"], "again",
            "finished before it could be cancelled: {m}"
        );
    }
    b.cancel("again");
    let v = b.response("again");
    assert_error(&v, -32800, "cancelled");

    // A watch started through the follower sees changes; its events reach b's host.
    let watched = tempfile::tempdir().unwrap();
    let v = b.request(
        "w",
        "watch/start",
        json!({"root": watched.path(), "debounceMs": 50}),
    );
    let watch_id = result_of(&v)["watchId"].as_str().unwrap().to_owned();
    std::fs::write(watched.path().join("new.txt"), "the newt swims\n").unwrap();
    let event = loop {
        let m = b.recv();
        if m["method"] == "watch/event" {
            break m;
        }
    };
    assert_eq!(event["params"]["watchId"], watch_id.as_str(), "{event}");
    assert!(
        event["params"]["path"]
            .as_str()
            .unwrap()
            .ends_with("new.txt"),
        "{event}"
    );

    // The owner dies: b takes over, re-arms the watch under the same id, and a change
    // made during the handover is indexed.
    a.signal(rustix::process::Signal::KILL);
    a.wait_exit();
    std::fs::write(watched.path().join("handover.txt"), "the marmot whistles\n").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = b.request("s", "search/query", json!({"query": "marmot"}));
        if result_of(&v)["hits"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the handover change was never indexed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let v = b.request("wl", "watch/list", Value::Null);
    let ids: Vec<_> = result_of(&v)["watches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["watchId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&watch_id), "{v}");
    std::fs::write(watched.path().join("after.txt"), "the vole digs\n").unwrap();
    let event = loop {
        let m = b.recv();
        if m["method"] == "watch/event"
            && m["params"]["path"].as_str().unwrap().ends_with("after.txt")
        {
            break m;
        }
    };
    assert_eq!(event["params"]["watchId"], watch_id.as_str(), "{event}");
}

#[test]
fn the_cli_names_the_holder_of_a_folder() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    let v = a.request(1, "collections/create", json!({"name": "x"}));
    assert!(v.get("result").is_some(), "{v}");
    let out = std::process::Command::new(bin())
        .args(["search", "anything", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked") && err.contains(&a.pid().to_string()),
        "{err}"
    );
}
