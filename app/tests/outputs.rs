//! What `pmedit` may write: `--out` never replaces or deletes an input or a directory pmedit did
//! not write, an earlier output is swapped for the new one, resumes refuse other settings, a
//! corpus is read only as far as `--max-tokens`, and the authors' `.npz` files are paired with
//! their own layers.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{fixture, listing, root};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs pmedit on the CPU; (exit status 0, stderr).
fn pmedit(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pmedit"))
        .args(["--device", "cpu"])
        .args(args)
        .output()
        .expect("run pmedit");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{:?}: {err}",
        out.status
    );
    (out.status.success(), err)
}

/// A copy of the demo model at `root/models/demo`.
fn demo_copy(root_dir: &Path) -> PathBuf {
    let dir = root_dir.join("models/demo");
    common::copy_demo(&dir);
    dir
}

fn edit_args<'a>(model: &'a Path, requests: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "edit",
        "--model",
        s(model),
        "--requests",
        s(requests),
        "--algo",
        "rome",
        "--templates",
        "none",
        "--steps",
        "3",
        "--out",
        s(out),
    ]
}

/// `--out models --overwrite` once deleted the input model inside `models/`.
#[test]
fn overwrite_never_replaces_an_input_or_a_foreign_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let model = demo_copy(tmp.path());
    let requests = root().join("tests/bad-inputs/requests/one-fact.json");
    let notes = tmp.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("thesis.tex"), "years of work").unwrap();
    let before = listing(tmp.path());
    for (out, says) in [
        (tmp.path().join("models"), "contains the input"),
        (model.clone(), "is the input"),
        (model.join("edited"), "lies inside the input"),
        (notes.clone(), "pmedit replaces only what it wrote"),
        (requests.clone(), "is the input"),
    ] {
        let mut args = edit_args(&model, &requests, &out);
        args.push("--overwrite");
        let (ok, err) = pmedit(&args);
        assert!(!ok && err.contains(says), "--out {}: {err}", out.display());
        assert_eq!(listing(tmp.path()), before, "--out {} changed something", out.display());
    }
    // A statistics output never replaces a model file or a file pmedit did not write.
    for out in [model.join("model.safetensors"), notes.join("thesis.tex")] {
        let (ok, err) = pmedit(&[
            "stats",
            "--model",
            s(&model),
            "--corpus",
            s(&fixture("wikitext-excerpt.txt")),
            "--layers",
            "0",
            "--max-tokens",
            "64",
            "--out",
            s(&out),
        ]);
        assert!(!ok && err.contains("not a pmedit statistics file"), "{err}");
        assert_eq!(listing(tmp.path()), before);
    }
}

/// An earlier edit's directory is replaced whole (swapped, no sibling left), only with
/// `--overwrite`.
#[test]
fn overwrite_replaces_an_earlier_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = root().join("public/models/demo");
    let requests = root().join("tests/bad-inputs/requests/one-fact.json");
    let out = tmp.path().join("edited");
    let (ok, err) = pmedit(&edit_args(&model, &requests, &out));
    assert!(ok, "{err}");
    std::fs::write(out.join("stale.txt"), "from the first run").unwrap();
    let (ok, err) = pmedit(&edit_args(&model, &requests, &out));
    assert!(!ok && err.contains("--overwrite"), "{err}");
    let mut args = edit_args(&model, &requests, &out);
    args.push("--overwrite");
    let (ok, err) = pmedit(&args);
    assert!(ok, "{err}");
    assert!(out.join("pmedit-edit.json").is_file() && out.join("model.safetensors").is_file());
    assert!(!out.join("stale.txt").exists(), "the old output is replaced whole");
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("edited")],
        "no .partial/.old sibling left"
    );
}

fn stats_args<'a>(corpus: &'a Path, out: &'a Path, max_tokens: &'a str) -> Vec<&'a str> {
    static TINY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    vec![
        "stats",
        "--model",
        TINY.get_or_init(|| fixture("tiny-gpt2").display().to_string()),
        "--corpus",
        s(corpus),
        "--layers",
        "0,1",
        "--max-tokens",
        max_tokens,
        "--out",
        s(out),
    ]
}

#[test]
fn stats_resume_with_other_settings_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c0.safetensors");
    let corpus = fixture("wikitext-excerpt.txt");
    let (ok, err) = pmedit(&stats_args(&corpus, &out, "300"));
    assert!(ok, "{err}");
    let before = std::fs::read(&out).unwrap();
    let mut args = stats_args(&corpus, &out, "500");
    args.push("--resume");
    let (ok, err) = pmedit(&args);
    assert!(
        !ok && err.contains("--resume") && err.contains("max_tokens=300"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the earlier statistics are untouched"
    );
    // The same settings resume (nothing left to do) and give the same file.
    let mut args = stats_args(&corpus, &out, "300");
    args.push("--resume");
    let (ok, err) = pmedit(&args);
    assert!(ok, "{err}");
}

/// A corpus is read only as far as `--max-tokens` needs: from a pipe that never ends, the run
/// still finishes (reading the whole input first would wait forever).
#[cfg(unix)]
#[test]
fn stats_read_a_corpus_only_as_far_as_max_tokens() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("endless.txt");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = tmp.path().join("c0.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pmedit"))
        .args(["--device", "cpu"])
        .args(stats_args(&fifo, &out, "200"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(fixture("wikitext-excerpt.txt")).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            // At most 256 MiB, then the pipe is held open without an end: a reader that wants
            // the whole file never finishes.
            let mut written = 0usize;
            while written < 256 << 20 {
                if f.write_all(&text).is_err() {
                    return written;
                }
                written += text.len();
            }
            std::thread::sleep(std::time::Duration::from_secs(120));
            written
        })
    };
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed().as_secs() > 90 {
            let _ = child.kill();
            panic!("pmedit stats kept reading the endless corpus past --max-tokens");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("200 tokens"), "{err}");
    let written = writer.join().unwrap();
    assert!(written < 64 << 20, "read {written} bytes for 200 tokens");
}

/// A safetensors file's header (JSON) and data section.
fn safetensors_parts(b: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&b[8..8 + n]).unwrap(), b[8 + n..].to_vec())
}

/// Each `.npz` goes with its own layer: the `--layers` entry at its position (not the sorted
/// list), or the layer in its name; the result is the same either way.
#[test]
fn import_stats_pairs_each_file_with_its_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = fixture("authors-npz/transformer.h.0.mlp.c_proj_float32_mom2_120.npz");
    let l1 = fixture("authors-npz/transformer.h.1.mlp.c_proj_float32_mom2_80.npz");
    let model = fixture("tiny-gpt2");
    // `pmedit [global flags] import-stats --npz L1 L0 [extra] --out OUT`.
    let import = |out: &Path, global: &[&str], extra: &[&str]| {
        let mut args = global.to_vec();
        args.extend([
            "import-stats",
            "--model",
            s(&model),
            "--npz",
            s(&l1),
            s(&l0),
            "--out",
            s(out),
        ]);
        args.extend_from_slice(extra);
        pmedit(&args)
    };
    let run = |out: &Path, global: &[&str], extra: &[&str]| {
        let (ok, err) = import(out, global, extra);
        assert!(ok, "{err}");
        std::fs::read(out).unwrap()
    };
    // Tensors (names, shapes, bytes) of a statistics file; its metadata map has no fixed order.
    let tensors = |b: &[u8]| {
        let (mut header, data) = safetensors_parts(b);
        header.as_object_mut().unwrap().remove("__metadata__");
        (header, data)
    };
    let by_name = tensors(&run(&tmp.path().join("a.safetensors"), &[], &[]));
    let given = tensors(&run(&tmp.path().join("b.safetensors"), &[], &["--layers", "1,0"]));
    assert_eq!(by_name, given);
    // The model is loaded in the dtype --dtype asks (a 7B model only fits in memory in half
    // precision), and the fingerprint — the embeddings' signs — is the same either way.
    let d = tmp.path().join("d.safetensors");
    run(&d, &["--dtype", "f16"], &[]);
    let meta = |p: &Path| safetensors_parts(&std::fs::read(p).unwrap()).0["__metadata__"]["model"].clone();
    assert_eq!(meta(&d), meta(&tmp.path().join("a.safetensors")));
    // The layers' token counts (120 and 80) land on their own layers.
    let (header, data) = &by_name;
    let count = |layer: u32| {
        let off = header[format!("layer.{layer}.count")]["data_offsets"][0]
            .as_u64()
            .unwrap() as usize;
        f32::from_le_bytes(data[off..off + 4].try_into().unwrap())
    };
    assert_eq!((count(0), count(1)), (120.0, 80.0));
    // Sorting `--layers` and then zipping it with the files would swap them: refused instead
    // when the given list names a layer twice.
    let (ok, err) = import(&tmp.path().join("e.safetensors"), &[], &["--layers", "1,1"]);
    assert!(!ok && err.contains("both statistics for layer 1"), "{err}");
}

/// An `eval` rerun into the same `--out` with other settings would silently reuse finished grid
/// points: refused, naming what differs.
#[test]
fn eval_resume_with_other_settings_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exp");
    let args = |seed: &'static str| {
        vec![
            "eval".to_string(),
            "--model".into(),
            root().join("public/models/demo").display().to_string(),
            "--dataset".into(),
            root().join("public/models/demo/heldout.json").display().to_string(),
            "--algo".into(),
            "rome".into(),
            "--limit".into(),
            "1".into(),
            "--ge-tokens".into(),
            "0".into(),
            "--templates".into(),
            "none".into(),
            "--steps".into(),
            "2".into(),
            "--seed".into(),
            seed.into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| pmedit(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, err) = run(args("0"));
    assert!(ok, "{err}");
    let before = listing(&out);
    let (ok, err) = run(args("1"));
    assert!(!ok && err.contains("seed 0 ≠ 1"), "{err}");
    assert_eq!(listing(&out), before);
    let (ok, err) = run(args("0"));
    assert!(ok && err.contains("done already"), "{err}");
}
