//! The per-user service registry (GRPC.md §5): each Quarry process that serves gRPC
//! writes `<runtime folder>/instances/<pid>.json` atomically (temporary file, fsync,
//! rename; 0600) and removes it on exit. Readers take an entry for a live Quarry only
//! when its pid is alive *and* has the recorded kernel start time, so a reused pid is
//! never mistaken for it; they delete the entries that fail that test.
//!
//! No network broadcast: discovery is per user, through files only same-user processes
//! can read, and needs no open port.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Version of the entry format.
pub const REGISTRY_VERSION: u32 = 1;

/// One registry entry (GRPC.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Always [`REGISTRY_VERSION`].
    pub registry_version: u32,
    /// The process.
    pub pid: u32,
    /// The kernel's start time of `pid`, clock ticks since boot (`/proc/<pid>/stat`
    /// field 22).
    pub process_start: u64,
    /// Quarry's version.
    pub version: String,
    /// The wire protocol's version.
    pub protocol_version: u32,
    /// The data folder it serves.
    pub data_dir: String,
    /// `owner` (it holds the data folder).
    pub role: String,
    /// Its Unix socket.
    pub unix: String,
    /// Its TCP address, `null` when TCP is off.
    pub tcp: Option<String>,
    /// Whether TCP uses TLS.
    pub tls: bool,
    /// The bearer token its engine service requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `starting`, `serving` or `draining`.
    pub status: String,
    /// When it started, RFC 3339 UTC.
    pub started_at: String,
}

/// The registry folder: `<runtime folder>/instances` (0700).
pub fn dir() -> std::io::Result<PathBuf> {
    let d = crate::grpc::endpoint::runtime_dir()?.join("instances");
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(d),
        Err(e) => Err(e),
    }
}

/// The kernel start time of `pid` in clock ticks since boot, `None` when it is gone.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): the
    // state is field 3, so the start time (field 22) is the 20th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-29T12:00:00Z`).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Entry {
    /// The entry of this process, `serving` on `unix`.
    pub fn this_process(data_dir: &Path, unix: &Path) -> Entry {
        let pid = std::process::id();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Entry {
            registry_version: REGISTRY_VERSION,
            pid,
            process_start: process_start(pid).unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: quarry_protocol::control::PROTOCOL_VERSION,
            data_dir: data_dir.display().to_string(),
            role: "owner".into(),
            unix: unix.display().to_string(),
            tcp: None,
            tls: false,
            token: None,
            status: "serving".into(),
            started_at: rfc3339(now),
        }
    }

    /// Whether the process it names is alive and is the one that wrote it.
    pub fn is_live(&self) -> bool {
        process_start(self.pid) == Some(self.process_start)
    }
}

/// Writes `entry` as `<pid>.json` atomically (temporary file, fsync, rename), 0600.
///
/// Errors: the registry folder cannot be made or written.
pub fn publish(entry: &Entry) -> std::io::Result<PathBuf> {
    let dir = dir()?;
    let path = dir.join(format!("{}.json", entry.pid));
    let tmp = dir.join(format!(".{}.json.tmp", entry.pid));
    let text = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Sets the `role` of this process's entry (`owner` after a takeover, GRPC.md §6), if
/// it has one.
///
/// Errors: the entry cannot be read or written again.
pub fn set_role(role: &str) -> std::io::Result<()> {
    let path = dir()?.join(format!("{}.json", std::process::id()));
    let mut entry: Entry = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    entry.role = role.to_owned();
    publish(&entry).map(|_| ())
}

/// Removes this process's entry.
pub fn withdraw(pid: u32) {
    if let Ok(d) = dir() {
        let _ = std::fs::remove_file(d.join(format!("{pid}.json")));
    }
}

/// The live instances, by pid; entries of dead or reused pids (and unreadable ones)
/// are deleted on the way.
pub fn live() -> std::io::Result<Vec<Entry>> {
    let dir = dir()?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let entry = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
        match entry {
            Some(entry) if entry.is_live() => out.push(entry),
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out.sort_by_key(|e| e.pid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_040_000), "2026-11-30T12:00:00Z");
    }

    #[test]
    fn this_process_has_a_start_time() {
        let me = process_start(std::process::id()).unwrap();
        assert!(me > 0);
        assert_eq!(process_start(u32::MAX), None);
    }
}
