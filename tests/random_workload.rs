//! PROTOCOL.md §2: exactly one response per id under a randomized workload with
//! priorities, deadlines, cancellations (before, during and after completion), batches
//! and overload.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// xorshift64*: a seeded generator so that a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug)]
enum Expect {
    Sleep(u64),
    Echo(Value),
}

#[test]
fn exactly_one_response_per_id() {
    let seed = std::env::var("QUARRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mut s = Sidecar::spawn(&["--max-concurrency", "8", "--max-queue", "48"]);
    let total = 800u64;
    let mut expected: HashMap<String, Expect> = HashMap::new();
    let mut sent = 0u64;
    while sent < total {
        // Sometimes a batch of 1–4 requests, usually one.
        let batch = if rng.below(10) == 0 {
            1 + rng.below(4)
        } else {
            1
        };
        let mut msgs = Vec::new();
        for _ in 0..batch {
            if sent == total {
                break;
            }
            let id = if rng.below(2) == 0 {
                json!(sent as i64 - 400)
            } else {
                json!(format!("r{sent}"))
            };
            let key = id.to_string();
            let mut meta = serde_json::Map::new();
            match rng.below(3) {
                0 => meta.insert("priority".into(), json!("low")),
                1 => meta.insert("priority".into(), json!("high")),
                _ => None,
            };
            if rng.below(4) == 0 {
                meta.insert("timeoutMs".into(), json!(1 + rng.below(40)));
            }
            if rng.below(6) == 0 {
                meta.insert("progressToken".into(), json!(format!("p{sent}")));
            }
            let (method, mut params, exp) = if rng.below(2) == 0 {
                let ms = rng.below(25);
                ("debug/sleep", json!({"ms": ms}), Expect::Sleep(ms))
            } else {
                let payload = json!({"n": sent, "s": "x".repeat(rng.below(64) as usize)});
                ("debug/echo", payload.clone(), Expect::Echo(payload))
            };
            params["_meta"] = Value::Object(meta);
            msgs.push(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
            expected.insert(key, exp);
            sent += 1;
        }
        if msgs.len() == 1 {
            s.send(&msgs[0]);
        } else {
            s.send(&Value::Array(msgs));
        }
        // Cancel a random earlier id (queued, running, finished or never sent).
        if rng.below(5) == 0 {
            let target = rng.below(sent + 10);
            let id = if rng.below(2) == 0 {
                json!(target as i64 - 400)
            } else {
                json!(format!("r{target}"))
            };
            if rng.below(2) == 0 {
                s.cancel(id);
            } else {
                s.notify("$/cancelRequest", json!({"id": id}));
            }
        }
        if rng.below(50) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        }
    }
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut kinds: HashMap<String, u64> = HashMap::new();
    let mut progress_after_response = Vec::new();
    while seen.len() < expected.len() {
        let v = s.recv();
        let responses = match v {
            Value::Array(a) => a,
            v if v["method"] == "notifications/progress" => {
                let tok = v["params"]["progressToken"].as_str().unwrap();
                let id = tok.trim_start_matches('p');
                let key1 = json!(id.parse::<i64>().unwrap() - 400).to_string();
                let key2 = json!(format!("r{id}")).to_string();
                if seen.contains_key(&key1) || seen.contains_key(&key2) {
                    progress_after_response.push(v);
                }
                continue;
            }
            v => vec![v],
        };
        for r in responses {
            let key = r["id"].to_string();
            let exp = expected
                .get(&key)
                .unwrap_or_else(|| panic!("response for an id never sent: {r}"));
            if let Some(result) = r.get("result") {
                match exp {
                    Expect::Sleep(ms) => assert_eq!(result, &json!({"slept": ms})),
                    Expect::Echo(p) => assert_eq!(result, p),
                }
                *kinds.entry("ok".into()).or_default() += 1;
            } else {
                let kind = r["error"]["data"]["kind"].as_str().unwrap().to_owned();
                assert!(
                    ["cancelled", "timeout", "overloaded"].contains(&kind.as_str()),
                    "unexpected error {r}"
                );
                *kinds.entry(kind).or_default() += 1;
            }
            assert!(
                seen.insert(key, r.clone()).is_none(),
                "second response: {r}"
            );
        }
    }
    eprintln!("outcomes: {kinds:?}");
    assert!(
        progress_after_response.is_empty(),
        "{progress_after_response:?}"
    );
    assert!(kinds.get("ok").copied().unwrap_or(0) > 100, "{kinds:?}");
    s.expect_silence(Duration::from_millis(500));
    let h = s.request("final", "health", Value::Null);
    assert_eq!(result_of(&h)["inFlight"], 0);
    assert_eq!(result_of(&h)["queued"], 0);
}
