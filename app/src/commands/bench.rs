//! `pmedit bench`: forward pass, generation and statistics throughput on the chosen device
//! (median of `--runs`), or with `--op` one operation timed run by run as JSON lines — the form
//! `bench/compare.py` interleaves with the PyTorch reference (`bench/pytorch/bench.py`) to write
//! BENCHMARKS.md. Ops: load, forward, generate, stats, rome, emmet-N, memit-N, solve-emmet-N,
//! solve-memit-N, cholesky-N, matmul-N.

use pmedit_engine::block_on;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use pmedit_engine::edit::objective::{Objective, solve_with_c0};
use pmedit_engine::edit::prompts::padded_batch;
use pmedit_engine::edit::stats::{LayerStats, accumulate};
use pmedit_engine::edit::{Algorithm, EditRequest, Editor, Overrides, TemplateChoice, ValueOverrides};
use pmedit_engine::generate::{GenerateOptions, generate_ids};
use pmedit_engine::model::EditableModel;
use serde_json::json;

use crate::device::Target;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `f` `runs` times after one warm-up; returns the median seconds.
fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(median(t))
}

/// `batch` prompts of `seq` spread-out token ids (the PyTorch side builds the same ones).
fn synthetic_ids(batch: usize, seq: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| (0..seq).map(|t| ((b * 7919 + t * 104_729) % vocab) as u32).collect())
        .collect()
}

/// `warmup` untimed runs, then `runs` timed runs of `f`, each printed with its GFLOP/s for `flops`.
fn time_flops(op: &str, warmup: usize, runs: usize, flops: f64, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    for _ in 0..warmup {
        f()?;
    }
    for _ in 0..runs {
        let s = Instant::now();
        f()?;
        let secs = s.elapsed().as_secs_f64();
        println!("{}", json!({"op": op, "seconds": secs, "gflops": flops / secs / 1e9}));
    }
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A well-conditioned SPD matrix `A Aᵀ / n + I` on `device`.
fn spd(n: usize, device: &Device) -> Tensor<2> {
    let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), device);
    a.clone().matmul(a.transpose()) / n as f64 + Tensor::<2>::eye(n, device)
}

/// Synthetic requests shaped like CounterFact's (the PyTorch side builds the same texts).
fn requests(n: usize) -> Result<Vec<EditRequest>> {
    (0..n)
        .map(|i| {
            Ok(EditRequest::new(
                "{} was born in the city of",
                &format!("Person {i}"),
                "Paris",
            )?)
        })
        .collect()
}

/// The largest matrix side `--op matmul-N` / `cholesky-N` builds (32768² f32 is 4 GiB).
const MAX_SIDE: usize = 32_768;
/// The largest batch `--op solve-…-N` / `emmet-N` / `memit-N` builds.
const MAX_BATCH: usize = 100_000;

/// The size N in `--op NAME-N`, checked to lie in 1..=max before anything is allocated.
fn op_size(op: &str, text: &str, max: usize) -> Result<usize> {
    let n: usize = text
        .parse()
        .map_err(|_| anyhow::anyhow!("--op {op}: `{text}` is not a size"))?;
    anyhow::ensure!((1..=max).contains(&n), "--op {op}: the size must be 1–{max}");
    Ok(n)
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Hugging Face GPT-2 model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 5, value_parser = crate::ranges::positive)]
    pub runs: usize,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 16, value_parser = crate::ranges::positive)]
    pub batch: usize,
    /// Tokens per prompt.
    #[arg(long, default_value_t = 32, value_parser = crate::ranges::positive)]
    pub seq: usize,
    /// Untimed runs of `--op` before the timed ones (kernel compilation, autotuning, caches).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Time one operation run by run (JSON lines): load, forward, generate, stats, rome,
    /// emmet-N, memit-N, solve-emmet-N, solve-memit-N, cholesky-N, matmul-N.
    #[arg(long)]
    pub op: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pmedit bench`: one `--op` run by run, or the throughput summary.
pub fn dispatch(args: BenchArgs, choice: Target) -> Result<()> {
    let (runs, batch, seq) = (args.runs.max(1), args.batch.max(1), args.seq.max(1));
    match &args.op {
        Some(op) => run_op(&args.model, choice, op, args.warmup, runs, batch, seq),
        None => run(&args.model, choice, runs, batch, seq, args.json),
    }
}

/// Times one `--op`, printing `{"op", "seconds", …}` per run (after `warmup` untimed runs).
pub fn run_op(
    dir: &Path,
    choice: Target,
    op: &str,
    warmup: usize,
    runs: usize,
    batch: usize,
    seq: usize,
) -> Result<()> {
    let emit = |extra: serde_json::Value| println!("{}", extra);
    if op == "load" {
        let start = Instant::now();
        let (_m, _sel) = super::load(dir, choice)?;
        emit(json!({"op": op, "seconds": start.elapsed().as_secs_f64(), "peak_rss_mb": peak_rss_mb()}));
        return Ok(());
    }
    let sel = crate::device::select(choice.0)?;
    let device = sel.device.clone();
    let sync = |t: Tensor<2>| {
        let _ = t.sum().into_scalar::<f32>();
    };
    if let Some(n) = op.strip_prefix("matmul-") {
        let n = op_size(op, n, MAX_SIDE)?;
        let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
        return time_flops(op, warmup, runs, 2.0 * (n as f64).powi(3), || {
            sync(pmedit_engine::linalg::matmul(a.clone(), a.clone()));
            Ok(())
        });
    }
    if let Some(n) = op.strip_prefix("cholesky-") {
        let n = op_size(op, n, MAX_SIDE)?;
        let a = spd(n, &device);
        let b = Tensor::<2>::random([n, 64], Distribution::Normal(0.0, 1.0), &device);
        let flops = (n as f64).powi(3) / 3.0 + 2.0 * (n * n * 64) as f64;
        return time_flops(op, warmup, runs, flops, || {
            sync(block_on(pmedit_engine::linalg::spd_solve(a.clone(), b.clone())).map_err(|e| anyhow::anyhow!("{e}"))?);
            Ok(())
        });
    }
    let m = pmedit_engine::load::load_model_dir(dir, &device)?;
    let last = ((m.config.n_layer() - 1) as f64 * 17.0 / 47.0).round() as usize;
    let mut f: Box<dyn FnMut() -> Result<()>> = match op {
        "forward" | "generate" | "stats" => {
            let seq = seq.min(m.config.n_positions());
            let ids = synthetic_ids(batch, seq, m.config.vocab_size());
            let tokens = padded_batch(&ids, &device);
            let model = m.model.clone();
            match op {
                "forward" => Box::new(move || {
                    let logits = model.forward(tokens.clone());
                    let _ = logits.narrow(1, seq - 1, 1).sum().into_scalar::<f32>();
                    Ok(())
                }),
                "generate" => {
                    let opts = GenerateOptions {
                        max_new_tokens: 32.min(m.config.n_positions() - 1),
                        top_k: 1,
                        stop_at_eos: false,
                        ..Default::default()
                    };
                    Box::new(move || {
                        block_on(generate_ids(&model, &[ids[0][0]], &opts, None))?;
                        Ok(())
                    })
                }
                _ => {
                    let (layer, width, device) = (m.config.n_layer() / 2, m.config.d_inner(), device.clone());
                    Box::new(move || {
                        let mut st = vec![LayerStats::new(layer, width, &device)];
                        accumulate(&model, &ids, batch, &mut st)?;
                        let _ = st[0].sum.clone().sum().into_scalar::<f32>();
                        Ok(())
                    })
                }
            }
        }
        _ if op.starts_with("solve-") => {
            let parts: Vec<&str> = op.split('-').collect();
            anyhow::ensure!(parts.len() == 3, "use solve-emmet-N or solve-memit-N");
            let e = op_size(op, parts[2], MAX_BATCH)?;
            let objective = match parts[1] {
                "memit" => Objective::Memit,
                _ => Objective::Emmet { alpha: 0.1 },
            };
            let n = m.config.d_inner();
            let c0 = spd(n, &device);
            let k = Tensor::<2>::random([n, e], Distribution::Normal(0.0, 1.0), &device);
            let r = Tensor::<2>::random([e, m.config.d_model()], Distribution::Normal(0.0, 1.0), &device);
            Box::new(move || {
                // The factorisation of λ·C0 is part of the solve (the PyTorch side does it too).
                sync(block_on(solve_with_c0(
                    c0.clone(),
                    100.0,
                    objective,
                    k.clone(),
                    r.clone(),
                ))?);
                Ok(())
            })
        }
        _ => {
            let (algorithm, n) = match op.split_once('-') {
                None => (Algorithm::parse(op)?, 1),
                Some((a, n)) => (Algorithm::parse(a)?, op_size(op, n, MAX_BATCH)?),
            };
            let rank_one = matches!(algorithm, Algorithm::Rome | Algorithm::RRome);
            // The PyTorch reference's settings (`Editor` in bench/pytorch/bench.py), not the
            // model's preset: the demo preset's 80 value steps would time 4× the work of its 20.
            let overrides = Overrides {
                layers: Some(vec![last]),
                lambda: Some(if rank_one { 1.0 } else { 100.0 }),
                alpha: Some(0.1),
                value: ValueOverrides {
                    steps: Some(20),
                    lr: Some(0.5),
                    weight_decay: Some(0.5),
                    kl_factor: Some(0.0625),
                    clamp_norm_factor: Some(4.0),
                    ..Default::default()
                },
                templates: Some(TemplateChoice::Bare),
                report_targets: Some(0),
                ..Default::default()
            };
            let c0 = spd(m.config.d_inner(), &device);
            let mut editor = Editor::new(m.model.clone(), m.tokenizer.clone());
            editor.set_statistics(vec![LayerStats {
                layer: last,
                sum: c0,
                count: 1,
            }])?;
            let plan = editor.plan(algorithm, &overrides)?;
            let reqs = requests(n)?;
            Box::new(move || {
                block_on(editor.edit(&reqs, &plan, |_| {}))?;
                let _ = editor.model().edited_weight(last).sum().into_scalar::<f32>();
                editor.undo();
                Ok(())
            })
        }
    };
    for _ in 0..warmup {
        f()?;
    }
    for _ in 0..runs {
        let s = Instant::now();
        f()?;
        emit(json!({"op": op, "seconds": s.elapsed().as_secs_f64()}));
    }
    Ok(())
}

pub fn run(dir: &Path, choice: Target, runs: usize, batch: usize, seq: usize, as_json: bool) -> Result<()> {
    let start = Instant::now();
    let (m, sel) = super::load(dir, choice)?;
    let load_s = start.elapsed().as_secs_f64();
    let device = sel.device.clone();
    let seq = seq.min(m.config.n_positions());
    let ids = synthetic_ids(batch, seq, m.config.vocab_size());
    let tokens = padded_batch(&ids, &device);
    let forward_s = time(runs, || {
        let logits = m.model.forward(tokens.clone());
        let _ = logits.narrow(1, seq - 1, 1).sum().into_scalar::<f32>();
        Ok(())
    })?;
    let gen_tokens = 32.min(m.config.n_positions() - 1);
    let opts = GenerateOptions {
        max_new_tokens: gen_tokens,
        top_k: 1,
        stop_at_eos: false,
        ..Default::default()
    };
    let generate_s = time(runs, || {
        block_on(generate_ids(&m.model, &[ids[0][0]], &opts, None))?;
        Ok(())
    })?;
    let layer = m.config.n_layer() / 2;
    let stats_s = time(runs, || {
        let mut st = vec![LayerStats::new(layer, m.config.d_inner(), &device)];
        accumulate(&m.model, &ids, batch, &mut st)?;
        let _ = st[0].sum.clone().sum().into_scalar::<f32>();
        Ok(())
    })?;
    let n = (batch * seq) as f64;
    let out = json!({
        "model": dir, "device": sel.description, "runs": runs,
        "load_s": load_s,
        "forward": {"batch": batch, "seq": seq, "median_s": forward_s, "tokens_per_s": n / forward_s},
        "generate": {"tokens": gen_tokens, "median_s": generate_s, "tokens_per_s": gen_tokens as f64 / generate_s},
        "stats": {"layer": layer, "median_s": stats_s, "tokens_per_s": n / stats_s},
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{} on {} (median of {runs})", dir.display(), sel.description);
        println!("  load      {load_s:.2} s");
        println!(
            "  forward   {batch}×{seq}: {forward_s:.3} s  ({:.0} tokens/s)",
            n / forward_s
        );
        println!(
            "  generate  {gen_tokens} tokens: {generate_s:.3} s  ({:.1} tokens/s)",
            gen_tokens as f64 / generate_s
        );
        println!(
            "  stats     layer {layer}: {stats_s:.3} s  ({:.0} tokens/s)",
            n / stats_s
        );
    }
    Ok(())
}
