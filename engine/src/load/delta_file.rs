//! Reading `pmedit-delta-1` files (written by `save::delta_file`): Δ per edited layer.

use burn::prelude::*;

use super::safetensors::SafetensorsFile;
use super::source::ByteSource;
use crate::error::{EngineError, Result};
use crate::save::delta_file::DELTA_FORMAT;

/// Δ per layer (`[key_dim, d_model]`, f32) from a delta file, on `device`, sorted by layer.
pub fn delta_from_source<S: ByteSource>(source: S, device: &Device) -> Result<Vec<(usize, Tensor<2>)>> {
    let path = source.name().to_path_buf();
    let bad = |reason: String| EngineError::Safetensors {
        path: path.clone(),
        reason,
    };
    let mut file = SafetensorsFile::open(source)?;
    if file.metadata().get("format").map(String::as_str) != Some(DELTA_FORMAT) {
        return Err(bad(format!(
            "not a pmedit delta file (metadata format ≠ {DELTA_FORMAT}); write one with `pmedit edit --save-delta` or the page's \"download only the change\""
        )));
    }
    let mut names: Vec<(usize, String)> = Vec::new();
    for name in file.names() {
        let layer = name
            .strip_prefix("layer.")
            .and_then(|r| r.strip_suffix(".delta"))
            .and_then(|l| l.parse::<usize>().ok())
            .ok_or_else(|| bad(format!("tensor `{name}` is not named layer.N.delta")))?;
        names.push((layer, name.to_string()));
    }
    if names.is_empty() {
        return Err(bad("it holds no layer".into()));
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for (layer, name) in names {
        let (values, shape) = file.read_f32(&name)?;
        let [rows, cols] = shape[..] else {
            return Err(bad(format!("`{name}` has shape {shape:?}, not a matrix")));
        };
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("`{name}` holds a non-finite value at element {pos}")));
        }
        out.push((layer, Tensor::from_data(TensorData::new(values, [rows, cols]), device)));
    }
    Ok(out)
}
