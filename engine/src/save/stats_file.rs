//! Writing pmedit statistics files (the format `load::stats_file` reads).

use burn::prelude::*;

use crate::edit::stats::LayerStats;
use crate::error::Result;
use crate::load::stats_file::StatsMeta;

/// Serialises statistics to safetensors bytes: per layer `layer.{l}.mom2` (C0 = sum/count, f32,
/// as in the authors' files) and `layer.{l}.count` (a 1×1 f32: exact up to 2²⁴ tokens, then
/// within 6e-8 relative), plus metadata.
pub fn stats_to_bytes(stats: &[LayerStats], meta: &StatsMeta) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Tensor<2>)> = Vec::new();
    for s in stats {
        tensors.push((format!("layer.{}.mom2", s.layer), s.c0()?));
        let count = Tensor::<2>::from_data(TensorData::new(vec![s.count as f32], [1, 1]), &s.sum.device());
        tensors.push((format!("layer.{}.count", s.layer), count));
    }
    let layers: Vec<String> = stats.iter().map(|s| s.layer.to_string()).collect();
    let info = std::collections::HashMap::from([
        ("format".to_string(), "pmedit-stats-1".to_string()),
        ("model".to_string(), meta.model.clone()),
        ("corpus".to_string(), meta.corpus.clone()),
        ("windows_done".to_string(), meta.windows_done.to_string()),
        ("settings".to_string(), meta.settings.clone()),
        ("layers".to_string(), layers.join(",")),
    ]);
    super::tensors_to_bytes(tensors, info)
}
