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

use crate::device::{DeviceChoice, Selected, select};

/// Selects the device and loads `dir` onto it.
pub fn load(dir: &Path, choice: DeviceChoice) -> Result<(LoadedModel, Selected)> {
    let sel = select(choice)?;
    let model = load_model_dir(dir, &sel.device).with_context(|| format!("loading model {}", dir.display()))?;
    Ok((model, sel))
}
