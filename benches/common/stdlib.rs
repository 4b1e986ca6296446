//! The corpus of the gRPC and shared-folder benches: this machine's Python standard
//! library.

use std::path::PathBuf;
use std::process::Command;

/// The standard library's root and every `.py` file under it (site-packages left out,
/// symlinks not followed), in path order.
pub fn py_files() -> (PathBuf, Vec<PathBuf>) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .expect("python3 runs");
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && p.file_name().is_some_and(|n| n != "site-packages") => {
                    dirs.push(p)
                }
                Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "py") => files.push(p),
                _ => {}
            }
        }
    }
    files.sort();
    (root, files)
}
