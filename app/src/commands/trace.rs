//! `pmedit trace`: causal tracing of a fact (docs/MATH.md §12) — which states carry the recall.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::block_on;
use pmedit_engine::trace::{Trace, TraceOptions, trace};
use serde_json::json;

use crate::device::Target;

#[derive(clap::Args)]
pub struct TraceArgs {
    /// Hugging Face model directory (never modified).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt, which contains the subject.
    #[arg(long)]
    pub prompt: String,
    /// The subject whose token embeddings are corrupted.
    #[arg(long)]
    pub subject: String,
    /// Noise samples per restoration.
    #[arg(long, default_value_t = 10, value_parser = crate::ranges::positive)]
    pub samples: usize,
    /// Standard deviation of the noise (default: 3 × the token embeddings' standard deviation).
    #[arg(long)]
    pub noise: Option<f64>,
    /// Layers whose MLP or attention outputs are restored together, centred on each layer.
    #[arg(long, default_value_t = 10, value_parser = crate::ranges::positive)]
    pub window: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows (restorations × samples) per forward pass.
    #[arg(long, default_value_t = 256, value_parser = crate::ranges::positive)]
    pub batch: usize,
    /// Print JSON: `tokens`, `subject`, `answer`, `p_clean`, `p_corrupt`, and the `hidden`, `mlp`
    /// and `attn` tables, `[tokens][layers]`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TraceArgs, choice: Target) -> Result<()> {
    if let Some(x) = args.noise {
        ensure!(
            x.is_finite() && x >= 0.0,
            "--noise must be a finite number ≥ 0, not {x}"
        );
    }
    let (m, sel) = super::load(&args.model, choice)?;
    let opts = TraceOptions {
        samples: args.samples,
        noise: args.noise,
        window: args.window,
        seed: args.seed,
        batch: args.batch,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "trace {bar:40} {pos}/{len} restorations {per_sec} eta {eta}",
    )?);
    let start = std::time::Instant::now();
    let t = block_on(trace(
        &m.model,
        &m.tokenizer,
        &args.prompt,
        &args.subject,
        &opts,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    ))
    .with_context(|| format!("tracing {:?} in {}", args.prompt, args.model.display()))?;
    bar.finish_and_clear();
    if args.json {
        let mut out = serde_json::to_value(&t)?;
        out["prompt"] = json!(args.prompt);
        out["device"] = json!(sel.description);
        out["seconds"] = json!(start.elapsed().as_secs_f64());
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        show(&t, &args.prompt, &sel.description, start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The three tables as shaded grids (tokens down, layers across) with each one's strongest state.
fn show(t: &Trace, prompt: &str, device: &str, seconds: f64) {
    println!(
        "{prompt:?} → {:?}: p_clean {:.4}, p_corrupt {:.4} (noise σ {:.3}, {} samples, window {}) on {device} in {seconds:.1} s",
        t.answer, t.p_clean, t.p_corrupt, t.noise, t.samples, t.window
    );
    let width = t.tokens.iter().map(|s| s.chars().count()).max().unwrap_or(0).min(24);
    for (name, table) in [
        ("block outputs", &t.hidden),
        ("MLP outputs", &t.mlp),
        ("attention outputs", &t.attn),
    ] {
        let (lo, hi) = (t.p_corrupt, table.iter().flatten().copied().fold(t.p_corrupt, f32::max));
        let shade = |p: f32| {
            const RAMP: [char; 5] = [' ', '░', '▒', '▓', '█'];
            let x = if hi > lo {
                ((p - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            RAMP[(x * 4.0).round() as usize]
        };
        println!(
            "\nrestoring {name} (P({:?}) from {lo:.3} to {hi:.3}; layers →)",
            t.answer
        );
        let mut best = (0, 0, f32::MIN);
        for (i, row) in table.iter().enumerate() {
            let mark = if (t.subject[0]..=t.subject[1]).contains(&i) {
                '*'
            } else {
                ' '
            };
            let token: String = format!("{:?}", t.tokens[i]).chars().take(width + 2).collect();
            let cells: String = row.iter().map(|&p| shade(p)).collect();
            println!("{mark}{token:>w$} |{cells}|", w = width + 2);
            for (l, &p) in row.iter().enumerate() {
                if p > best.2 {
                    best = (i, l, p);
                }
            }
        }
        println!(
            "  strongest: token {} {:?}, layer {}: P = {:.4}",
            best.0, t.tokens[best.0], best.1, best.2
        );
    }
    println!("\n* subject tokens (corrupted)");
}
