//! One module per subcommand.

pub mod apply_delta;
pub mod bench;
pub mod demo;
pub mod edit;
pub mod eval;
pub mod generate;
pub mod info;
pub mod predict;
pub mod random_model;
pub mod stats;
pub mod trace;
pub mod train_demo;

use pmedit_engine::block_on;
use std::path::Path;

use anyhow::{Context, Result};
use pmedit_engine::edit::{ContextTemplates, Editor, TemplateChoice};
use pmedit_engine::load::{LoadedModel, load_model_dir_in};

use crate::device::{Precision, Selected, Target, select};

/// The most blocks `random-model --n-layer` writes (GPT-2 XL has 48; the limit keeps a typo from
/// filling the disk).
pub const MAX_RANDOM_LAYERS: usize = 256;

/// Overrides of the value optimisation's preset hyper-parameters (`edit` and `eval`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ValueOverrides {
    /// Value optimisation steps (default from the presets; 1–100000).
    #[arg(long, value_parser = crate::ranges::steps)]
    pub steps: Option<usize>,
    /// Adam learning rate of the value optimisation (v_lr, > 0).
    #[arg(long, value_parser = crate::ranges::positive_real)]
    pub v_lr: Option<f64>,
    /// ‖δ‖ ≤ this · ‖v_init‖ (clamp_norm_factor, > 0: at 0 no value could change).
    #[arg(long, value_parser = crate::ranges::positive_real)]
    pub clamp_norm_factor: Option<f64>,
    /// Weight of the KL term (kl_factor, ≥ 0).
    #[arg(long, value_parser = crate::ranges::non_negative_real)]
    pub kl_factor: Option<f64>,
    /// Weight of ‖δ‖/‖v_init‖² in the value loss (v_weight_decay, ≥ 0).
    #[arg(long, value_parser = crate::ranges::non_negative_real)]
    pub v_weight_decay: Option<f64>,
    /// Stop a request's value optimisation as soon as its new target is the most probable
    /// continuation of every rewriting prompt (fewer steps, less over-fitting in lifelong editing).
    #[arg(long)]
    pub stop_at_top1: bool,
    /// Rescale each optimised value to the norm of the unedited model's value at that position.
    #[arg(long)]
    pub norm_anchor: bool,
}

/// AlphaEdit's settings and the running preservation of earlier edits (`edit` and `eval`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ObjectiveOverrides {
    /// AlphaEdit's ridge (L2, > 0; default from the presets: 10).
    #[arg(long, value_parser = crate::ranges::positive_real)]
    pub l2: Option<f64>,
    /// AlphaEdit: C0's eigenvectors with eigenvalue below this (absolute, on the mean C0) span the
    /// null space the update is confined to (default from the presets: 2e-2).
    #[arg(long, value_parser = crate::ranges::positive_real)]
    pub nullspace_threshold: Option<f64>,
    /// ROME/MEMIT/EMMET: add the keys of the batches applied before to λ·C0, so later batches keep
    /// earlier edits ("ENCORE"-style; AlphaEdit always keeps them).
    #[arg(long)]
    pub preserve_edits: bool,
}

impl ValueOverrides {
    /// The engine's form of these overrides.
    pub fn to_engine(&self) -> pmedit_engine::edit::ValueOverrides {
        pmedit_engine::edit::ValueOverrides {
            steps: self.steps,
            lr: self.v_lr,
            clamp_norm_factor: self.clamp_norm_factor,
            kl_factor: self.kl_factor,
            weight_decay: self.v_weight_decay,
            stop_at_top1: self.stop_at_top1,
            norm_anchor: self.norm_anchor,
        }
    }
}

/// The files an edit reads besides its requests or dataset: the model, its C0 statistics
/// (`--stats`, default `<model>/stats.safetensors`) and a templates file (unless `none`), for
/// checking `--out` against them.
pub fn edit_inputs(model: &Path, stats: Option<&Path>, templates: Option<&str>) -> Vec<std::path::PathBuf> {
    let mut inputs = vec![
        model.to_path_buf(),
        stats.map_or_else(|| model.join("stats.safetensors"), Path::to_path_buf),
    ];
    inputs.extend(templates.filter(|t| *t != "none").map(std::path::PathBuf::from));
    inputs
}

/// `--layers` (`17`, `13-17`, `3,5`) through the engine's one layer-list parser, sorted and
/// deduplicated; a bad list is named as the flag's.
pub fn parse_layers(text: &str) -> Result<Vec<usize>> {
    pmedit_engine::edit::layers::parse_layers(text).map_err(layers_flag)
}

/// `--layers` in the order written (one entry per file of `import-stats`).
pub fn parse_layer_list(text: &str) -> Result<Vec<usize>> {
    pmedit_engine::edit::layers::parse_layer_list(text).map_err(layers_flag)
}

/// Fails unless every layer of `--layers` exists in a model of `n_layer` blocks (the engine's
/// range check).
pub fn check_layers(layers: &[usize], n_layer: usize) -> Result<()> {
    pmedit_engine::edit::layers::check_layers(layers, n_layer).map_err(layers_flag)
}

/// An engine complaint about a layer list, as one about the `--layers` flag.
fn layers_flag(e: pmedit_engine::EngineError) -> anyhow::Error {
    match e {
        pmedit_engine::EngineError::Input(why) => anyhow::anyhow!("--layers: {why}"),
        other => anyhow::Error::new(other).context("--layers"),
    }
}

/// Selects the device and loads `dir` onto it with its weight matrices stored in the requested
/// precision, each cast as it is read (activations and edits stay f32).
pub fn load(dir: &Path, (choice, precision): Target) -> Result<(LoadedModel, Selected)> {
    let mut sel = select(choice)?;
    let m = load_model_dir_in(dir, &sel.device, precision.float_dtype())
        .with_context(|| format!("loading model {}", dir.display()))?;
    if precision != Precision::F32 {
        sel.description
            .push_str(&format!(", {precision:?} weights", precision = precision.float_dtype()).to_lowercase());
    }
    Ok((m, sel))
}

/// The dtype an edited copy of `m` is written in: its file's (f16 and bf16 stay as they are, so
/// a 16 GB bf16 Llama-3-8B is not written as 32 GB of f32; anything else f32).
pub fn file_dtype(m: &LoadedModel) -> pmedit_engine::save::WeightDtype {
    match m.dtype.as_str() {
        "F16" => pmedit_engine::save::WeightDtype::F16,
        "BF16" => pmedit_engine::save::WeightDtype::BF16,
        _ => pmedit_engine::save::WeightDtype::F32,
    }
}

/// Writes the editor's model as a complete model directory at `dest`: the original's side files
/// (config, tokenizer, …), `record` as the `pmedit-edit.json` marker, and the weights in `dtype`.
pub fn write_edited_model(
    dest: &crate::destination::Destination,
    editor: &Editor,
    model_dir: &Path,
    record: &serde_json::Value,
    dtype: pmedit_engine::save::WeightDtype,
) -> Result<()> {
    let marker = crate::destination::Kind::EditedModel.marker();
    let mut files = pmedit_engine::save::model_side_files(model_dir)?;
    files.retain(|(name, _)| name != marker);
    files.push((marker.to_string(), serde_json::to_vec_pretty(record)?));
    dest.write_dir(|dir| {
        Ok(pmedit_engine::save::write_model_files(
            editor.model(),
            dir,
            &files,
            dtype,
        )?)
    })
}

/// An editor of the loaded model, with the memory budget of `PMEDIT_MEMORY_BUDGET_GIB` when set.
pub fn editor(m: LoadedModel) -> Editor {
    let editor = Editor::new(m.model, m.tokenizer);
    match memory_budget_override() {
        Some(budget) => editor.with_memory_budget(Some(budget)),
        None => editor,
    }
}

/// Loads the C0 statistics of `layers` from `stats` (default `<model_dir>/stats.safetensors`)
/// into `editor`; statistics of another model (fingerprint mismatch) are refused.
pub fn add_statistics(editor: &mut Editor, model_dir: &Path, stats: Option<&Path>, layers: &[usize]) -> Result<()> {
    let sp = stats.map_or_else(|| model_dir.join("stats.safetensors"), Path::to_path_buf);
    if layers.iter().all(|l| editor.statistics(*l).is_some()) {
        return Ok(());
    }
    let bytes = std::fs::read(&sp).with_context(|| {
        format!(
            "reading C0 statistics {} (compute them with `pmedit stats --model {} --corpus FILE --layers {} --out {}`)",
            sp.display(),
            model_dir.display(),
            layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
            sp.display()
        )
    })?;
    block_on(editor.load_statistics(&bytes, &sp.to_string_lossy()))?;
    if let Some(l) = layers.iter().find(|l| editor.statistics(**l).is_none()) {
        anyhow::bail!("{} has no statistics for layer {l}", sp.display());
    }
    Ok(())
}

/// Context templates from `--templates` (a JSON file or `none`), else sampled from the model
/// with `seed`.
pub fn templates(arg: Option<&str>, seed: u64) -> Result<TemplateChoice> {
    Ok(match arg {
        Some("none") => TemplateChoice::Bare,
        Some(file) => TemplateChoice::Given(ContextTemplates::from_json(
            &std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        )?),
        None => TemplateChoice::Sampled { seed },
    })
}

/// `PMEDIT_MEMORY_BUDGET_GIB`: the value optimisation's memory budget in GiB, replacing the
/// device's default (70 % of the free memory on the CPU, none on a GPU).
pub fn memory_budget_override() -> Option<u64> {
    std::env::var("PMEDIT_MEMORY_BUDGET_GIB")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|gib| (gib * (1u64 << 30) as f64) as u64)
}
