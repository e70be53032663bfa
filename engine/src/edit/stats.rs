//! C0 statistics (PAPER.md "C0 statistics"): the uncentred second moment of the keys at a layer,
//! `C0 = Σ k kᵀ / count` over every token of a text corpus, accumulated on the device.
//!
//! Stats are saved as safetensors (`mom2` `[n, n]` f32 as the sum, `count`) with metadata (model
//! fingerprint, layer, tokens, corpus), can be resumed or merged (sums add), and the authors'
//! `.npz` files can be imported (see `stats_io`).

use burn::prelude::*;

use super::prompts::padded_batch;
use crate::error::{EngineError, Result};
use crate::model::{Gpt2, Hooks, Site};

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
pub fn accumulate(model: &Gpt2, seqs: &[Vec<u32>], batch: usize, stats: &mut [LayerStats]) -> Result<()> {
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

/// Identifies the model statistics were computed on: FNV-1a over the config's sizes and the first
/// 256 token-embedding values (editing changes only `mlp.c_proj`, so an edited model keeps the
/// fingerprint of its original and can reuse its statistics).
pub async fn fingerprint(model: &Gpt2) -> Result<String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for v in [
        model.n_layer(),
        model.vocab_size(),
        model.n_positions(),
        model.h[0].mlp.c_fc.weight.dims()[1],
    ] {
        eat(&(v as u64).to_le_bytes());
    }
    let n = (256 / model.wte.d_model()).max(1);
    for x in crate::readback::read_vec::<f32, 2, Float>(model.wte.head_rows(n)).await? {
        eat(&x.to_le_bytes());
    }
    Ok(format!("{h:016x}"))
}

/// Metadata stored with statistics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsMeta {
    /// [`fingerprint`] of the model.
    pub model: String,
    /// Corpus name(s).
    pub corpus: String,
    /// Windows of the corpus already processed (for resuming).
    pub windows_done: u64,
    /// What decides which windows those are (window length, token limit, shard), so a resume
    /// with other settings is refused rather than silently continued; empty when not recorded.
    pub settings: String,
}

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
    crate::save::tensors_to_bytes(tensors, info)
}

/// Reads statistics for `model` (on its device), refusing a file computed on another model.
pub async fn stats_for_model(bytes: &[u8], name: &str, model: &Gpt2) -> Result<Vec<LayerStats>> {
    let (stats, meta) = stats_from_bytes(bytes, name, &model.device())?;
    let fp = fingerprint(model).await?;
    if meta.model != fp {
        return Err(EngineError::Input(format!(
            "{name} was computed on another model (fingerprint {} ≠ {fp}): recompute it with `pmedit stats`",
            meta.model
        )));
    }
    Ok(stats)
}

/// Reads statistics written by [`stats_to_bytes`] onto `device`.
pub fn stats_from_bytes(bytes: &[u8], name: &str, device: &Device) -> Result<(Vec<LayerStats>, StatsMeta)> {
    use crate::load::{MemorySource, SafetensorsFile};
    let mut file = SafetensorsFile::open(MemorySource::new(name, bytes.to_vec()))?;
    let md = file.metadata().clone();
    let bad = |why: String| EngineError::Safetensors {
        path: name.into(),
        reason: why,
    };
    if md.get("format").map(String::as_str) != Some("pmedit-stats-1") {
        return Err(bad("not a pmedit statistics file (metadata format ≠ pmedit-stats-1); import .npz files with `pmedit stats --import`".into()));
    }
    let layers: Vec<usize> = md
        .get("layers")
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
        })
        .transpose()
        .map_err(|e| bad(format!("bad `layers` metadata: {e}")))?
        .unwrap_or_default();
    let mut out = Vec::new();
    for layer in layers {
        let (mom2, shape) = file.read_f32(&format!("layer.{layer}.mom2"))?;
        if shape.len() != 2 || shape[0] != shape[1] {
            return Err(bad(format!(
                "layer {layer}: mom2 has shape {shape:?}, expected a square matrix"
            )));
        }
        let count = read_count(&mut file, &format!("layer.{layer}.count"))?;
        let c0 = Tensor::<2>::from_data(TensorData::new(mom2, shape), device);
        out.push(LayerStats {
            layer,
            sum: c0 * count as f64,
            count,
        });
    }
    let meta = StatsMeta {
        model: md.get("model").cloned().unwrap_or_default(),
        corpus: md.get("corpus").cloned().unwrap_or_default(),
        windows_done: md.get("windows_done").and_then(|s| s.parse().ok()).unwrap_or(0),
        settings: md.get("settings").cloned().unwrap_or_default(),
    };
    Ok((out, meta))
}

fn read_count<S: crate::load::ByteSource>(file: &mut crate::load::SafetensorsFile<S>, name: &str) -> Result<u64> {
    let (v, _) = file.read_f64(name)?;
    v.first()
        .copied()
        .filter(|c| *c >= 0.0 && c.is_finite())
        .map(|c| c as u64)
        .ok_or_else(|| EngineError::Input(format!("{name}: invalid token count")))
}
