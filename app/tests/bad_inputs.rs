//! The bad-input suite: every case in `tests/bad-inputs/cases.json` runs `pmedit` on a small bad
//! file, request or flag and must fail with exit status 1 (no panic or abort), the named error
//! kind (`error[kind]` on stderr; `usage` for a flag clap refuses, `cli` for a plain `error:`
//! line) and message, leave no output behind, and leave its input files untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{listing, root};

use serde_json::Value;

/// A copy of the demo model with some files replaced by (or removed for) bad ones.
fn model_dir(into: &Path, replace: &serde_json::Map<String, Value>) -> PathBuf {
    let dir = into.join("model");
    common::copy_demo(&dir);
    for (name, with) in replace {
        match with.as_str() {
            Some(bad) => std::fs::copy(root().join("tests/bad-inputs").join(bad), dir.join(name)).map(drop),
            None => std::fs::remove_file(dir.join(name)),
        }
        .unwrap();
    }
    dir
}

#[test]
fn every_bad_input_gets_its_error_kind_and_leaves_no_output() {
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/bad-inputs/cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 36);
    let inputs_before = listing(&root().join("tests/bad-inputs"));
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let model = case["model"].as_object().map(|r| model_dir(tmp.path(), r));
        let model_before = model.as_deref().map(listing);
        let out = tmp.path().join("out");
        let args: Vec<String> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let a = a.as_str().unwrap();
                match a {
                    "{model}" => model.as_ref().unwrap().display().to_string(),
                    "{demo}" => root().join("public/models/demo").display().to_string(),
                    "{out}" => out.display().to_string(),
                    _ => match (
                        a.strip_prefix("{file:").and_then(|f| f.strip_suffix('}')),
                        a.strip_prefix("{file-text:").and_then(|f| f.strip_suffix('}')),
                    ) {
                        (Some(f), _) => root().join("tests/bad-inputs").join(f).display().to_string(),
                        // The first request's prompt of a requests file, filled in.
                        (_, Some(f)) => {
                            let text = std::fs::read_to_string(root().join("tests/bad-inputs").join(f)).unwrap();
                            let r: Value = serde_json::from_str(&text).unwrap();
                            r[0]["prompt"]
                                .as_str()
                                .unwrap()
                                .replace("{}", r[0]["subject"].as_str().unwrap())
                        }
                        _ => a.to_string(),
                    },
                }
            })
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pmedit"));
        cmd.args(["--device", "cpu"]).args(&args);
        for (k, v) in case["env"].as_object().into_iter().flatten() {
            cmd.env(k, v.as_str().unwrap());
        }
        let run = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        let kind = match case["kind"].as_str().unwrap() {
            "cli" => "error: ".to_string(),
            k => format!("error[{k}]"),
        };
        let says = case["says"].as_str().unwrap();
        if run.status.success() {
            failures.push(format!("{name}: succeeded"));
        } else if run.status.code() != Some(1) {
            failures.push(format!("{name}: exit status {:?}, not 1: {stderr}", run.status));
        } else if !stderr.contains(&kind) || !stderr.contains(says) {
            failures.push(format!("{name}: expected `{kind}` and `{says}`, got: {stderr}"));
        } else if stderr.contains("panicked") {
            failures.push(format!("{name}: panicked: {stderr}"));
        }
        if out.exists() {
            failures.push(format!("{name}: left an output at {}", out.display()));
        }
        // Nothing but the model copy (if any) in the scratch dir: no temporary files left over.
        let stray: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "model")
            .collect();
        if !stray.is_empty() {
            failures.push(format!("{name}: left {stray:?}"));
        }
        if let (Some(m), Some(before)) = (&model, model_before)
            && listing(m) != before
        {
            failures.push(format!("{name}: changed its model directory"));
        }
    }
    assert_eq!(
        listing(&root().join("tests/bad-inputs")),
        inputs_before,
        "an input file was modified"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
