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

/// The first `n` `.py` files both sides of a bench index — UTF-8, not blank, at most
/// 4 MiB (the engine's default file limit) — each as a flat name (`json/decoder.py`
/// becomes `json__decoder.py`) and its bytes.
pub fn flat_texts(n: usize) -> Vec<(String, Vec<u8>)> {
    let (root, files) = py_files();
    let mut out = Vec::new();
    for f in files {
        if out.len() == n {
            break;
        }
        let content = std::fs::read(&f).expect("a stdlib file reads");
        if content.len() > 4 << 20
            || std::str::from_utf8(&content).map_or(true, |t| t.trim().is_empty())
        {
            continue;
        }
        let name = f
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('/', "__");
        out.push((name, content));
    }
    out
}
