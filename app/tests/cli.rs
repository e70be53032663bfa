//! The `pmedit` binary end to end: predictions against the transformers reference, stats, edits
//! of CounterFact requests, and clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{fixture, pmedit, root};

fn devices() -> Vec<&'static str> {
    // lavapipe in CI (PMEDIT_REQUIRE_WGPU=1 there); skipped where no adapter exists.
    let gpu_ok = pmedit(&[
        "--device",
        "gpu",
        "info",
        "--model",
        fixture("tiny-gpt2").to_str().unwrap(),
    ])
    .0;
    assert!(
        gpu_ok || std::env::var("PMEDIT_REQUIRE_WGPU").is_err(),
        "wgpu required but unavailable"
    );
    if gpu_ok { vec!["cpu", "gpu"] } else { vec!["cpu"] }
}

#[test]
fn predict_json_matches_transformers_top10() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gpt2-reference.json")).unwrap()).unwrap();
    let case = &reference["f32"][0];
    for device in devices() {
        for dir in ["tiny-gpt2", "tiny-gpt2-hub"] {
            let (ok, out, err) = pmedit(&[
                "--device",
                device,
                "predict",
                "--model",
                fixture(dir).to_str().unwrap(),
                "--prompt",
                case["prompt"].as_str().unwrap(),
                "--json",
            ]);
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let top = v["top_k"].as_array().unwrap();
            assert_eq!(top.len(), 10);
            for (i, t) in top.iter().enumerate() {
                assert_eq!(t["id"], case["top10_ids"][i], "{device} {dir} rank {i}");
                let d = t["logprob"].as_f64().unwrap() - case["top10_logprobs"][i].as_f64().unwrap();
                assert!(d.abs() < 1e-4, "{device} {dir} rank {i}: Δ {d:e}");
                assert!(t["token"].is_string());
            }
        }
    }
}

#[test]
fn bad_model_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let (ok, _, err) = pmedit(&[
        "--device",
        "cpu",
        "predict",
        "--model",
        dir.path().to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(!ok);
    assert!(err.contains("config.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn stats_for(model: &Path, out: &Path) {
    let (ok, _, err) = pmedit(&[
        "--device",
        "cpu",
        "stats",
        "--model",
        model.to_str().unwrap(),
        "--corpus",
        fixture("wikitext-excerpt.txt").to_str().unwrap(),
        "--layers",
        "0-1",
        "--max-tokens",
        "4096",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
}

/// 1, 16 and 256 CounterFact requests (EasyEdit shape) with every algorithm; the output loads.
#[test]
fn edit_counterfact_requests_with_every_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("facts-gpt2");
    let stats = tmp.path().join("stats.safetensors");
    stats_for(&model, &stats);
    let input_before = std::fs::read(model.join("model.safetensors")).unwrap();
    let runs = ["rome", "r-rome", "memit", "emmet"]
        .into_iter()
        .flat_map(|a| ["1", "16", "256"].map(|n| (a, n)));
    for (algo, n) in runs {
        let out = tmp.path().join(format!("{algo}-{n}"));
        let (ok, stdout, err) = pmedit(&[
            "--device",
            "cpu",
            "edit",
            "--model",
            model.to_str().unwrap(),
            "--requests",
            fixture("counterfact-256.json").to_str().unwrap(),
            "--limit",
            n,
            "--algo",
            algo,
            "--stats",
            stats.to_str().unwrap(),
            "--templates",
            "none",
            "--out",
            out.to_str().unwrap(),
            "--save-delta",
            tmp.path()
                .join(format!("{algo}-{n}.delta.safetensors"))
                .to_str()
                .unwrap(),
            "--json",
        ]);
        assert!(ok, "{algo} {n}: {err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            v["edit"]["requests"].as_array().unwrap().len(),
            n.parse::<usize>().unwrap()
        );
        let (ok, _, err) = pmedit(&[
            "--device",
            "cpu",
            "predict",
            "--model",
            out.to_str().unwrap(),
            "--prompt",
            "The mother tongue of Danielle Darrieux is",
        ]);
        assert!(ok, "edited model does not load: {err}");
        assert!(out.join("pmedit-edit.json").is_file());
        // The weights get the same permissions as the other files, not a temp file's 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode("model.safetensors"), mode("config.json"), "{algo} {n}");
        }
    }
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        input_before,
        "input model modified"
    );
}

#[test]
fn edit_refuses_bad_requests_and_existing_output() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"prompt": "The capital of France is", "subject": "Germany", "target_new": "Rome"}]"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let model = fixture("facts-gpt2");
    let edit = || {
        let (ok, _, err) = pmedit(&[
            "--device",
            "cpu",
            "edit",
            "--model",
            model.to_str().unwrap(),
            "--requests",
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!ok);
        err
    };
    let err = edit();
    assert!(err.contains("request 0") && err.contains("Germany"), "{err}");
    assert!(!out.exists(), "no output may appear");
    std::fs::create_dir(&out).unwrap();
    let err = edit();
    assert!(err.contains("already exists"), "{err}");
}

/// Two shards merged equal one pass over the whole corpus; a resumed run adds nothing twice.
#[test]
fn sharded_stats_merge_to_the_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-gpt2");
    let corpus = fixture("wikitext-excerpt.txt");
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "--device",
            "cpu",
            "stats",
            "--model",
            model.to_str().unwrap(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--layers",
            "0,1",
            "--max-tokens",
            "2000",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = pmedit(&args);
        assert!(ok, "{err}");
    };
    let (whole, a, b, merged) = (
        tmp.path().join("whole.st"),
        tmp.path().join("a.st"),
        tmp.path().join("b.st"),
        tmp.path().join("merged.st"),
    );
    run(&[], &whole);
    run(&["--shard", "0/2"], &a);
    run(&["--shard", "1/2"], &b);
    let (ok, _, err) = pmedit(&[
        "merge-stats",
        "--inputs",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let read = |p: &Path| read_stats(p).0;
    let w = read(&whole);
    assert_same_stats(&w, &read(&merged), "merged");
    // Resuming a finished run processes nothing more.
    run(&["--resume"], &whole);
    assert_eq!(read(&whole)[0].count, w[0].count);
}

/// A statistics file's layers and metadata.
fn read_stats(
    p: &Path,
) -> (
    Vec<pmedit_engine::edit::stats::LayerStats>,
    pmedit_engine::load::stats_file::StatsMeta,
) {
    pmedit_engine::load::stats_file::stats_from_bytes(&std::fs::read(p).unwrap(), "x", &burn::prelude::Device::flex())
        .unwrap()
}

/// Equal token counts and C0 within 1e-5 of its largest entry, layer by layer (sums over shards
/// add in another order than one pass does).
fn assert_same_stats(
    want: &[pmedit_engine::edit::stats::LayerStats],
    got: &[pmedit_engine::edit::stats::LayerStats],
    what: &str,
) {
    assert_eq!(want.len(), got.len(), "{what}");
    for (x, y) in want.iter().zip(got) {
        assert_eq!(x.count, y.count, "{what}");
        let (cx, cy): (Vec<f32>, Vec<f32>) = (
            x.c0().unwrap().into_data().iter().collect(),
            y.c0().unwrap().into_data().iter().collect(),
        );
        let scale = cx.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (p, q) in cx.iter().zip(&cy) {
            assert!((p - q).abs() <= 1e-5 * scale, "{what}: {p} vs {q}");
        }
    }
}

/// `pmedit stats --shard auto` as each cluster scheduler starts it: a Slurm job array
/// (`--array=1-3`: ids from 1) and a Kubernetes Indexed Job (indices from 0, `--shards 3`), every
/// worker with the same command line and `{shard}` in `--out`. Each run's merged shards equal
/// one pass over the whole corpus; a missing or repeated shard is refused.
#[test]
fn scheduler_sharded_stats_merge_to_the_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-gpt2");
    let corpus = fixture("wikitext-excerpt.txt");
    let stats = |extra: &[&str], out: &Path, env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pmedit"));
        cmd.args(["--device", "cpu", "stats", "--model"])
            .arg(&model)
            .arg("--corpus")
            .arg(&corpus)
            .args(["--layers", "0,1", "--max-tokens", "2000", "--window", "64", "--out"])
            .arg(out)
            .args(extra);
        for k in [
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_COUNT",
            "SLURM_ARRAY_TASK_MIN",
            "JOB_COMPLETION_INDEX",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let merge = |inputs: &[PathBuf], out: &Path| {
        let mut args = vec!["merge-stats".to_string(), "--inputs".into()];
        args.extend(inputs.iter().map(|p| p.display().to_string()));
        args.extend(["--out".into(), out.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pmedit(&args)
    };
    let read = read_stats;
    let whole = tmp.path().join("whole.st");
    stats(&[], &whole, &[]);
    let (w, wmeta) = read(&whole);

    let slurm_out = tmp.path().join("slurm.{shard}.st");
    for id in 1..=3 {
        let env = [
            ("SLURM_ARRAY_TASK_ID", id.to_string()),
            ("SLURM_ARRAY_TASK_COUNT", "3".to_string()),
            ("SLURM_ARRAY_TASK_MIN", "1".to_string()),
        ];
        stats(&["--shard", "auto"], &slurm_out, &env);
    }
    let k8s_out = tmp.path().join("k8s.{shard}.st");
    for index in 0..3 {
        stats(
            &["--shard", "auto", "--shards", "3"],
            &k8s_out,
            &[("JOB_COMPLETION_INDEX", index.to_string())],
        );
    }
    for run in ["slurm", "k8s"] {
        let parts: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("{run}.{i}.st"))).collect();
        let merged = tmp.path().join(format!("{run}.st"));
        let (ok, _, err) = merge(&parts, &merged);
        assert!(ok, "{err}");
        let (m, mmeta) = read(&merged);
        assert_eq!(mmeta.windows_done, wmeta.windows_done, "{run}");
        assert_eq!(
            mmeta.settings, wmeta.settings,
            "{run}: the merged run reads as the whole one"
        );
        assert_same_stats(&w, &m, run);
        // A lost worker is noticed; the same shard twice is refused.
        let (ok, _, err) = merge(&parts[..2], &tmp.path().join(format!("{run}-partial.st")));
        assert!(!ok && err.contains("[2]") && err.contains("missing"), "{err}");
        let (ok, _, err) = merge(
            &[parts[0].clone(), parts[0].clone(), parts[1].clone()],
            &tmp.path().join(format!("{run}-twice.st")),
        );
        assert!(!ok && err.contains("both shard 0/3"), "{err}");
    }
    let (ok, _, err) = pmedit(&[
        "merge-stats",
        "--allow-partial",
        "--inputs",
        tmp.path().join("k8s.0.st").to_str().unwrap(),
        "--out",
        tmp.path().join("partial.st").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
}

fn demo() -> PathBuf {
    root().join("public/models/demo")
}

/// The README's first command runs: the model knew the true facts (ES 0 before), the single ROME
/// edit takes (ES 100: the new object beats the true one after the rewrite prompt), and the
/// batch edit moves probability towards the new objects (EM rises; the demo model takes 95 of
/// its 100 held-out edits one at a time: public/models/demo/README.md).
#[test]
fn demo_runs_and_edits_move_the_model() {
    let (ok, out, err) = pmedit(&["--device", "cpu", "demo", "--model", demo().to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = |k: &str, phase: &str, x: &str| v[k][phase]["counterfact"][x].as_f64().unwrap();
    assert_eq!(m("single", "before", "es"), 0.0, "{out}");
    assert_eq!(m("batch", "before", "es"), 0.0, "{out}");
    assert_eq!(m("single", "after", "es"), 100.0, "{out}");
    assert!(m("single", "after", "em") > m("single", "before", "em"), "{out}");
    assert!(m("batch", "after", "em") > m("batch", "before", "em"), "{out}");
    // The human-readable run prints the metrics table.
    let (ok, out, err) = pmedit(&[
        "--device",
        "cpu",
        "demo",
        "--model",
        demo().to_str().unwrap(),
        "--batch",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("CounterFact metrics") && out.contains("rome (1 fact) after"),
        "{out}"
    );
}

#[test]
fn demo_refuses_a_malformed_fact() {
    let (ok, _, err) = pmedit(&[
        "--device",
        "cpu",
        "demo",
        "--model",
        demo().to_str().unwrap(),
        "--fact",
        "only two|parts",
    ]);
    assert!(!ok);
    assert!(err.contains("subject|prompt|target"), "{err}");
}

/// A sweep over two batch sizes and two algorithms writes per-record lines, summaries, the
/// Markdown table and plots; run again, it resumes (every grid point is skipped).
#[test]
fn eval_sweep_writes_reports_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("sweep");
    let (model, heldout) = (demo(), demo().join("heldout.json"));
    let args = [
        "--device",
        "cpu",
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        heldout.to_str().unwrap(),
        "--algo",
        "rome,emmet",
        "--batch-sizes",
        "1,2",
        "--num-batches",
        "2",
        "--templates",
        "none",
        "--out",
        dir.to_str().unwrap(),
    ];
    let (ok, stdout, err) = pmedit(&args);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("| unedited |") && stdout.contains("| rome |"),
        "{stdout}"
    );
    for f in [
        "summary.csv",
        "summary.json",
        "table.md",
        "ES-vs-batch.svg",
        "S-vs-batch.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2, "{csv}");
    let lines = std::fs::read_to_string(dir.join("emmet-L0-b2-lambda1000/records.jsonl")).unwrap();
    assert!(dir.join("rome-L0-b1-lambda1/summary.json").is_file());
    assert_eq!(lines.lines().count(), 4);
    let (ok, _, err) = pmedit(&args);
    assert!(ok, "{err}");
    assert_eq!(err.matches("skipping").count(), 4, "{err}");
}

/// `pmedit --device cpu eval` on the demo model and its held-out facts, writing to `dir`.
fn eval_demo(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let (model, heldout) = (demo(), demo().join("heldout.json"));
    let mut all = vec![
        "--device",
        "cpu",
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        heldout.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    pmedit(&all)
}

/// Lifelong editing: ROME and AlphaEdit batches pile up on the demo model (`--sequential`), every
/// record edited so far is scored after each batch, and the lifelong report (CSV, Markdown, one SVG
/// per metric with a line per algorithm) is written; the early-stop and norm-anchor options run.
#[test]
fn sequential_eval_writes_the_lifelong_report() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("lifelong");
    let (ok, stdout, err) = eval_demo(
        &dir,
        &[
            "--algo",
            "rome,alphaedit",
            "--sequential",
            "--batch-size",
            "2",
            "--num-batches",
            "3",
            "--templates",
            "none",
            "--steps",
            "10",
            "--stop-at-top1",
            "--norm-anchor",
            "--ge-tokens",
            "0",
        ],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("| alphaedit |"), "{stdout}");
    let csv = std::fs::read_to_string(dir.join("lifelong.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2 * 3, "{csv}");
    // Edits so far grow by the batch size, batch after batch, for both algorithms.
    for algo in ["rome", "alphaedit"] {
        let edits: Vec<&str> = rows
            .iter()
            .filter(|r| r.starts_with(&format!("{algo},")))
            .map(|r| r.split(',').nth(5).unwrap())
            .collect();
        assert_eq!(edits, ["2", "4", "6"], "{algo}: {csv}");
    }
    let md = std::fs::read_to_string(dir.join("lifelong.md")).unwrap();
    assert!(
        md.contains("| rome | [0] | 2 | 6 |") && md.contains("| alphaedit | [0] | 2 | 6 |"),
        "{md}"
    );
    for metric in ["ES", "PS", "NS", "S"] {
        let svg = std::fs::read_to_string(dir.join(format!("lifelong-{metric}.svg"))).unwrap();
        assert!(
            svg.contains("alphaedit L[0] b=2") && svg.contains("rome L[0] b=2"),
            "{metric}"
        );
    }
    let point: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("alphaedit-L0-b2-lambda1000/summary.json")).unwrap())
            .unwrap();
    assert_eq!(point["lifelong"].as_array().unwrap().len(), 3);
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pmedit"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pmedit")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed().as_secs() < 120, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `pmedit edit` killed (SIGKILL) while writing over an existing output leaves the old model
/// intact; the next run clears the leftover and completes.
#[test]
fn killed_edit_leaves_the_old_output_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let stats = tmp.path().join("stats.safetensors");
    let model = fixture("facts-gpt2");
    stats_for(&model, &stats);
    let requests = tmp.path().join("r.json");
    std::fs::write(
        &requests,
        r#"[{"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux", "target_new": "English"}]"#,
    )
    .unwrap();
    let out = tmp.path().join("edited");
    let args = [
        "--device",
        "cpu",
        "edit",
        "--model",
        model.to_str().unwrap(),
        "--requests",
        requests.to_str().unwrap(),
        "--algo",
        "rome",
        "--stats",
        stats.to_str().unwrap(),
        "--templates",
        "none",
        "--out",
        out.to_str().unwrap(),
        "--overwrite",
    ];
    let (ok, _, err) = pmedit(&args);
    assert!(ok, "{err}");
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    let partial = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(".edited.partial-"))
            .map(|e| e.path())
    };
    let mut child = spawn(&args, &[("PMEDIT_FAULT_PAUSE_BEFORE_RENAME_MS", "60000")]);
    wait_for("the temporary output", || {
        partial().is_some_and(|p| p.join("pmedit-edit.json").exists() && p.join("model.safetensors").exists())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before,
        "the old output changed"
    );
    assert!(partial().is_some(), "SIGKILL leaves the temporary directory");
    let (ok, _, err) = pmedit(&args);
    assert!(ok, "{err}");
    assert!(partial().is_none(), "the leftover was not cleared");
}

/// `pmedit stats` killed mid-run keeps a complete checkpoint; `--resume` finishes with the same
/// statistics as an uninterrupted run.
#[test]
fn killed_stats_resume_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("facts-gpt2");
    let args = |out: &Path| -> Vec<String> {
        [
            "--device",
            "cpu",
            "stats",
            "--model",
            model.to_str().unwrap(),
            "--corpus",
            fixture("wikitext-excerpt.txt").to_str().unwrap(),
            "--layers",
            "1",
            "--window",
            "8",
            "--batch",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = tmp.path().join("whole.safetensors");
    let a: Vec<String> = args(&whole);
    let (ok, _, err) = pmedit(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");

    let part = tmp.path().join("part.safetensors");
    let b: Vec<String> = args(&part);
    let mut child = spawn(&b.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    wait_for("a checkpoint", || part.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let device = burn::prelude::Device::flex();
    let load = |p: &Path| {
        let (s, meta) =
            pmedit_engine::load::stats_file::stats_from_bytes(&std::fs::read(p).unwrap(), "stats", &device).unwrap();
        let sum: Vec<f32> = s[0].sum.clone().into_data().iter::<f32>().collect();
        (s[0].count, meta.windows_done, sum)
    };
    let cut = load(&part).1;
    assert!(cut < load(&whole).1, "the run finished before it was killed");
    let mut resume = b.clone();
    resume.push("--resume".into());
    let (ok, _, err) = pmedit(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(err.contains(&format!("resuming after {cut} windows")), "{err}");
    let (x, y) = (load(&whole), load(&part));
    assert_eq!((x.0, x.1), (y.0, y.1));
    let max = x.2.iter().zip(&y.2).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = x.2.iter().map(|a| a.abs()).fold(0f32, f32::max);
    assert!(max <= 1e-5 * scale, "resumed statistics differ by {max}");
}

/// `--drop-dependent` leaves out the second request for the same subject, says so, and edits.
#[test]
fn edit_drops_dependent_requests_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("edited");
    let (ok, _, stderr) = pmedit(&[
        "--device",
        "cpu",
        "edit",
        "--model",
        demo().to_str().unwrap(),
        "--requests",
        root()
            .join("tests/bad-inputs/requests/duplicate-subjects.json")
            .to_str()
            .unwrap(),
        "--algo",
        "emmet",
        "--alpha",
        "0",
        "--templates",
        "none",
        "--drop-dependent",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("dropped request 1 (Hamid Algar → German)") && stderr.contains("that of request 0"),
        "{stderr}"
    );
    assert!(out.join("model.safetensors").is_file());
}

/// The arguments of a `train-demo` run small enough for a test (12 facts, 3 held out, one block
/// of width 32) with `vocab` tokens, `steps` training steps and the flag `flag`, writing to `demo`
/// in a fresh temporary directory: (that directory, `demo`, the arguments).
fn tiny_train_demo(vocab: usize, steps: usize, flag: &str) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let cf = root().join("data/counterfact-edit-1k.json");
    let corpus = fixture("wikitext-excerpt.txt");
    let (vocab, steps) = (vocab.to_string(), steps.to_string());
    let args = [
        "--device",
        "cpu",
        "train-demo",
        "--counterfact",
        cf.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--facts",
        "12",
        "--heldout",
        "3",
        "--text-bytes",
        "3000",
        "--layers",
        "1",
        "--width",
        "32",
        "--heads",
        "2",
        "--vocab",
        &vocab,
        "--context",
        "128",
        "--steps",
        &steps,
        "--batch",
        "4",
        "--out",
        out.to_str().unwrap(),
        flag,
    ]
    .map(String::from)
    .to_vec();
    (tmp, out, args)
}

/// `train-demo --weights-from` refreshes a trained directory without training: the weights, loss
/// curve and training time are the earlier run's, and a file the command does not write (a
/// README next to the model) survives `--overwrite`.
#[test]
fn train_demo_refreshes_from_earlier_weights_and_keeps_other_files() {
    let (_tmp, out, base) = tiny_train_demo(1024, 3, "--overwrite");
    let (ok, _, err) = pmedit(&base);
    assert!(ok, "{err}");
    let weights = std::fs::read(out.join("model.safetensors")).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("train.json")).unwrap()).unwrap();
    std::fs::write(out.join("README.md"), "notes about this model").unwrap();

    let mut again = base.clone();
    again.extend(["--weights-from".into(), out.display().to_string()]);
    let (ok, _, err) = pmedit(&again);
    assert!(ok, "{err}");
    assert!(err.contains("weights from") && !err.contains("training on"), "{err}");
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), weights);
    let refreshed: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(refreshed["train_seconds"], report["train_seconds"]);
    assert_eq!(refreshed["loss_curve"], report["loss_curve"]);
    assert_eq!(
        std::fs::read_to_string(out.join("README.md")).unwrap(),
        "notes about this model"
    );
    assert!(out.join("stats.safetensors").exists());

    // Other settings give another tokenizer: refused, and the directory is untouched.
    let mut other = again.clone();
    let v = other.iter().position(|a| *a == "--vocab").unwrap();
    other[v + 1] = "600".into();
    let (ok, _, err) = pmedit(&other);
    assert!(!ok && err.contains("other settings"), "{err}");
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), weights);
}

/// `--heldout-by-extraction` teaches the held-out facts only as subject lines: refused without
/// them, and the report gives the held-out facts' own accuracy.
#[test]
fn train_demo_teaches_heldout_facts_by_subject_lines_only_when_asked() {
    let (_tmp, out, base) = tiny_train_demo(600, 2, "--heldout-by-extraction");
    let (ok, _, err) = pmedit(&base);
    assert!(!ok && err.contains("needs --subject-lines"), "{err}");
    assert!(!out.exists());

    let mut with_lines = base.clone();
    with_lines.extend(["--subject-lines".into(), "2".into()]);
    let (ok, _, err) = pmedit(&with_lines);
    assert!(ok, "{err}");
    // 9 trained records × 3 (prompt, paraphrase, neighbourhood) + 3 held-out neighbourhoods + 12 × 2
    // subject lines.
    assert!(err.contains("corpus: 54 fact sentences from 12 records"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(report["heldout_by_extraction"], true);
    assert_eq!(report["subject_lines"], 2);
    let held = report["top1_heldout_rewrite"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&held), "{report}");
}

/// `--storage-steps` trains in two phases, named in the loss curve and the report: subject lines
/// first, then everything with the MLPs fixed.
#[test]
fn train_demo_trains_a_storage_phase_first_when_asked() {
    let (_tmp, out, mut args) = tiny_train_demo(600, 2, "--frozen-attention");
    let layers = args.iter().position(|a| a == "--layers").unwrap();
    args[layers + 1] = "2".into();
    args.push("1".into());
    let (ok, _, err) = pmedit(&args);
    assert!(!ok && err.contains("need --storage-steps"), "{err}");
    args.extend(["--storage-steps", "10", "--storage-from", "2"].map(String::from));
    let (ok, _, err) = pmedit(&args);
    assert!(!ok && err.contains("at least one of the 2 blocks"), "{err}");
    assert!(!out.exists());
    *args.last_mut().unwrap() = "1".into();
    let (ok, _, err) = pmedit(&args);
    assert!(ok, "{err}");
    assert!(err.contains("storage phase: 12 subject lines and "), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(
        (report["storage_steps"].as_u64(), report["storage_from"].as_u64()),
        (Some(10), Some(1))
    );
    let phases: Vec<(u64, &str)> = report["loss_curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["step"].as_u64().unwrap(), p["phase"].as_str().unwrap()))
        .collect();
    assert_eq!(phases, [(0, "storage"), (10, "facts")]);
}

/// Issue 4's CI bar: `pmedit eval` runs all four algorithms on a single layer and distributed over
/// two, and writes the table, summaries, per-point records and plots (5 value steps: this checks
/// the plumbing, not the metrics).
#[test]
fn eval_runs_every_algorithm_single_and_distributed() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("grid");
    let (ok, stdout, err) = eval_demo(
        &dir,
        &[
            "--algo",
            "rome,r-rome,memit,emmet",
            "--layers",
            "0;0-1",
            "--batch-size",
            "1",
            "--num-batches",
            "1",
            "--templates",
            "none",
            "--steps",
            "5",
            "--ge-tokens",
            "0",
        ],
    );
    assert!(ok, "{err}");
    for algo in ["rome", "r-rome", "memit", "emmet"] {
        for layers in ["[0]", "[0, 1]"] {
            assert!(
                stdout.contains(&format!("| {algo} | {layers} |")),
                "{algo} {layers}: {stdout}"
            );
        }
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8 * 2, "{csv}");
    for f in [
        "table.md",
        "summary.json",
        "ES-vs-lambda.svg",
        "memit-L0_1-b1-lambda100/records.jsonl",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

/// A Llama-family and a GPT-J model directory end to end: `info` names the family, `stats`, `edit`
/// with ROME, MEMIT and EMMET, and the edited directory loads (`predict`) with its prediction
/// moved, written in transformers' layout (the edited matrix `[d, d_inner]`, as `nn.Linear`).
#[test]
fn llama_and_gptj_model_dirs_take_stats_edits_and_predictions() {
    for (dir, family, edited, shape) in [
        (
            "tiny-llama3",
            "llama",
            "model.layers.1.mlp.down_proj.weight",
            vec![64, 64],
        ),
        ("tiny-gptj", "gptj", "transformer.h.1.mlp.fc_out.weight", vec![64, 256]),
    ] {
        family_end_to_end(dir, family, edited, &shape);
    }
}

fn family_end_to_end(dir: &str, family: &str, edited: &str, shape: &[usize]) {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture(dir);
    let (ok, stdout, err) = pmedit(&["--device", "cpu", "info", "--model", model.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["model_type"], family);
    let stats = tmp.path().join("stats.safetensors");
    stats_for(&model, &stats);
    let requests = tmp.path().join("requests.json");
    std::fs::write(
        &requests,
        r#"[{"prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target_new": "Rome"}]"#,
    )
    .unwrap();
    let prompt = "The Eiffel Tower is located in the city of";
    let top = |dir: &Path| {
        let (ok, stdout, err) = pmedit(&[
            "--device",
            "cpu",
            "predict",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            prompt,
            "--json",
        ]);
        assert!(ok, "{} does not load: {err}", dir.display());
        stdout
    };
    let before = top(&model);
    for algo in ["rome", "memit", "emmet"] {
        let out = tmp.path().join(algo);
        let (ok, _, err) = pmedit(&[
            "--device",
            "cpu",
            "edit",
            "--model",
            model.to_str().unwrap(),
            "--requests",
            requests.to_str().unwrap(),
            "--algo",
            algo,
            "--layers",
            "1",
            "--stats",
            stats.to_str().unwrap(),
            "--templates",
            "none",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{dir} {algo}: {err}");
        assert_ne!(top(&out), before, "{dir} {algo}: the edited model predicts as before");
        let header = pmedit_engine::load::SafetensorsFile::open(
            pmedit_engine::load::FileSource::open(&out.join("model.safetensors")).unwrap(),
        )
        .unwrap();
        assert_eq!(header.info(edited).unwrap().shape, shape, "{dir} {algo}");
    }
}

/// `pmedit trace --json` on the demo model: the tables are `[tokens][layers]`, the last block's
/// output restored at the last token is the clean prediction, and a prompt without the subject
/// is a clear error.
#[test]
fn trace_json_has_the_three_tables() {
    let demo = root().join("public/models/demo");
    let (ok, out, err) = pmedit(&[
        "--device",
        "cpu",
        "trace",
        "--model",
        demo.to_str().unwrap(),
        "--prompt",
        "The mother tongue of Danielle Darrieux is",
        "--subject",
        "Danielle Darrieux",
        "--samples",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n_tok = v["tokens"].as_array().unwrap().len();
    for k in ["hidden", "mlp", "attn"] {
        let t = v[k].as_array().unwrap();
        assert_eq!(t.len(), n_tok, "{k}");
        assert!(t.iter().all(|row| row.as_array().unwrap().len() == 16), "{k}");
    }
    let last = v["hidden"][n_tok - 1][15].as_f64().unwrap();
    assert!((last - v["p_clean"].as_f64().unwrap()).abs() < 1e-4);
    assert!(v["p_corrupt"].as_f64().unwrap() < v["p_clean"].as_f64().unwrap());
    assert_eq!(v["answer"], " French");

    let (ok, _, err) = pmedit(&[
        "--device",
        "cpu",
        "trace",
        "--model",
        demo.to_str().unwrap(),
        "--prompt",
        "The Eiffel Tower is in",
        "--subject",
        "Danielle Darrieux",
    ]);
    assert!(!ok);
    assert!(err.contains("does not contain the subject"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A batch whose value optimisation runs in many groups keeps one group's memory: the last step
/// builds no autodiff graph (an unconsumed graph would hold every activation of its group until a
/// backward pass that never comes — 2.9 GB for these 200 requests with one step, 14 GB for 1,000).
#[test]
fn many_value_groups_do_not_pile_up_memory() {
    let demo = root().join("public/models/demo");
    let facts: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(demo.join("facts.json")).unwrap()).unwrap();
    let subjects: Vec<&str> = facts.iter().filter_map(|f| f["subject"].as_str()).collect();
    let requests: Vec<serde_json::Value> = (0..200)
        .map(|i| {
            serde_json::json!({
                "prompt": "{} is located in",
                "subject": format!("{} of {}", subjects[i % subjects.len()], subjects[(i * 7 + 3) % subjects.len()]),
                "target_new": "Paris",
            })
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let req = tmp.path().join("requests.json");
    std::fs::write(&req, serde_json::to_string(&requests).unwrap()).unwrap();
    let (ok, out, err) = pmedit(&[
        "--device",
        "cpu",
        "edit",
        "--model",
        demo.to_str().unwrap(),
        "--requests",
        req.to_str().unwrap(),
        "--algo",
        "emmet",
        "--templates",
        "none",
        "--steps",
        "1",
        "--out",
        tmp.path().join("out").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak = v["edit"]["peak_memory_bytes"].as_f64().unwrap();
    assert!(peak < 600e6, "peak {:.0} MB", peak / 1e6);
}
