//! Spawning the child so that it never outlives us: its own process group, resource
//! limits, and the Linux parent-death signal.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process, so every child is forked from one dedicated, long-lived spawner thread
//! (which enters the tokio runtime so that the child's pipes and exit are async).

use std::ffi::OsString;
use std::io;
use std::process::Stdio;
use std::sync::mpsc as std_mpsc;

use rustix::process::{Pid, Resource, Rlimit, Signal};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// What to run and its limits.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Program.
    pub program: OsString,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Extra environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory, if not ours.
    pub cwd: Option<std::path::PathBuf>,
    /// `RLIMIT_NOFILE` (soft and hard), if set.
    pub max_open_files: Option<u64>,
    /// `RLIMIT_AS` in bytes (soft and hard), if set.
    pub max_address_space: Option<u64>,
}

type Request = (ChildSpec, oneshot::Sender<io::Result<Child>>);

/// The dedicated spawner thread.
pub struct Spawner {
    tx: std_mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawner thread on the current runtime.
    ///
    /// Must be called inside a tokio runtime.
    pub fn start() -> io::Result<Spawner> {
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("quarry-spawner".into())
            .spawn(move || {
                let _enter = handle.enter();
                for (spec, reply) in rx {
                    let _ = reply.send(spawn_here(&spec));
                }
            })?;
        Ok(Spawner { tx })
    }

    /// Spawns `spec` from the spawner thread.
    pub async fn spawn(&self, spec: ChildSpec) -> io::Result<Child> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((spec, reply))
            .map_err(|_| io::Error::other("spawner thread gone"))?;
        rx.await
            .map_err(|_| io::Error::other("spawner thread gone"))?
    }
}

fn spawn_here(spec: &ChildSpec) -> io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let parent = rustix::process::getpid();
    let nofile = spec.max_open_files;
    let address_space = spec.max_address_space;
    // SAFETY: the closure runs between fork and exec and only makes raw system calls
    // (rustix's linux_raw backend): no allocation, no locks. Its errors are raw OS
    // errors (`Errno` → `io::Error` stores the number; nothing is boxed).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(n) = nofile {
                rustix::process::setrlimit(
                    Resource::Nofile,
                    Rlimit {
                        current: Some(n),
                        maximum: Some(n),
                    },
                )?;
            }
            if let Some(n) = address_space {
                rustix::process::setrlimit(
                    Resource::As,
                    Rlimit {
                        current: Some(n),
                        maximum: Some(n),
                    },
                )?;
            }
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before the signal was armed.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `sig` to the child's process group (the child leads it).
pub fn signal_group(pid: u32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Exit code and terminating signal of a status.
pub fn describe(status: &std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    (status.code(), status.signal())
}
