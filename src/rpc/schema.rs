//! The machine-readable contract in `schemas/`, generated from the Rust types.
//!
//! - `schemas/openrpc.json`: an [OpenRPC 1.3.2](https://spec.open-rpc.org/) document of
//!   every method (params by name), the error codes of PROTOCOL.md §8 under
//!   `components.errors`, and the notifications the server sends under
//!   `x-notifications` (OpenRPC has no server-to-client notifications).
//! - `schemas/json/<method>.params.json`, `<method>.result.json`: standalone JSON Schema
//!   (2020-12) documents, one per params and result type (`/` in names becomes `.`).
//!
//! `quarry schemas [DIR]` regenerates them (`--check` only compares); a test fails when
//! they drift.

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::control::{PROTOCOL_VERSION, ProgressParams, ReadyParams};
use super::router::{MethodKind, Router, SchemaFn};
use quarry_protocol::ErrorKind;

/// A notification the server sends to the host.
#[derive(Clone)]
pub struct OutgoingNotification {
    /// Method name.
    pub name: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Params schema builder.
    pub params: SchemaFn,
}

/// The notifications of the core protocol (§6, §7).
pub fn core_notifications() -> Vec<OutgoingNotification> {
    vec![
        OutgoingNotification {
            name: "sidecar/ready",
            summary: "Sent once when the server is ready to serve.",
            params: |g| g.subschema_for::<ReadyParams>(),
        },
        OutgoingNotification {
            name: "notifications/progress",
            summary: "Progress of a request that carried `_meta.progressToken`; written before its response.",
            params: |g| g.subschema_for::<ProgressParams>(),
        },
    ]
}

fn resolve<'a>(g: &'a SchemaGenerator, schema: &'a Schema) -> Option<&'a Map<String, Value>> {
    let reference = schema.get("$ref").and_then(Value::as_str);
    match reference {
        Some(r) => g
            .definitions()
            .get(r.rsplit('/').next().unwrap_or(r))
            .and_then(Value::as_object),
        None => schema.as_object(),
    }
}

/// OpenRPC params (by name) from an object schema.
fn by_name(g: &SchemaGenerator, schema: &Schema) -> Value {
    let Some(obj) = resolve(g, schema) else {
        return json!([]);
    };
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = obj.get("properties").and_then(Value::as_object) else {
        return json!([]);
    };
    Value::Array(
        props
            .iter()
            .map(|(name, s)| {
                let mut d = Map::new();
                d.insert("name".into(), json!(name));
                if let Some(desc) = s.get("description") {
                    d.insert("description".into(), desc.clone());
                }
                d.insert("required".into(), json!(required.contains(&name.as_str())));
                d.insert("schema".into(), s.clone());
                Value::Object(d)
            })
            .collect(),
    )
}

/// The OpenRPC document of `router` plus `notifications`.
pub fn openrpc(router: &Router, notifications: &[OutgoingNotification]) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut methods = Vec::new();
    let mut incoming = Vec::new();
    for doc in router.docs() {
        let params = (doc.params)(&mut g);
        let mut m = Map::new();
        m.insert("name".into(), json!(doc.name));
        m.insert("summary".into(), json!(doc.summary));
        m.insert("paramStructure".into(), json!("by-name"));
        m.insert("params".into(), by_name(&g, &params));
        match doc.result {
            Some(result) => {
                let result = (result)(&mut g);
                m.insert(
                    "result".into(),
                    json!({ "name": "result", "schema": result.to_value() }),
                );
                m.insert("x-control".into(), json!(doc.kind == MethodKind::Control));
                methods.push(Value::Object(m));
            }
            None => incoming.push(Value::Object(m)),
        }
    }
    let outgoing: Vec<Value> = notifications
        .iter()
        .map(|n| {
            let params = (n.params)(&mut g);
            json!({
                "name": n.name,
                "summary": n.summary,
                "paramStructure": "by-name",
                "params": by_name(&g, &params),
            })
        })
        .collect();
    let errors: Map<String, Value> = ErrorKind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str().to_owned(),
                json!({ "code": k.code(), "message": k.as_str(), "data": { "kind": k.as_str() } }),
            )
        })
        .collect();
    let schemas = g.take_definitions(true);
    json!({
        "openrpc": "1.3.2",
        "info": {
            "title": "Quarry sidecar",
            "version": format!("{PROTOCOL_VERSION}"),
            "description": "JSON-RPC 2.0 over stdio, one message per line. See PROTOCOL.md.",
        },
        "methods": methods,
        "components": { "schemas": schemas, "errors": errors },
        "x-notifications": { "toServer": incoming, "toHost": outgoing },
    })
}

fn standalone(title: String, description: &str, f: SchemaFn) -> Value {
    let mut g = SchemaSettings::draft2020_12().into_generator();
    let schema = f(&mut g);
    let mut root = match schema.to_value() {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("allOf".into(), json!([other]));
            m
        }
    };
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("title".into(), json!(title));
    out.insert("description".into(), json!(description));
    out.append(&mut root);
    let defs = g.take_definitions(true);
    if !defs.is_empty() {
        out.insert("$defs".into(), Value::Object(defs));
    }
    Value::Object(out)
}

/// Every file under `schemas/`, keyed by its path relative to that folder, with its
/// exact content (pretty JSON and a final newline).
pub fn files(router: &Router, notifications: &[OutgoingNotification]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let pretty = |v: &Value| format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default());
    out.insert(
        "openrpc.json".to_owned(),
        pretty(&openrpc(router, notifications)),
    );
    let file = |name: &str, part: &str| format!("json/{}.{part}.json", name.replace('/', "."));
    for doc in router.docs() {
        out.insert(
            file(doc.name, "params"),
            pretty(&standalone(
                format!("{} params", doc.name),
                doc.summary,
                doc.params,
            )),
        );
        if let Some(result) = doc.result {
            out.insert(
                file(doc.name, "result"),
                pretty(&standalone(
                    format!("{} result", doc.name),
                    doc.summary,
                    result,
                )),
            );
        }
    }
    for n in notifications {
        out.insert(
            file(n.name, "params"),
            pretty(&standalone(
                format!("{} params", n.name),
                n.summary,
                n.params,
            )),
        );
    }
    out
}
