//! `pmedit generate`.

use pmedit_engine::block_on;
use std::path::Path;

use anyhow::Result;
use pmedit_engine::generate::{GenerateOptions, generate};
use serde_json::json;

use crate::device::Target;

pub fn run(dir: &Path, prompt: &str, opts: &GenerateOptions, choice: Target, as_json: bool) -> Result<()> {
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
