//! `pmedit apply-delta`: rebuilds an edited model from the original and the change an edit made
//! (a `pmedit-delta-1` file: `pmedit edit --save-delta`, or the page's "download only the
//! change"), so a browser edit of a GB-sized model travels as a few MB.

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
    /// Replace `--out` if it exists (only a directory pmedit wrote).
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: ApplyDeltaArgs, choice: Target) -> Result<()> {
    let inputs: [&Path; 2] = [&args.model, &args.delta];
    let dest = Destination::new(&args.out, &inputs, Kind::EditedModel, args.overwrite)?;
    let (m, sel) = super::load(&args.model, choice)?;
    let source = FileSource::open(&args.delta).with_context(|| format!("reading {}", args.delta.display()))?;
    let change = delta_from_source(source, &sel.device).with_context(|| format!("reading {}", args.delta.display()))?;
    let layers: Vec<usize> = change.iter().map(|(l, _)| *l).collect();
    let model_dir = m.dir.clone();
    let out_dtype = if m.dtype == "F16" {
        WeightDtype::F16
    } else {
        WeightDtype::F32
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
    let mut files = pmedit_engine::save::model_side_files(&model_dir)?;
    files.retain(|(name, _)| name != Kind::EditedModel.marker());
    files.push((
        Kind::EditedModel.marker().to_string(),
        serde_json::to_vec_pretty(&record)?,
    ));
    dest.write_dir(|dir| {
        Ok(pmedit_engine::save::write_model_files(
            editor.model(),
            dir,
            &files,
            out_dtype,
        )?)
    })?;
    eprintln!(
        "applied the change to layers {layers:?} of {} ({} layers) → {}",
        model_dir.display(),
        editor.model().n_layer(),
        args.out.display()
    );
    Ok(())
}
