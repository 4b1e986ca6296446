//! Drives the real `quarry` binary over real pipes.
#![allow(dead_code)]

pub mod daemon;
pub mod qdrant;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long any single expected message may take (generous: CI machines are small).
pub const WAIT: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_quarry")
}

/// One running `quarry serve`.
pub struct Sidecar {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Vec<u8>>,
    stash: VecDeque<Value>,
    /// Everything written to stderr so far.
    pub stderr: Arc<Mutex<Vec<u8>>>,
    /// The `sidecar/ready` params.
    pub ready: Value,
    /// The data folder, when this helper made it.
    pub data: Option<tempfile::TempDir>,
}

impl Sidecar {
    /// `quarry serve --debug-methods ARGS`, waits for `sidecar/ready`.
    pub fn spawn(args: &[&str]) -> Sidecar {
        let mut cmd = Command::new(bin());
        cmd.arg("serve").arg("--debug-methods").args(args);
        Sidecar::spawn_cmd(cmd)
    }

    /// Spawns `cmd` with piped stdio and waits for `sidecar/ready`.
    pub fn spawn_cmd(mut cmd: Command) -> Sidecar {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "debug");
        }
        // Hermetic: a fresh data folder unless the caller chose one.
        let mut data = None;
        if !cmd.get_envs().any(|(k, _)| k == "QUARRY_DATA_DIR")
            && !cmd.get_args().any(|a| a == "--data-dir")
        {
            let dir = tempfile::tempdir().expect("temp dir");
            cmd.env("QUARRY_DATA_DIR", dir.path());
            data = Some(dir);
        }
        let mut child = cmd.spawn().expect("spawn quarry");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        let mut s = Sidecar {
            child,
            stdin,
            lines,
            stash: VecDeque::new(),
            stderr,
            ready: Value::Null,
            data,
        };
        // Through `quarry supervise`, supervisor events may precede the ready line.
        let mut before = Vec::new();
        let ready = loop {
            let v = s.recv();
            if v["method"] == "supervisor/event" {
                before.push(v);
                continue;
            }
            break v;
        };
        assert_eq!(ready["method"], "sidecar/ready", "first message: {ready}");
        s.ready = ready["params"].clone();
        s.stash.extend(before);
        s
    }

    /// `quarry serve --debug-methods --data-dir DATA ARGS`.
    pub fn spawn_in(data: &std::path::Path, args: &[&str]) -> Sidecar {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--debug-methods")
            .arg("--data-dir")
            .arg(data)
            .args(args);
        Sidecar::spawn_cmd(cmd)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write");
        stdin.flush().expect("flush");
    }

    /// Writes one line (a `\n` is appended).
    pub fn send_line(&mut self, line: &str) {
        let mut b = line.as_bytes().to_vec();
        b.push(b'\n');
        self.send_bytes(&b);
    }

    pub fn send(&mut self, v: &Value) {
        self.send_line(&v.to_string());
    }

    /// Sends a request `{jsonrpc, id, method, params}`.
    pub fn call(&mut self, id: impl Into<Value>, method: &str, params: Value) {
        let mut msg = json!({"jsonrpc": "2.0", "id": id.into(), "method": method});
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send(&msg);
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    pub fn cancel(&mut self, id: impl Into<Value>) {
        self.notify("notifications/cancelled", json!({"requestId": id.into()}));
    }

    /// Next message from stdout as raw bytes (without checking it).
    pub fn recv_raw_timeout(&mut self, d: Duration) -> Option<Vec<u8>> {
        match self.lines.recv_timeout(d) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Next message, which must be one JSON line; `None` on timeout or end of stdout.
    pub fn recv_timeout(&mut self, d: Duration) -> Option<Value> {
        if let Some(v) = self.stash.pop_front() {
            return Some(v);
        }
        let line = self.recv_raw_timeout(d)?;
        assert_eq!(line.last(), Some(&b'\n'), "unterminated line");
        assert_eq!(
            line.iter().filter(|b| **b == b'\n').count(),
            1,
            "raw newline inside a message"
        );
        Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&line)
            )
        }))
    }

    pub fn recv(&mut self) -> Value {
        self.recv_timeout(WAIT).unwrap_or_else(|| {
            panic!(
                "no message within {WAIT:?}; stderr:\n{}",
                self.stderr_text()
            )
        })
    }

    /// Asserts nothing arrives within `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(v) = self.recv_timeout(d) {
            panic!("unexpected message: {v}");
        }
    }

    /// Waits for the response with `id`; other messages are kept for later.
    pub fn response(&mut self, id: impl Into<Value>) -> Value {
        self.response_within(id, WAIT)
    }

    /// [`Sidecar::response`], waiting up to `wait` (for work known to be long).
    #[allow(dead_code)]
    pub fn response_within(&mut self, id: impl Into<Value>, wait: Duration) -> Value {
        let id = id.into();
        let deadline = Instant::now() + wait;
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.recv_timeout(left).unwrap_or_else(|| {
                panic!(
                    "no response for id {id}; seen {skipped:?}; stderr:\n{}",
                    self.stderr_text()
                )
            });
            if v.get("id") == Some(&id) && v.get("method").is_none() {
                break v;
            }
            skipped.push(v);
        };
        for v in skipped.into_iter().rev() {
            self.stash.push_front(v);
        }
        found
    }

    /// Calls and waits for the response.
    pub fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) -> Value {
        let id = id.into();
        self.call(id.clone(), method, params);
        self.response(id)
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "sidecar did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads every remaining message until stdout closes.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out: Vec<Value> = self.stash.drain(..).collect();
        while let Some(v) = self.recv_timeout(WAIT) {
            out.push(v);
        }
        out
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `error` object of a response, or a panic naming what came instead.
pub fn error_of(v: &Value) -> &Value {
    v.get("error")
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
}

/// Asserts `v` is an error with `code` and `data.kind`.
pub fn assert_error(v: &Value, code: i64, kind: &str) {
    let e = error_of(v);
    assert_eq!(e["code"], code, "{v}");
    assert_eq!(e["data"]["kind"], kind, "{v}");
    assert!(e["message"].is_string(), "{v}");
}

/// The `result` of a response, or a panic naming what came instead.
pub fn result_of(v: &Value) -> &Value {
    v.get("result")
        .unwrap_or_else(|| panic!("expected a result, got {v}"))
}

/// Copies the folder `from` into `to` (created if missing), recursively.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A fresh copy of the committed fixture folder `tests/fixtures/NAME` (tests modify
/// their copy): the temporary folder and the copy, `TMP/NAME`.
pub fn fixture_copy(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join(name);
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
        &root,
    );
    (tmp, root)
}
