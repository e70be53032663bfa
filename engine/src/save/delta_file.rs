//! Writing the change an edit made (`pmedit-delta-1`, the format `load::delta_file` reads): per
//! edited layer `layer.{l}.delta`, Δ in the edited matrix's Wᵀ layout `[key_dim, d_model]`, f32.
//! A few MB where the model is GBs: the page offers it as "download only the change", and
//! `pmedit apply-delta` rebuilds the edited model natively from it.

use burn::prelude::*;

use crate::error::Result;

/// The format tag in the file's metadata.
pub const DELTA_FORMAT: &str = "pmedit-delta-1";

/// Serialises Δ per layer (summed where a layer appears more than once).
pub fn delta_to_bytes(deltas: Vec<(usize, Tensor<2>)>) -> Result<Vec<u8>> {
    let mut per_layer: std::collections::BTreeMap<usize, Tensor<2>> = Default::default();
    for (layer, delta) in deltas {
        let delta = delta.cast(burn::tensor::FloatDType::F32);
        let sum = match per_layer.remove(&layer) {
            Some(t) => t + delta,
            None => delta,
        };
        per_layer.insert(layer, sum);
    }
    let named = per_layer
        .into_iter()
        .map(|(l, t)| (format!("layer.{l}.delta"), t))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), DELTA_FORMAT.to_string())]);
    super::tensors_to_bytes(named, meta)
}
