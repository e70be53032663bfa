//! Reading pmedit statistics files (safetensors: per layer `layer.{l}.mom2`, C0 = sum / count in
//! f32, and `layer.{l}.count`, with metadata), and the model fingerprint that ties a file to the
//! model it was computed on. The writer is `save::stats_file`.

use burn::prelude::*;

use crate::edit::stats::LayerStats;
use crate::error::{EngineError, Result};
use crate::model::EditableModel;

/// Identifies the model statistics were computed on: FNV-1a over the config's sizes and the first
/// 256 token-embedding values (editing changes only `mlp.c_proj`, so an edited model keeps the
/// fingerprint of its original and can reuse its statistics).
pub async fn fingerprint(model: &impl EditableModel) -> Result<String> {
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
        model.key_dim(),
    ] {
        eat(&(v as u64).to_le_bytes());
    }
    let n = (256 / model.d_model()).max(1);
    for x in crate::readback::read_vec::<f32, 2, Float>(model.embedding_rows(n)).await? {
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

/// Reads statistics for `model` (on its device), refusing a file computed on another model.
pub async fn stats_for_model(bytes: &[u8], name: &str, model: &impl EditableModel) -> Result<Vec<LayerStats>> {
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
