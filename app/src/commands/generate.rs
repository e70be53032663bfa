//! `pmedit generate`.

use pmedit_engine::block_on;
use std::path::Path;

use anyhow::Result;
use pmedit_engine::generate::{GenerateOptions, generate};
use serde_json::json;

use crate::device::Target;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Hugging Face GPT-2 model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 40)]
    pub max_new_tokens: usize,
    /// Sample among the k most likely tokens (1 = greedy).
    #[arg(long, default_value_t = 5, value_parser = crate::ranges::positive)]
    pub top_k: usize,
    /// Softmax temperature (> 0).
    #[arg(long, default_value_t = 1.0, value_parser = crate::ranges::positive_real_f32)]
    pub temperature: f32,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: GenerateArgs, choice: Target) -> Result<()> {
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        top_k: args.top_k,
        temperature: args.temperature,
        seed: args.seed,
        stop_at_eos: true,
    };
    show(&args.model, &args.prompt, &opts, choice, args.json)
}

fn show(dir: &Path, prompt: &str, opts: &GenerateOptions, choice: Target, as_json: bool) -> Result<()> {
    let (m, sel) = super::load(dir, choice)?;
    let start = std::time::Instant::now();
    let text = block_on(generate(&m.model, &m.tokenizer, prompt, opts))?;
    let secs = start.elapsed().as_secs_f64();
    if as_json {
        let out = json!({"prompt": prompt, "completion": text, "seed": opts.seed, "device": sel.description, "seconds": secs});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{prompt}{text}");
        eprintln!(
            "({} tokens max, {:.2} s on {})",
            opts.max_new_tokens, secs, sel.description
        );
    }
    Ok(())
}
