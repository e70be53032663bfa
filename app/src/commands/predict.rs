//! `pmedit predict`.

use pmedit_engine::block_on;
use std::path::Path;

use anyhow::Result;
use pmedit_engine::predict::top_k;
use serde_json::json;

use crate::device::Target;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Hugging Face GPT-2 model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// How many tokens to list.
    #[arg(long, default_value_t = 10, value_parser = crate::ranges::positive)]
    pub top_k: usize,
    /// Print JSON (token ids, token strings, log-probs).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PredictArgs, choice: Target) -> Result<()> {
    show(&args.model, &args.prompt, args.top_k, choice, args.json)
}

fn show(dir: &Path, prompt: &str, k: usize, choice: Target, as_json: bool) -> Result<()> {
    let (m, sel) = super::load(dir, choice)?;
    let ids = m.tokenizer.encode(prompt)?;
    let top = block_on(top_k(&m.model, &m.tokenizer, prompt, k))?;
    if as_json {
        let out = json!({
            "prompt": prompt,
            "prompt_ids": ids,
            "device": sel.description,
            "top_k": top,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{prompt:?} on {}", sel.description);
        for (rank, t) in top.iter().enumerate() {
            println!(
                "{:>3}. {:<20} id {:>6}  logprob {:>9.4}  p {:.4}",
                rank + 1,
                format!("{:?}", t.token),
                t.id,
                t.logprob,
                t.logprob.exp()
            );
        }
    }
    Ok(())
}
