//! One module per subcommand.

pub mod bench;
pub mod edit;
pub mod generate;
pub mod info;
pub mod predict;
pub mod stats;

use std::path::Path;

use anyhow::{Context, Result};
use pmedit_engine::load::{LoadedModel, load_model_dir};

use crate::device::{Precision, Selected, Target, select};

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
