//! `schemas/` must match what the Rust types generate.

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn committed_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let (router, notifications) = quarry::methods::contract();
    let files = quarry::rpc::schema::files(&router, &notifications);
    let mut drift = Vec::new();
    for (name, content) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if &on_disk == content => {}
            Ok(_) => drift.push(format!("{name} differs")),
            Err(_) => drift.push(format!("{name} missing")),
        }
    }
    // Files that the code no longer generates are drift too.
    let generated: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    for sub in ["", "json"] {
        for entry in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = if sub.is_empty() {
                entry.file_name().to_string_lossy().into_owned()
            } else {
                format!("{sub}/{}", entry.file_name().to_string_lossy())
            };
            if name.ends_with(".json") && !generated.contains(name.as_str()) {
                drift.push(format!("{name} is stale"));
            }
        }
    }
    assert!(
        drift.is_empty(),
        "schemas/ drifted from the code ({drift:?}); run `cargo run -- schemas` and commit"
    );
}

#[test]
fn openrpc_lists_every_method_with_params_and_result() {
    let (router, notifications) = quarry::methods::contract();
    let doc = quarry::rpc::schema::openrpc(&router, &notifications);
    let methods = doc["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in [
        "ping",
        "health",
        "stats",
        "shutdown",
        "debug/sleep",
        "debug/echo",
        "debug/hang",
        "debug/alloc",
        "supervisor/status",
    ] {
        assert!(names.contains(&m), "{m} missing");
    }
    let sleep = methods.iter().find(|m| m["name"] == "debug/sleep").unwrap();
    assert_eq!(sleep["params"][0]["name"], "ms");
    assert_eq!(sleep["params"][0]["required"], true);
    assert_eq!(doc["components"]["errors"]["overloaded"]["code"], -32002);
    let to_host: Vec<&str> = doc["x-notifications"]["toHost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        to_host,
        [
            "sidecar/ready",
            "notifications/progress",
            "watch/event",
            "supervisor/event"
        ]
    );
    let status = methods
        .iter()
        .find(|m| m["name"] == "supervisor/status")
        .unwrap();
    let last_exit = &doc["components"]["schemas"]["ExitInfo"]["properties"];
    assert!(last_exit.get("exitCode").is_some(), "{status}");
    assert!(last_exit.get("code").is_none(), "{last_exit}");
}
