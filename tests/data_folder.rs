//! One data folder, many processes (GRPC.md §6): the first `quarry serve` owns the
//! folder, later ones follow it (engine methods carried to the owner, progress,
//! cancellation and watches included), and when the owner goes one follower takes over.

mod common;

use common::*;
use serde_json::{Value, json};

/// `health`'s `(role, ownerPid)`.
/// The server's role and owner pid from `health`, once it has decided them (a server
/// still opening or reaching the folder's owner answers `health` without a role).
fn role(s: &mut Sidecar) -> (String, i64) {
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let v = s.request("h", "health", Value::Null);
        let r = result_of(&v);
        let role = r["role"].as_str().unwrap_or_default().to_owned();
        if !role.is_empty() || std::time::Instant::now() >= deadline {
            return (role, r["ownerPid"].as_i64().unwrap_or(-1));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
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

/// The ids of the watches `s` lists.
fn watch_ids(s: &mut Sidecar, id: &str) -> Vec<String> {
    let v = s.request(id, "watch/list", Value::Null);
    result_of(&v)["watches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["watchId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_second_server_follows_the_owner_and_takes_over_when_it_exits() {
    let data = tempfile::tempdir().unwrap();
    // A grace longer than `wait_exit` waits: the owner's exit must not wait for its
    // followers' sessions (it once did, for the whole grace period).
    let mut a = Sidecar::spawn_in(data.path(), &["--shutdown-grace-ms", "60000"]);
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
    let started = std::time::Instant::now();
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
    let whole_ingest = started.elapsed();
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
    // A deadline through the follower: answered `timeout`, the owner's work stopped.
    let v = b.request(
        "late",
        "documents/ingestDir",
        json!({"root": tree.path(), "collection": "geckos3", "_meta": {"timeoutMs": 30}}),
    );
    assert_eq!(v["error"]["data"]["kind"], "timeout", "{v}");
    // Twice as long as the whole ingest took: had the owner gone on, it would be done.
    std::thread::sleep(whole_ingest * 2);
    let v = a.request("c", "collections/list", Value::Null);
    let geckos3 = result_of(&v)["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "geckos3")
        .map(|c| c["documents"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    assert!(geckos3 < 1500, "the owner finished a timed-out ingest: {v}");

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
    // A re-armed watch is listed once its reconcile is over, which may be a moment
    // after the reconcile indexed the handover change.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ids = watch_ids(&mut b, "wl");
        if ids == std::slice::from_ref(&watch_id) || std::time::Instant::now() >= deadline {
            assert_eq!(ids, std::slice::from_ref(&watch_id));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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

/// Reads until every id in `ids` is answered; panics on an id answered twice.
fn collect(s: &mut Sidecar, ids: &[String]) -> std::collections::HashMap<String, Value> {
    let mut answers = std::collections::HashMap::new();
    while answers.len() < ids.len() {
        let m = s.recv();
        let Some(id) = m.get("id").and_then(Value::as_str) else {
            continue;
        };
        assert!(ids.iter().any(|i| i == id), "an answer to no request: {m}");
        assert!(
            answers.insert(id.to_owned(), m.clone()).is_none(),
            "{id} answered twice"
        );
    }
    answers
}

/// `(path, score to 4 places)` of every hit, sorted.
fn hits(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<_> = result_of(v)["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_owned(),
                format!("{:.4}", h["score"].as_f64().unwrap()),
            )
        })
        .collect();
    out.sort();
    out
}

const ANIMALS: [&str; 8] = [
    "otter", "badger", "heron", "lynx", "marten", "stoat", "plover", "newt",
];

fn doc(host: usize, i: usize) -> Value {
    json!({
        "path": format!("/hosts/{host}/{i}.txt"),
        "content": format!("the {} and the {} of host {host} number {i}",
            ANIMALS[(host + i) % 8], ANIMALS[(host * 3 + i) % 8]),
    })
}

#[test]
fn four_hosts_at_once_answer_every_request_like_one_process() {
    // The reference: one process holding everything.
    let reference = tempfile::tempdir().unwrap();
    let mut one = Sidecar::spawn_in(reference.path(), &[]);
    for host in 0..4 {
        for i in 0..10 {
            let v = one.request(format!("{host}-{i}"), "documents/ingest", doc(host, i));
            assert_eq!(result_of(&v)["chunks"], 1);
        }
    }
    let expected: Vec<_> = ANIMALS
        .iter()
        .map(|a| hits(&one.request(*a, "search/query", json!({"query": a, "limit": 50}))))
        .collect();

    // Four hosts on one folder, each ingesting its share and searching while the
    // others ingest, every request pipelined.
    let shared = tempfile::tempdir().unwrap();
    let hosts: Vec<Sidecar> = (0..4)
        .map(|_| Sidecar::spawn_in(shared.path(), &[]))
        .collect();
    let hosts: Vec<Sidecar> = std::thread::scope(|scope| {
        let running: Vec<_> = hosts
            .into_iter()
            .enumerate()
            .map(|(host, mut s)| {
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..10 {
                        let id = format!("i{i}");
                        s.send(&json!({"jsonrpc": "2.0", "id": id, "method": "documents/ingest", "params": doc(host, i)}));
                        ids.push(id);
                        let id = format!("q{i}");
                        s.send(&json!({"jsonrpc": "2.0", "id": id, "method": "search/query",
                            "params": {"query": ANIMALS[i % 8]}}));
                        ids.push(id);
                    }
                    let answers = collect(&mut s, &ids);
                    for (id, v) in &answers {
                        assert!(v.get("result").is_some(), "host {host} {id}: {v}");
                    }
                    s
                })
            })
            .collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Once all is in, every host sees exactly what the single process sees.
    for mut s in hosts {
        for (a, want) in ANIMALS.iter().zip(&expected) {
            let got = hits(&s.request(*a, "search/query", json!({"query": a, "limit": 50})));
            assert_eq!(&got, want, "{a}");
        }
    }
}

#[test]
fn a_killed_owner_under_load_loses_no_request_and_answers_none_twice() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    for i in 0..20 {
        let v = a.request(i, "documents/ingest", doc(9, i as usize));
        assert!(v.get("result").is_some(), "{v}");
    }
    let followers: Vec<Sidecar> = (0..2)
        .map(|_| Sidecar::spawn_in(data.path(), &[]))
        .collect();
    let a_pid = a.pid();
    let followers: Vec<(Sidecar, std::collections::HashMap<String, Value>)> = std::thread::scope(
        |scope| {
            let running: Vec<_> = followers
                .into_iter()
                .enumerate()
                .map(|(f, mut s)| {
                    scope.spawn(move || {
                        let mut ids = Vec::new();
                        // 1.5 s of searches and ingests, the owner killed 0.4 s in.
                        let start = std::time::Instant::now();
                        let mut n = 0;
                        while start.elapsed() < std::time::Duration::from_millis(1500) {
                            let id = format!("s{n}");
                            s.send(&json!({"jsonrpc": "2.0", "id": id, "method": "search/query",
                                "params": {"query": ANIMALS[n % 8]}}));
                            ids.push(id);
                            if n % 5 == 0 {
                                let id = format!("w{n}");
                                s.send(&json!({"jsonrpc": "2.0", "id": id, "method": "documents/ingest",
                                    "params": doc(10 + f, n)}));
                                ids.push(id);
                            }
                            n += 1;
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        let answers = collect(&mut s, &ids);
                        (s, answers)
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(400));
            a.signal(rustix::process::Signal::KILL);
            running.into_iter().map(|h| h.join().unwrap()).collect()
        },
    );
    a.wait_exit();
    let mut lost = 0;
    for (_, answers) in &followers {
        for (id, v) in answers {
            if id.starts_with('s') {
                // Read-only: retried on the new owner, always answered with a result.
                assert!(v.get("result").is_some(), "{id}: {v}");
            } else if v.get("error").is_some() {
                // A write in flight when the owner died: `owner_lost`, never silence.
                assert_error(v, -32004, "sidecar_exited");
                assert_eq!(v["error"]["data"]["reason"], "owner_lost", "{v}");
                assert_eq!(v["error"]["data"]["ownerPid"], a_pid, "{v}");
                lost += 1;
            }
        }
    }
    eprintln!("writes answered owner_lost: {lost}");
    let mut followers: Vec<Sidecar> = followers.into_iter().map(|(s, _)| s).collect();
    let roles: Vec<_> = followers.iter_mut().map(role).collect();
    assert_eq!(
        roles.iter().filter(|(r, _)| r == "owner").count(),
        1,
        "{roles:?}"
    );
}

#[test]
fn a_follower_that_exits_leaves_the_owner_and_its_watches_unaffected() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    let mine = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let v = a.request("w", "watch/start", json!({"root": mine.path()}));
    let my_watch = result_of(&v)["watchId"].as_str().unwrap().to_owned();
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    let v = b.request("w", "watch/start", json!({"root": theirs.path()}));
    assert!(v.get("result").is_some(), "{v}");
    let v = a.request("l", "watch/list", Value::Null);
    assert_eq!(result_of(&v)["watches"].as_array().unwrap().len(), 2, "{v}");
    b.signal(rustix::process::Signal::KILL);
    b.wait_exit();
    // The follower's watch ends with its session; the owner's own lives on.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ids = watch_ids(&mut a, "l2");
        if ids == std::slice::from_ref(&my_watch) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ids:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(role(&mut a).0, "owner");
    std::fs::write(mine.path().join("still.txt"), "the owner still watches\n").unwrap();
    let event = loop {
        let m = a.recv();
        if m["method"] == "watch/event" {
            break m;
        }
    };
    assert_eq!(event["params"]["watchId"], my_watch.as_str());
}

#[test]
fn supervised_hosts_share_a_folder_and_a_follower_stays_healthy() {
    let data = tempfile::tempdir().unwrap();
    let supervised = || {
        let mut cmd = std::process::Command::new(bin());
        cmd.args([
            "supervise",
            "--health-interval-ms",
            "100",
            "--health-timeout-ms",
            "300",
            "--",
        ])
        .arg(bin())
        .arg("serve")
        .env("QUARRY_DATA_DIR", data.path());
        Sidecar::spawn_cmd(cmd)
    };
    let mut first = supervised();
    let v = first.request(
        1,
        "documents/ingest",
        json!({"path": "/s/ibis.txt", "content": "the ibis wades"}),
    );
    assert!(v.get("result").is_some(), "{v}");
    let mut second = supervised();
    assert_eq!(search(&mut second, "q", "ibis"), ["/s/ibis.txt"]);
    // Twenty health checks later the follower was never taken for unhealthy.
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let v = second.request("st", "supervisor/status", Value::Null);
    let st = result_of(&v);
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["restarts"], 0, "{st}");
    assert_eq!(role(&mut second).0, "follower");
}

/// Within a 15 s deadline (half of the 30 s a follower waits for a socket that may still
/// come), an engine call through `follower` is answered `locked` naming `owner`.
fn assert_named_not_waited_for(follower: &mut Sidecar, owner: i32) {
    let v = follower.request(
        1,
        "collections/list",
        json!({"_meta": {"timeoutMs": 15000}}),
    );
    assert_error(&v, -32013, "storage");
    assert_eq!(v["error"]["data"]["reason"], "locked", "{v}");
    assert_eq!(v["error"]["data"]["pid"], owner, "{v}");
}

/// `quarry serve --debug-methods --data-dir DATA` with its own runtime folder `run`.
fn spawn_with_runtime(data: &std::path::Path, run: &std::path::Path, args: &[&str]) -> Sidecar {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.arg("serve")
        .arg("--debug-methods")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("XDG_RUNTIME_DIR", run);
    Sidecar::spawn_cmd(cmd)
}

#[test]
fn a_stale_socket_under_the_owners_pid_is_not_waited_for() {
    // A socket file left by a killed process whose pid the owner now has (pids restart
    // low in every container, runtime folders persist) once made followers wait the
    // full 30 s for a listener that never comes.
    let (data, run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = spawn_with_runtime(data.path(), run.path(), &["--no-grpc"]);
    assert_eq!(role(&mut a).0, "owner");
    let folder = run.path().join("quarry");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .recursive(true)
        .create(&folder)
        .unwrap();
    let stale = folder.join(format!("{}.sock", a.pid()));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut b = spawn_with_runtime(data.path(), run.path(), &[]);
    assert_named_not_waited_for(&mut b, a.pid());
}

#[test]
fn an_owner_without_a_socket_is_named_not_waited_for() {
    let data = tempfile::tempdir().unwrap();
    // `--no-grpc`: the owner serves no socket, so nothing can follow it.
    let mut a = Sidecar::spawn_in(data.path(), &["--no-grpc"]);
    assert_eq!(role(&mut a).0, "owner");
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    // Within a 15 s deadline (half of the 30 s a follower waits for a socket that may
    // still come) the answer is `locked` naming the owner — not a wait for a socket that
    // never comes (which once ran into the deadline).
    assert_named_not_waited_for(&mut b, a.pid());
}
