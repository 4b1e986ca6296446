//! The gRPC transport's edges on real processes and sockets: TLS with a certificate made
//! here (rcgen), per-method figures shared by stdio `stats`, gRPC `Stats` and Prometheus,
//! malformed and oversized messages, the registry under concurrent starts.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, channel, discover};
use common::{Sidecar, bin};
use quarry::grpc::proto::{self, quarry_client::QuarryClient};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A request carrying `token`.
fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// `quarry daemon ARGS` run to its exit (for refusals at start): (code, stderr).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .arg("daemon")
        .args(args)
        .arg("--data-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .env("XDG_RUNTIME_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_any_address_with_a_certificate_and_refuses_plaintext() {
    let pki = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = pki.path().join("cert.pem");
    let key_file = pki.path().join("key.pem");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let (cert_arg, key_arg) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );

    // A key file without a key, a certificate without a certificate: refused at start.
    let (code, err) = refused(&[
        "--grpc-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &key_arg,
        "--tls-key",
        &key_arg,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
    // TLS without TCP makes no sense: clap refuses it.
    let (code, err) = refused(&["--tls-cert", &cert_arg, "--tls-key", &key_arg]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--grpc-listen"), "{err}");

    // With TLS, a non-loopback address is allowed (here all interfaces).
    let d = Daemon::start_with(
        &[
            "--grpc-listen",
            "0.0.0.0:0",
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
        ],
        &[],
    );
    let entry = d.entry();
    assert_eq!(entry["tls"], true, "{entry}");
    let tcp = entry["tcp"].as_str().unwrap();
    let token = entry["token"].as_str().unwrap().to_owned();
    let port = tcp.rsplit(':').next().unwrap();
    assert!(tcp.starts_with("0.0.0.0:"), "{tcp}");

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert.pem()))
        .domain_name("localhost");
    let secure = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(secure.clone())
        .check(HealthCheckRequest {
            service: "quarry.v1.Quarry".into(),
        })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, 1, "SERVING");
    let mut q = QuarryClient::new(secure);
    let e = q
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "TLS does not replace the token"
    );
    q.index_file(authed(
        proto::IndexFileRequest {
            path: "/tls/heron.txt".into(),
            content: Some(b"the heron stands still\n".to_vec()),
            ..Default::default()
        },
        &token,
    ))
    .await
    .unwrap();
    let hits = q
        .search(authed(
            proto::SearchRequest {
                query: "heron".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(hits[0].path, "/tls/heron.txt");

    // Plain HTTP/2 to the TLS port gets nowhere.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    match plain.connect().await {
        Err(_) => {}
        Ok(ch) => {
            let e = HealthClient::new(ch)
                .check(HealthCheckRequest::default())
                .await
                .unwrap_err();
            assert_ne!(e.code(), Code::Ok);
        }
    }
}

/// `GET /metrics` on `addr`: the body.
fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// A loopback address nothing listens on (bound, then released).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn stdio_grpc_and_prometheus_report_the_same_calls() {
    let (code, err) = refused(&["--metrics-listen", "0.0.0.0:9"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");

    let run = tempfile::tempdir().unwrap();
    let metrics = free_addr();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--metrics-listen", &metrics])
        .env("XDG_RUNTIME_DIR", run.path());
    let mut s = Sidecar::spawn_cmd(cmd);
    let socket = std::path::PathBuf::from(
        s.ready["endpoint"]
            .as_str()
            .unwrap()
            .strip_prefix("unix:")
            .unwrap(),
    );
    let v = s.request(1, "search/query", serde_json::json!({"query": "wren"}));
    assert!(v["result"]["hits"].is_array(), "{v}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let grpc_stats = rt.block_on(async {
        let mut q = QuarryClient::new(channel(&socket).await);
        for _ in 0..2 {
            q.search(proto::SearchRequest {
                query: "wren".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let e = q
            .search(proto::SearchRequest {
                query: "wren".into(),
                limit: 101,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        q.stats(proto::StatsRequest {}).await.unwrap().into_inner()
    });
    let search = &grpc_stats.methods["quarry.v1.Quarry/Search"];
    assert_eq!((search.count, search.ok), (3, 2), "{search:?}");
    assert_eq!(search.errors["invalid_params"], 1, "{search:?}");
    assert!(search.latency_us.as_ref().unwrap().max > 0);
    assert_eq!(
        grpc_stats.methods["search/query"].count, 1,
        "gRPC Stats sees the stdio calls"
    );
    assert!(grpc_stats.max_concurrency > 0 && grpc_stats.max_queue > 0);

    let v = s.request(2, "stats", serde_json::json!({}));
    let methods = &v["result"]["methods"];
    assert_eq!(methods["quarry.v1.Quarry/Search"]["count"], 3, "{v}");
    assert_eq!(
        methods["quarry.v1.Quarry/Search"]["errors"]["invalid_params"], 1,
        "{v}"
    );
    assert_eq!(methods["search/query"]["ok"], 1, "{v}");

    let text = scrape(&metrics);
    for line in [
        r#"quarry_requests_total{method="quarry.v1.Quarry/Search",outcome="ok"} 2"#,
        r#"quarry_requests_total{method="quarry.v1.Quarry/Search",outcome="invalid_params"} 1"#,
        r#"quarry_requests_total{method="search/query",outcome="ok"} 1"#,
        r#"quarry_request_duration_seconds_count{method="quarry.v1.Quarry/Search"} 3"#,
        "# TYPE quarry_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    s.close_stdin();
    assert_eq!(s.wait_exit().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_are_refused_and_the_server_lives() {
    let d = Daemon::start();
    let ch = channel(&d.socket).await;
    // Bytes that are not a SearchRequest: field 1 (a string) sent as a varint.
    let mut raw = tonic::client::Grpc::new(ch.clone());
    raw.ready().await.unwrap();
    let e = raw
        .unary::<_, proto::SearchResponse, _>(
            Request::new(prost_types::Duration {
                seconds: 7,
                nanos: 0,
            }),
            "/quarry.v1.Quarry/Search".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    // A message that does not decode is INTERNAL (grpc/doc/statuscodes.md).
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("decode"), "{e:?}");

    // Over the 16 MiB message limit: refused before decoding (tonic answers OUT_OF_RANGE
    // naming the limit), nothing indexed.
    let mut q = QuarryClient::new(ch.clone()).max_encoding_message_size(64 << 20);
    let e = q
        .index_file(proto::IndexFileRequest {
            path: "/big/blob.txt".into(),
            content: Some(vec![b'a'; 17 << 20]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("16777216"), "{e:?}");

    // The server lives on and answers the next call on the same connection.
    let r = q
        .index_file(proto::IndexFileRequest {
            path: "/small/finch.txt".into(),
            content: Some(b"the finch sings\n".to_vec()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.chunks >= 1);
    let hits = q
        .search(proto::SearchRequest {
            query: "blob finch".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    let paths: Vec<_> = hits.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(paths, ["/small/finch.txt"]);
}

#[test]
fn concurrent_starts_each_get_one_registry_entry_and_dead_ones_are_dropped() {
    let run = tempfile::tempdir().unwrap();
    // Five daemons starting at once in one runtime folder.
    let mut daemons: Vec<Daemon> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..5)
            .map(|_| scope.spawn(|| Daemon::start_in(run.path(), &[], &[])))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for d in &daemons {
        d.entry();
    }
    let mut live = discover(run.path());
    live.sort_by_key(|e| e["pid"].as_u64());
    let mut pids: Vec<_> = daemons.iter().map(|d| u64::from(d.child.id())).collect();
    pids.sort_unstable();
    let listed: Vec<_> = live.iter().map(|e| e["pid"].as_u64().unwrap()).collect();
    assert_eq!(listed, pids, "{live:?}");
    let sockets: std::collections::BTreeSet<_> =
        live.iter().map(|e| e["unix"].as_str().unwrap()).collect();
    assert_eq!(sockets.len(), 5);
    // No temporary file of an atomic write is left behind.
    let files: Vec<_> = std::fs::read_dir(run.path().join("quarry/instances"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(files.iter().all(|f| f.ends_with(".json")), "{files:?}");

    // Two die by kill -9: the others stay listed, the dead are dropped.
    for d in daemons.drain(..2) {
        let mut d = d;
        d.child.kill().unwrap();
        d.child.wait().unwrap();
    }
    let live = discover(run.path());
    assert_eq!(live.len(), 3, "{live:?}");
    assert_eq!(
        std::fs::read_dir(run.path().join("quarry/instances"))
            .unwrap()
            .count(),
        3
    );
}
