//! Real Qdrant servers for tests: `$QUARRY_TEST_QDRANT`, else `../shared/bin/qdrant-server`
//! beside the repository. Each server runs on free loopback ports with its own temporary
//! storage and is killed when dropped. Without a server binary, tests say so and skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary, or why there is none.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("QUARRY_TEST_QDRANT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.exists() {
            Ok(p)
        } else {
            Err(format!("QUARRY_TEST_QDRANT={} does not exist", p.display()))
        };
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bin/qdrant-server");
    if beside.exists() {
        Ok(beside)
    } else {
        Err(format!(
            "no Qdrant server: set QUARRY_TEST_QDRANT or provide {}",
            beside.display()
        ))
    }
}

/// The server binary, or `None` after printing why the test is skipped.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    match binary() {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One running Qdrant node.
pub struct Server {
    binary: PathBuf,
    child: Option<Child>,
    /// Its storage (kept across [`Server::restart`]).
    pub storage: tempfile::TempDir,
    pub http_port: u16,
    pub grpc_port: u16,
    pub p2p_port: u16,
    api_key: Option<String>,
    /// Cluster: `--uri` of this node (first) or `--bootstrap` of the first node.
    cluster: Option<Vec<String>>,
    /// Its stderr and stdout, for failures.
    pub log: PathBuf,
}

impl Server {
    /// A single server, ready.
    pub fn start(binary: &std::path::Path) -> Server {
        Server::start_with(binary, None, None)
    }

    /// A single server requiring `api_key`, ready.
    pub fn start_with_key(binary: &std::path::Path, api_key: &str) -> Server {
        Server::start_with(binary, Some(api_key.to_owned()), None)
    }

    fn start_with(
        binary: &std::path::Path,
        api_key: Option<String>,
        cluster: Option<Vec<String>>,
    ) -> Server {
        Server::start_node(binary, free_port(), api_key, cluster)
    }

    /// A node on free ports (peer-to-peer on `p2p_port`), started and ready.
    fn start_node(
        binary: &std::path::Path,
        p2p_port: u16,
        api_key: Option<String>,
        cluster: Option<Vec<String>>,
    ) -> Server {
        let storage = tempfile::tempdir().expect("storage");
        let log = storage.path().join("server.log");
        let mut s = Server {
            binary: binary.to_owned(),
            child: None,
            http_port: free_port(),
            grpc_port: free_port(),
            p2p_port,
            storage,
            api_key,
            cluster,
            log,
        };
        s.spawn();
        s.wait_ready();
        s
    }

    fn spawn(&mut self) {
        let data = self.storage.path().join("data");
        let snapshots = self.storage.path().join("snapshots");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut cmd = Command::new(&self.binary);
        cmd.current_dir(self.storage.path())
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", &data)
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", &snapshots)
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(k) = &self.api_key {
            cmd.env("QDRANT__SERVICE__API_KEY", k);
        }
        if let Some(args) = &self.cluster {
            cmd.env("QDRANT__CLUSTER__ENABLED", "true")
                .env("QDRANT__CLUSTER__P2P__PORT", self.p2p_port.to_string())
                .args(args);
        }
        self.child = Some(cmd.spawn().expect("spawn the Qdrant server"));
    }

    /// Waits for `GET /readyz` to answer 200.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ready() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("the Qdrant server exited ({status}): {}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "the Qdrant server was not ready in 60 s: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether `GET /readyz` answers 200 now and the gRPC port accepts connections
    /// (the REST side answers first).
    pub fn ready(&self) -> bool {
        http_get(self.http_port, "/readyz").is_some_and(|(code, _)| code == 200)
            && std::net::TcpStream::connect(("127.0.0.1", self.grpc_port)).is_ok()
    }

    /// The gRPC URL for `--qdrant-url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text[text.floor_char_boundary(start)..].to_owned()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and storage (not waiting for it).
    pub fn respawn(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the server again and waits until it is ready.
    pub fn restart(&mut self) {
        self.respawn();
        self.wait_ready();
    }

    /// The REST API's answer to `GET path`: `(status, body)`.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of `n` nodes on loopback, every one ready and every peer known to the first.
pub fn cluster(binary: &std::path::Path, n: usize) -> Vec<Server> {
    let first_p2p = free_port();
    let first_uri = format!("http://127.0.0.1:{first_p2p}");
    let mut nodes = vec![Server::start_node(
        binary,
        first_p2p,
        None,
        Some(vec!["--uri".into(), first_uri.clone()]),
    )];
    for _ in 1..n {
        let p2p = free_port();
        let args = vec![
            "--bootstrap".to_owned(),
            first_uri.clone(),
            "--uri".to_owned(),
            format!("http://127.0.0.1:{p2p}"),
        ];
        nodes.push(Server::start_node(binary, p2p, None, Some(args)));
    }
    // Every peer known to the first node's consensus.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let peers = nodes[0]
            .get("/cluster")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["result"]["peers"].as_object().map(|p| p.len()))
            .unwrap_or(0);
        if peers >= n {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not form: {peers} peers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 GET on loopback: `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}
