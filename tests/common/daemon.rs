//! A real `quarry daemon` for the gRPC suites: its own data and runtime folders, its
//! socket, its registry entry.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::{WAIT, bin};

/// A running `quarry daemon` with its own data folder and a runtime folder (its own,
/// or one shared with other daemons).
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub data: tempfile::TempDir,
    /// `XDG_RUNTIME_DIR`.
    pub run: PathBuf,
    _own_run: Option<tempfile::TempDir>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[], &[])
    }

    /// `quarry daemon ARGS` with `envs`, in a runtime folder of its own.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let run = tempfile::tempdir().unwrap();
        let mut d = Daemon::start_in(run.path(), args, envs);
        d._own_run = Some(run);
        d
    }

    /// `quarry daemon ARGS` with `envs` and the runtime folder `run`.
    pub fn start_in(run: &Path, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(bin())
            .arg("daemon")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .envs(envs.iter().copied())
            .env("XDG_RUNTIME_DIR", run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let socket = run.join("quarry").join(format!("{}.sock", child.id()));
        // Listening, not only bound: the socket file appears at bind(2), a moment before
        // listen(2), and a connect in between is refused.
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "nothing listens at {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon {
            child,
            socket,
            data,
            run: run.to_owned(),
            _own_run: None,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn channel(socket: &Path) -> Channel {
    quarry::grpc::endpoint::connect(socket).await.unwrap()
}

impl Daemon {
    /// This daemon's registry entry, once written.
    pub fn entry(&self) -> serde_json::Value {
        let path = self
            .run
            .join("quarry/instances")
            .join(format!("{}.json", self.child.id()));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(bytes) = std::fs::read(&path)
                && let Ok(v) = serde_json::from_slice(&bytes)
            {
                return v;
            }
            assert!(Instant::now() < deadline, "no registry entry");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `quarry discover --json` with the runtime folder `run`.
pub fn discover(run: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(bin())
        .args(["discover", "--json"])
        .env("XDG_RUNTIME_DIR", run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
