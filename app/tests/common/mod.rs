//! Shared helpers for the app's integration tests: running the binary, the repository root,
//! fixture paths, and a directory's files with their bytes (to prove a run changed nothing).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Runs the `pmedit` binary: success, stdout, stderr.
pub fn pmedit<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pmedit"))
        .args(args)
        .output()
        .expect("run pmedit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file or directory under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Every file below `dir` with its bytes, sorted by path.
pub fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(listing(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// Copies the built-in demo model's files (config, tokenizer, weights, statistics) into `dir`.
pub fn copy_demo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "stats.safetensors",
    ] {
        std::fs::copy(root().join("public/models/demo").join(f), dir.join(f)).unwrap();
    }
}
