//! Supervisor benchmark: crash→ready overhead above the child's own start, hang
//! detection time, memory-limit reaction, and per-call overhead through the proxy.
//!
//! `cargo bench --bench supervisor`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quarry_supervisor::{CallOptions, Config, EventKind, Supervisor};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_quarry");

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn config(data: &std::path::Path) -> Config {
    let mut c = Config::new(BIN, ["serve", "--debug-methods"]);
    c.child
        .env
        .push(("QUARRY_DATA_DIR".into(), data.as_os_str().to_owned()));
    c
}

/// Spawn → `sidecar/ready` of the bare child, without a supervisor.
fn bare_start(data: &std::path::Path) -> Duration {
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .args(["serve"])
        .env("QUARRY_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let d = t.elapsed();
    assert!(line.contains("sidecar/ready"));
    let _ = child.kill();
    let _ = child.wait();
    d
}

async fn next(
    ev: &mut tokio::sync::broadcast::Receiver<quarry_supervisor::Event>,
    kind: EventKind,
) {
    loop {
        if ev.recv().await.unwrap().event == kind {
            return;
        }
    }
}

fn kill(pid: u32, sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig);
}

/// Window-1 `ping` round trips through a pipe to `cmd`.
fn ping_latency(mut cmd: Command, n: usize) -> Vec<Duration> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.contains("sidecar/ready") {
            break;
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let t = Instant::now();
        writeln!(w, r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#).unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.contains("\"id\":") && !line.contains("\"method\"") {
                break;
            }
        }
        if i >= 200 {
            out.push(t.elapsed());
        }
    }
    drop(w);
    let _ = child.wait();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let data = tempfile::tempdir().unwrap();
    let rounds = 20;
    println!("Quarry supervisor benchmark ({rounds} rounds where repeated)\n");
    println!("| measure | p50 | p99 | target |\n|---|---|---|---|");

    // Crash → ready, against the bare child's own start.
    let mut bare: Vec<Duration> = (0..rounds).map(|_| bare_start(data.path())).collect();
    let mut c = config(data.path());
    c.restart.initial = Duration::ZERO;
    c.restart.max = Duration::ZERO;
    c.restart.max_restarts = 10_000;
    let sup = Supervisor::spawn(c).unwrap();
    sup.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut ev = sup.events();
    let mut crash = Vec::new();
    for _ in 0..rounds {
        let pid = sup.status().pid.unwrap();
        let t = Instant::now();
        kill(pid, rustix::process::Signal::KILL);
        next(&mut ev, EventKind::Ready).await;
        crash.push(t.elapsed());
    }
    sup.shutdown().await;
    let (b50, b99) = (pct(&mut bare, 0.5), pct(&mut bare, 0.99));
    let (c50, c99) = (pct(&mut crash, 0.5), pct(&mut crash, 0.99));
    println!("| child's own start (spawn → ready) | {b50:.1} ms | {b99:.1} ms | |");
    println!("| kill -9 → next child ready, supervised | {c50:.1} ms | {c99:.1} ms | |");
    println!(
        "| crash→ready overhead above the child's start | {:.1} ms | {:.1} ms | ≤ 5 / 20 ms |",
        c50 - b50,
        c99 - b99
    );

    // Hang detection: SIGSTOP, health every 100 ms with a 100 ms deadline, 2 misses.
    let mut c = config(data.path());
    c.health_interval = Duration::from_millis(100);
    c.health_timeout = Duration::from_millis(100);
    c.health_failures = 2;
    c.restart.initial = Duration::ZERO;
    c.restart.max = Duration::ZERO;
    c.restart.max_restarts = 10_000;
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let mut hang = Vec::new();
    for _ in 0..8 {
        sup.wait_ready(Duration::from_secs(30)).await.unwrap();
        let pid = sup.status().pid.unwrap();
        let t = Instant::now();
        kill(pid, rustix::process::Signal::STOP);
        next(&mut ev, EventKind::Exited).await;
        hang.push(t.elapsed());
    }
    sup.shutdown().await;
    println!(
        "| hang detection (SIGSTOP → killed), 100 ms × 2 + 100 ms | {:.0} ms | {:.0} ms | ≤ 350 ms |",
        pct(&mut hang, 0.5),
        pct(&mut hang, 0.99)
    );

    // Memory limit: 100 MiB; `debug/alloc` 200 MiB; alloc answered → limit_exceeded.
    let mut c = config(data.path());
    c.max_rss = Some(100 * 1024 * 1024);
    c.restart.initial = Duration::ZERO;
    c.restart.max = Duration::ZERO;
    c.restart.max_restarts = 10_000;
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let mut mem = Vec::new();
    for _ in 0..8 {
        sup.wait_ready(Duration::from_secs(30)).await.unwrap();
        let t = Instant::now();
        let _ = sup
            .call::<_, Value>("debug/alloc", json!({"mb": 200}), CallOptions::default())
            .await;
        next(&mut ev, EventKind::LimitExceeded).await;
        mem.push(t.elapsed());
    }
    sup.shutdown().await;
    println!(
        "| memory limit: alloc 200 MiB → limit_exceeded (RSS sampled every 100 ms) | {:.0} ms | {:.0} ms | |",
        pct(&mut mem, 0.5),
        pct(&mut mem, 0.99)
    );

    // Per-call overhead: ping through the proxy vs direct.
    let n = 5000;
    let mut direct = Command::new(BIN);
    direct.arg("serve").env("QUARRY_DATA_DIR", data.path());
    let mut d = ping_latency(direct, n);
    let mut proxied = Command::new(BIN);
    proxied
        .args(["supervise", "--", BIN, "serve"])
        .env("QUARRY_DATA_DIR", data.path());
    let mut p = ping_latency(proxied, n);
    let (d50, d99, p50, p99) = (
        pct(&mut d, 0.5),
        pct(&mut d, 0.99),
        pct(&mut p, 0.5),
        pct(&mut p, 0.99),
    );
    println!(
        "| ping direct, window 1 | {:.1} µs | {:.1} µs | |",
        d50 * 1e3,
        d99 * 1e3
    );
    println!(
        "| ping through `quarry supervise` | {:.1} µs | {:.1} µs | overhead {:.1} µs p50 ({:.2}×) |",
        p50 * 1e3,
        p99 * 1e3,
        (p50 - d50) * 1e3,
        p50 / d50
    );
}
