//! Watch benchmark: save→event and save→searchable latency, and reconcile speed on a
//! real tree. `cargo bench --bench watch`

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Server {
    child: Child,
    w: ChildStdin,
    r: BufReader<ChildStdout>,
    next: u64,
}

impl Server {
    fn spawn(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quarry"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        let mut s = Server {
            child,
            w,
            r,
            next: 1,
        };
        s.recv(); // ready
        s
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        writeln!(
            self.w,
            "{}",
            json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
        )
        .unwrap();
        loop {
            let v = self.recv();
            if v["id"] == id {
                return v;
            }
        }
    }

    fn wait_event(&mut self, suffix: &str) {
        loop {
            let v = self.recv();
            if v["method"] == "watch/event"
                && v["params"]["path"].as_str().unwrap_or("").ends_with(suffix)
            {
                return;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    println!("Quarry watch benchmark\n");
    println!("| measure | p50 | p99 | target |\n|---|---|---|---|");
    for debounce in [50u64, 200] {
        let data = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::write(
                dir.path().join(format!("f{i}.txt")),
                format!("filler file {i}\n"),
            )
            .unwrap();
        }
        let mut s = Server::spawn(data.path());
        let r = s.call(
            "watch/start",
            json!({"root": dir.path(), "debounceMs": debounce}),
        );
        assert!(r.get("result").is_some(), "{r}");
        let (mut to_event, mut to_search) = (Vec::new(), Vec::new());
        for i in 0..30 {
            let word = format!("zebu{i}x");
            let t = Instant::now();
            std::fs::write(dir.path().join("saved.txt"), format!("the {word} grazes\n")).unwrap();
            s.wait_event("/saved.txt");
            to_event.push(t.elapsed());
            loop {
                let v = s.call("search/query", json!({"query": word}));
                if !v["result"]["hits"].as_array().unwrap().is_empty() {
                    break;
                }
            }
            to_search.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "| save → watch/event, debounce {debounce} ms | {:.0} ms | {:.0} ms | p50 ≤ {} ms |",
            pct(&mut to_event, 0.5),
            pct(&mut to_event, 0.99),
            debounce + 50
        );
        println!(
            "| save → searchable, debounce {debounce} ms | {:.0} ms | {:.0} ms | p50 ≤ {} ms |",
            pct(&mut to_search, 0.5),
            pct(&mut to_search, 0.99),
            debounce + 50
        );
    }
    // Reconcile on a real tree: first watch (indexes everything), then again (all unchanged).
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    let stdlib = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::spawn(data.path());
    let exclude = json!(["site-packages/", "__pycache__/"]);
    for label in [
        "first watch/start (index everything)",
        "second watch/start (all unchanged)",
    ] {
        let t = Instant::now();
        let r = s.call("watch/start", json!({"root": stdlib, "exclude": exclude}));
        let secs = t.elapsed().as_secs_f64();
        let id = r["result"]["watchId"].as_str().unwrap().to_owned();
        let files =
            s.call("collections/list", json!({}))["result"]["collections"][0]["documents"].clone();
        println!("| reconcile of the stdlib, {label} | {secs:.2} s ({files} documents) | | |");
        s.call("watch/stop", json!({"watchId": id}));
    }
}
