//! `pmedit apply-delta`: rebuilds an edited model from the original and the change an edit made
//! (a `pmedit-delta-1` file: `pmedit edit --save-delta`, or the page's "download only the
//! change"), so a browser edit of a GB-sized model travels as a few MB.

use pmedit_engine::EditableModel;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pmedit_engine::load::FileSource;
use pmedit_engine::load::delta_file::delta_from_source;
use pmedit_engine::save::WeightDtype;
use serde_json::json;

use crate::destination::{Destination, Kind};
use crate::device::Target;

/// `pmedit apply-delta` flags.
#[derive(clap::Args)]
pub struct ApplyDeltaArgs {
    /// The original model directory (never modified).
    #[arg(long)]
    pub model: PathBuf,
    /// The change: a pmedit delta file (Δ per edited layer).
    #[arg(long)]
    pub delta: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The dtype `model.safetensors` is written in (default: that of the original's file, f16 or
    /// f32).
    #[arg(long, value_enum)]
    pub save_dtype: Option<SaveDtype>,
    /// Replace `--out` if it exists (only a directory pmedit wrote).
    #[arg(long)]
    pub overwrite: bool,
}

/// `--save-dtype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaveDtype {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (rounded to nearest).
    F16,
    /// bfloat16 (rounded to nearest).
    Bf16,
}

pub fn run(args: ApplyDeltaArgs, choice: Target) -> Result<()> {
    let inputs: [&Path; 2] = [&args.model, &args.delta];
    let dest = Destination::new(&args.out, &inputs, Kind::EditedModel, args.overwrite)?;
    let (m, sel) = super::load(&args.model, choice)?;
    let source = FileSource::open(&args.delta).with_context(|| format!("reading {}", args.delta.display()))?;
    let change = delta_from_source(source, &sel.device).with_context(|| format!("reading {}", args.delta.display()))?;
    let layers: Vec<usize> = change.iter().map(|(l, _)| *l).collect();
    let model_dir = m.dir.clone();
    let out_dtype = match args.save_dtype {
        Some(SaveDtype::F16) => WeightDtype::F16,
        Some(SaveDtype::F32) => WeightDtype::F32,
        Some(SaveDtype::Bf16) => WeightDtype::BF16,
        None => super::file_dtype(&m),
    };
    let mut editor = super::editor(m);
    editor
        .apply_change(change)
        .with_context(|| format!("applying {} to {}", args.delta.display(), model_dir.display()))?;
    let record = json!({
        "applied_delta": args.delta.file_name().map(|n| n.to_string_lossy().into_owned()),
        "layers": layers,
        "device": sel.description,
    });
    super::write_edited_model(&dest, &editor, &model_dir, &record, out_dtype)?;
    eprintln!(
        "applied the change to layers {layers:?} of {} ({} layers) → {}",
        model_dir.display(),
        editor.model().n_layer(),
        args.out.display()
    );
    Ok(())
}
