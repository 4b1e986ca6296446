//! The main job through `quarry-supervisor`: spawn the supervised sidecar, ingest a
//! folder with progress, search.
//!
//! `cargo run --release --example rust_host -- [ROOT] [QUERY ...]` (ROOT defaults to the
//! standard library of the machine's `python3`; the `quarry` binary is `$QUARRY_BIN`, or
//! the one built next to this example).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarry_supervisor::{CallOptions, Config, Supervisor};
use serde_json::{Value, json};

fn quarry_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("QUARRY_BIN") {
        return p.into();
    }
    // target/<profile>/examples/rust_host → target/<profile>/quarry
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("quarry"))
        .expect("target dir")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = match args.first() {
        Some(r) => r.clone(),
        None => {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
                ])
                .output()?;
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let queries: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![
            "parse command line arguments".into(),
            "ThreadPoolExecutor".into(),
        ]
    };
    let mut config = Config::new(quarry_bin(), ["serve"]);
    if let Some(d) = std::env::var_os("QUARRY_DATA_DIR") {
        config.child.env.push(("QUARRY_DATA_DIR".into(), d));
    }
    let sup = Supervisor::spawn(config)?;
    sup.wait_ready(Duration::from_secs(30)).await?;
    println!("sidecar ready (pid {:?})", sup.status().pid);
    let started = Instant::now();
    let result: Value = sup
        .call(
            "documents/ingestDir",
            json!({"root": root, "exclude": ["site-packages/", "__pycache__/"]}),
            CallOptions {
                idempotent: true,
                on_progress: Some(Arc::new(move |p| {
                    eprint!(
                        "\r{}/{} files  {}  {:.1} s",
                        p.progress,
                        p.total.unwrap_or(0.0),
                        p.message.unwrap_or_default(),
                        started.elapsed().as_secs_f64()
                    );
                })),
                ..CallOptions::default()
            },
        )
        .await?;
    eprintln!();
    println!("indexed {root}: {result}");
    for q in &queries {
        let r: Value = sup
            .call(
                "search/query",
                json!({"query": q, "limit": 5}),
                CallOptions::default(),
            )
            .await?;
        println!("\n{q:?}");
        for h in r["hits"].as_array().into_iter().flatten() {
            println!(
                "  {}:{}-{}  {:.2}",
                h["path"].as_str().unwrap_or_default(),
                h["startLine"],
                h["endLine"],
                h["score"].as_f64().unwrap_or_default()
            );
        }
    }
    sup.shutdown().await;
    Ok(())
}
