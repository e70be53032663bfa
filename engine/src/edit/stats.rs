//! C0 statistics (docs/MATH.md §8): the uncentred second moment of the keys at a layer,
//! `C0 = Σ k kᵀ / count` over every token of a text corpus, accumulated on the device.
//!
//! The file formats live with the readers and writers: `load::stats_file` and `save::stats_file`
//! (pmedit's own, with the model's fingerprint), `load::npz` (the authors' `.npz`).

use burn::prelude::*;

use super::prompts::padded_batch;
use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Hooks, Site};

/// Running sums of `k kᵀ` for one layer.
#[derive(Debug, Clone)]
pub struct LayerStats {
    /// The layer.
    pub layer: usize,
    /// Σ k kᵀ, `[n, n]`.
    pub sum: Tensor<2>,
    /// Number of keys summed.
    pub count: u64,
}

impl LayerStats {
    /// Empty sums for keys of dimension `n` on `device`.
    pub fn new(layer: usize, n: usize, device: &Device) -> Self {
        Self {
            layer,
            sum: Tensor::zeros([n, n], device),
            count: 0,
        }
    }

    /// `C0 = Σ k kᵀ / count`.
    pub fn c0(&self) -> Result<Tensor<2>> {
        if self.count == 0 {
            return Err(EngineError::Input(format!(
                "layer {} statistics hold no tokens",
                self.layer
            )));
        }
        Ok(self.sum.clone() / self.count as f64)
    }

    /// Adds another part's sums (same layer and key dimension).
    pub fn merge(&mut self, other: &LayerStats) -> Result<()> {
        if other.layer != self.layer || other.sum.dims() != self.sum.dims() {
            return Err(EngineError::Input(format!(
                "cannot merge statistics of layer {} {:?} into layer {} {:?}",
                other.layer,
                other.sum.dims(),
                self.layer,
                self.sum.dims()
            )));
        }
        self.sum = self.sum.clone() + other.sum.clone();
        self.count += other.count;
        Ok(())
    }
}

/// Splits token ids into consecutive windows of at most `len` tokens.
pub fn windows(ids: &[u32], len: usize) -> Vec<Vec<u32>> {
    ids.chunks(len.max(1)).map(<[u32]>::to_vec).collect()
}

/// Adds the keys of every token of `seqs` (run in batches of `batch`) to `stats` (one entry per
/// layer). Padding positions are excluded.
pub fn accumulate(model: &impl EditableModel, seqs: &[Vec<u32>], batch: usize, stats: &mut [LayerStats]) -> Result<()> {
    let device = model.device();
    let probes: Vec<(usize, Site)> = stats.iter().map(|s| (s.layer, Site::MlpKey)).collect();
    if let Some(bad) = stats.iter().find(|s| s.layer >= model.n_layer()) {
        return Err(EngineError::Input(format!(
            "layer {} does not exist (the model has {} layers)",
            bad.layer,
            model.n_layer()
        )));
    }
    for chunk in seqs.chunks(batch.max(1)) {
        if chunk.iter().any(|s| s.len() > model.n_positions()) {
            return Err(EngineError::Input(
                "a statistics window is longer than the model's context".into(),
            ));
        }
        let tokens = padded_batch(chunk, &device);
        let [b, s] = tokens.dims();
        let mut mask = vec![0f32; b * s];
        let mut real = 0u64;
        for (i, seq) in chunk.iter().enumerate() {
            for t in 0..seq.len() {
                mask[i * s + t] = 1.0;
            }
            real += seq.len() as u64;
        }
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b * s, 1]), &device);
        let out = model.forward_hooked(tokens, &Hooks::probe_only(probes.clone()));
        for (st, keys) in stats.iter_mut().zip(out.probes) {
            let n = keys.dims()[2];
            let k = keys.reshape([b * s, n]) * mask.clone();
            st.sum = st.sum.clone() + crate::linalg::matmul(k.clone().transpose(), k);
            st.count += real;
        }
    }
    Ok(())
}
