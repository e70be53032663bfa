//! `pmedit info`.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::device::Target;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Hugging Face GPT-2 model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs, choice: Target) -> Result<()> {
    show(&args.model, choice, args.json)
}

fn show(dir: &Path, choice: Target, as_json: bool) -> Result<()> {
    let (m, sel) = super::load(dir, choice)?;
    let c = &m.config;
    let info = json!({
        "model": m.dir,
        "n_layer": c.n_layer(), "n_embd": c.d_model(), "n_head": c.n_head(), "n_inner": c.d_inner(),
        "n_positions": c.n_positions(), "vocab_size": c.vocab_size(),
        "model_type": c.model_type(),
        "parameters": c.num_params(),
        "dtype": m.dtype,
        "tokenizer_vocab": m.tokenizer.vocab_size(),
        "weight_files": m.weight_files,
        "device": sel.description,
        "peak_memory_bytes": crate::memory::peak_rss_bytes(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("model       {}", m.dir.display());
        println!(
            "shape       {} layers, d={}, {} heads, d_inner={}, context {}, vocab {}",
            c.n_layer(),
            c.d_model(),
            c.n_head(),
            c.d_inner(),
            c.n_positions(),
            c.vocab_size()
        );
        println!("family      {}", c.model_type());
        println!("parameters  {} ({:.1} M)", c.num_params(), c.num_params() as f64 / 1e6);
        println!("dtype       {} (computed in f32)", m.dtype);
        println!("device      {}", sel.description);
    }
    Ok(())
}
