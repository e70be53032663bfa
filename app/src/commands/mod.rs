//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod edit;
pub mod eval;
pub mod generate;
pub mod info;
pub mod predict;
pub mod stats;
pub mod train_demo;

use pmedit_engine::block_on;
use std::path::Path;

use anyhow::{Context, Result};
use pmedit_engine::load::{LoadedModel, load_model_dir};

use crate::device::{Precision, Selected, Target, select};

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
}

impl ValueOverrides {
    /// Replaces the preset values that were given on the command line.
    pub fn apply(&self, v: &mut pmedit_engine::edit::ValueHparams) {
        if let Some(x) = self.steps {
            v.steps = x;
        }
        for (slot, given) in [
            (&mut v.lr, self.v_lr),
            (&mut v.clamp_norm_factor, self.clamp_norm_factor),
            (&mut v.kl_factor, self.kl_factor),
            (&mut v.weight_decay, self.v_weight_decay),
        ] {
            if let Some(x) = given {
                *slot = x;
            }
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

/// Fails unless every layer of `--layers` exists in a model of `n_layer` blocks.
pub fn check_layers(layers: &[usize], n_layer: usize) -> Result<()> {
    if let Some(&bad) = layers.iter().find(|&&l| l >= n_layer) {
        anyhow::bail!(
            "--layers: layer {bad} is out of range (the model has layers 0–{})",
            n_layer - 1
        );
    }
    Ok(())
}

/// Selects the device, loads `dir` onto it and casts it to the requested precision.
pub fn load(dir: &Path, (choice, precision): Target) -> Result<(LoadedModel, Selected)> {
    let mut sel = select(choice)?;
    let mut m = load_model_dir(dir, &sel.device).with_context(|| format!("loading model {}", dir.display()))?;
    if precision == Precision::F16 {
        m.model = pmedit_engine::model::precision::cast_model(m.model, burn::tensor::FloatDType::F16)?;
        sel.description.push_str(", f16");
    }
    Ok((m, sel))
}

/// C0 of every layer in `layers` from a stats file (default `<model>/stats.safetensors`), as λ·C0.
/// Statistics of another model (fingerprint mismatch) are refused.
pub fn load_preservation(
    m: &LoadedModel,
    stats: Option<&Path>,
    layers: &[usize],
    lambda: f64,
) -> Result<std::collections::HashMap<usize, pmedit_engine::edit::Preservation>> {
    let model_dir = m.dir.as_path();
    let sp = stats.map_or_else(|| model_dir.join("stats.safetensors"), Path::to_path_buf);
    let bytes = std::fs::read(&sp).with_context(|| {
        format!(
            "reading C0 statistics {} (compute them with `pmedit stats --model {} --corpus FILE --layers {} --out {}`)",
            sp.display(),
            model_dir.display(),
            layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
            sp.display()
        )
    })?;
    let layer_stats = block_on(pmedit_engine::edit::stats::stats_for_model(
        &bytes,
        &sp.to_string_lossy(),
        &m.model,
    ))?;
    let mut out = std::collections::HashMap::new();
    for &l in layers {
        let s = layer_stats
            .iter()
            .find(|s| s.layer == l)
            .with_context(|| format!("{} has no statistics for layer {l}", sp.display()))?;
        out.insert(l, block_on(pmedit_engine::edit::Preservation::new(s.c0()?, lambda))?);
    }
    Ok(out)
}

/// Context templates from `--templates` (a JSON file or `none`), else sampled from the model.
pub fn context_templates(
    arg: Option<&str>,
    m: &LoadedModel,
    algorithm: pmedit_engine::edit::Algorithm,
    seed: u64,
) -> Result<pmedit_engine::edit::ContextTemplates> {
    use pmedit_engine::edit::ContextTemplates;
    Ok(match arg {
        Some("none") => ContextTemplates::bare(),
        Some(file) => {
            ContextTemplates::from_json(&std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?)?
        }
        None => block_on(ContextTemplates::generate(
            &m.model,
            &m.tokenizer,
            algorithm.template_recipe(),
            seed,
        ))?,
    })
}

/// The value optimisation's memory budget on `sel`: 70 % of the memory free now on the CPU (wgpu
/// reports no free-memory figure, so GPUs get none); `PMEDIT_MEMORY_BUDGET_GIB` overrides both.
pub fn memory_budget(sel: &crate::device::Selected) -> Option<u64> {
    if let Some(gib) = std::env::var("PMEDIT_MEMORY_BUDGET_GIB")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        return Some((gib * (1u64 << 30) as f64) as u64);
    }
    if sel.description.starts_with("cpu") {
        pmedit_engine::edit::memory::available_memory().map(|b| b / 10 * 7)
    } else {
        None
    }
}
