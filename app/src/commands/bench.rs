//! `pmedit bench`: forward pass, generation and statistics throughput on the chosen device
//! (median of `--runs`). The PyTorch side-by-side comparison is future work (issue 8).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use pmedit_engine::edit::prompts::padded_batch;
use pmedit_engine::edit::stats::{LayerStats, accumulate};
use pmedit_engine::generate::{GenerateOptions, generate_ids};
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

pub fn run(dir: &Path, choice: Target, runs: usize, batch: usize, seq: usize, as_json: bool) -> Result<()> {
    let start = Instant::now();
    let (m, sel) = super::load(dir, choice)?;
    let load_s = start.elapsed().as_secs_f64();
    let device = sel.device.clone();
    let seq = seq.min(m.config.n_positions);
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            (0..seq)
                .map(|t| ((b * 7919 + t * 104_729) % m.config.vocab_size) as u32)
                .collect()
        })
        .collect();
    let tokens = padded_batch(&ids, &device);
    let forward_s = time(runs, || {
        let logits = m.model.forward(tokens.clone());
        let _ = logits.narrow(1, seq - 1, 1).sum().into_scalar::<f32>();
        Ok(())
    })?;
    let gen_tokens = 32.min(m.config.n_positions - 1);
    let opts = GenerateOptions {
        max_new_tokens: gen_tokens,
        top_k: 1,
        stop_at_eos: false,
        ..Default::default()
    };
    let generate_s = time(runs, || {
        generate_ids(&m.model, &[ids[0][0]], &opts, None)?;
        Ok(())
    })?;
    let layer = m.config.n_layer / 2;
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
