//! One data folder, two processes: the store is opened on the first engine method, so
//! a second `quarry serve` on a held folder starts, serves every control method, and
//! answers engine methods with a typed `storage` error naming the holder.

mod common;

use common::*;
use serde_json::{Value, json};

fn locked_by(v: &Value, pid: i32) {
    assert_error(v, -32013, "storage");
    let data = &v["error"]["data"];
    assert_eq!(data["reason"], "locked", "{v}");
    assert_eq!(data["pid"], pid, "{v}");
}

#[test]
fn a_second_server_on_a_held_folder_serves_and_answers_locked() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    let v = a.request(
        1,
        "documents/ingest",
        json!({"path": "notes/okapi.txt", "content": "the okapi is shy"}),
    );
    assert_eq!(result_of(&v)["chunks"], 1);

    // Starts, is ready, and serves control methods while `a` holds the folder.
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    assert_eq!(result_of(&b.request(1, "ping", Value::Null)), &json!({}));
    assert_eq!(
        result_of(&b.request(2, "health", Value::Null))["status"],
        "ok"
    );
    locked_by(&b.request(3, "collections/list", Value::Null), a.pid());
    locked_by(
        &b.request(4, "search/query", json!({"query": "okapi"})),
        a.pid(),
    );
    locked_by(
        &b.request(5, "watch/start", json!({"root": data.path()})),
        a.pid(),
    );
    // Listing or stopping watches never needs the store.
    assert_eq!(
        result_of(&b.request(6, "watch/list", Value::Null))["watches"],
        json!([])
    );
    // The holder is unaffected.
    let v = a.request(2, "search/query", json!({"query": "okapi"}));
    assert_eq!(result_of(&v)["hits"].as_array().unwrap().len(), 1);

    // Once the holder is gone, the next engine call opens the folder.
    assert_eq!(
        result_of(&a.request(3, "shutdown", Value::Null)),
        &json!({})
    );
    assert_eq!(a.wait_exit().code(), Some(0));
    let v = b.request(7, "search/query", json!({"query": "okapi"}));
    let hits = result_of(&v)["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 1, "{v}");
    assert!(
        hits[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("notes/okapi.txt")
    );
}

#[test]
fn two_protocol_only_servers_share_a_folder_and_a_killed_holder_frees_it() {
    let data = tempfile::tempdir().unwrap();
    // A folder with a collection in it, as a second host would find it.
    {
        let mut a = Sidecar::spawn_in(data.path(), &[]);
        let v = a.request(1, "collections/create", json!({"name": "kept"}));
        assert_eq!(result_of(&v)["created"], true);
    }
    let mut a = Sidecar::spawn_in(data.path(), &[]);
    let mut b = Sidecar::spawn_in(data.path(), &[]);
    for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
        assert_eq!(result_of(&s.request(i, "ping", Value::Null)), &json!({}));
        assert!(result_of(&s.request("s", "stats", Value::Null))["uptimeMs"].is_u64());
    }
    // `b` takes the folder; `a` is refused, then `b` is killed: no stale lock is left.
    let v = b.request(1, "collections/list", Value::Null);
    assert_eq!(result_of(&v)["collections"][0]["name"], "kept");
    locked_by(&a.request(1, "collections/list", Value::Null), b.pid());
    b.signal(rustix::process::Signal::KILL);
    b.wait_exit();
    // The kernel released the lock with the process: the next call opens the folder.
    let v = a.request("l", "collections/list", Value::Null);
    assert_eq!(result_of(&v)["collections"][0]["name"], "kept", "{v}");
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
