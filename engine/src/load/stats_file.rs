//! Reading pmedit statistics files (safetensors: per layer `layer.{l}.mom2`, C0 = sum / count in
//! f32, and `layer.{l}.count`, with metadata), and the model fingerprint that ties a file to the
//! model it was computed on. The writer is `save::stats_file`.

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::edit::stats::LayerStats;
use crate::error::{EngineError, Result};
use crate::model::EditableModel;

/// Identifies the model statistics were computed on: `s` and FNV-1a over the config's sizes and
/// the signs of the first 2,048 token-embedding values. Signs survive storing the weights in f16
/// or bf16 (rounding never flips one), so statistics computed on an f32 load serve a
/// half-precision load of the same file and the other way round; models trained apart agree on
/// all 2,048 signs by chance with probability 2⁻²⁰⁴⁸. Editing changes only the edited matrices, so
/// an edited model keeps the fingerprint of its original and can reuse its statistics.
pub async fn fingerprint(model: &impl EditableModel) -> Result<String> {
    let mut h = Fnv::new(model);
    let n = FINGERPRINT_VALUES.div_ceil(model.d_model()).max(1);
    let values = crate::readback::read_vec::<f32, 2, Float>(model.embedding_rows(n).cast(FloatDType::F32)).await?;
    let signs: Vec<u8> = values
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, x)| b | (u8::from(x.is_sign_negative()) << i))
        })
        .collect();
    h.eat(&signs);
    Ok(format!("s{:016x}", h.0))
}

/// How many embedding values' signs [`fingerprint`] hashes.
const FINGERPRINT_VALUES: usize = 2048;

/// The fingerprint files written before [`fingerprint`] existed carry: FNV-1a over the sizes and
/// the exact f32 bits of the first 256 embedding values. It can only be checked on a model stored
/// in f32 (a half-precision load has lost the bits).
async fn exact_fingerprint(model: &impl EditableModel) -> Result<Option<String>> {
    if model.float_dtype() != FloatDType::F32 {
        return Ok(None);
    }
    let mut h = Fnv::new(model);
    let n = (256 / model.d_model()).max(1);
    for x in crate::readback::read_vec::<f32, 2, Float>(model.embedding_rows(n)).await? {
        h.eat(&x.to_le_bytes());
    }
    Ok(Some(format!("{:016x}", h.0)))
}

/// FNV-1a (64-bit), started on a model's sizes.
struct Fnv(u64);

impl Fnv {
    fn new(model: &impl EditableModel) -> Self {
        let mut h = Self(0xcbf2_9ce4_8422_2325);
        for v in [
            model.n_layer(),
            model.vocab_size(),
            model.n_positions(),
            model.key_dim(),
        ] {
            h.eat(&(v as u64).to_le_bytes());
        }
        h
    }

    fn eat(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
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
    stats_for_model_in(crate::load::MemorySource::new(name, bytes), name, model).await
}

/// [`stats_for_model`] read from any [`ByteSource`](crate::load::ByteSource) (in the page: a
/// picked file's blob URL, read in ranges, so a 164 MB GPT2-XL layer never sits whole in wasm
/// memory as bytes).
pub async fn stats_for_model_in<S: crate::load::ByteSource>(
    source: S,
    name: &str,
    model: &impl EditableModel,
) -> Result<Vec<LayerStats>> {
    let (stats, meta) = stats_from_source(source, name, &model.device())?;
    let fp = fingerprint(model).await?;
    if meta.model != fp && exact_fingerprint(model).await?.as_deref() != Some(meta.model.as_str()) {
        return Err(EngineError::Input(format!(
            "{name} was computed on another model (fingerprint {} ≠ {fp}): recompute it with `pmedit stats`",
            meta.model
        )));
    }
    Ok(stats)
}

/// Reads statistics written by [`stats_to_bytes`] onto `device`.
pub fn stats_from_bytes(bytes: &[u8], name: &str, device: &Device) -> Result<(Vec<LayerStats>, StatsMeta)> {
    // Read in place: a GPT2-XL layer is 164 MB, and in the page every copy is wasm heap.
    stats_from_source(crate::load::MemorySource::new(name, bytes), name, device)
}

/// [`stats_from_bytes`] from any [`ByteSource`](crate::load::ByteSource). Each matrix is read in
/// pieces of [`STATS_PIECE`] bytes into its f32 buffer, so the bytes read never exist whole beside it.
pub fn stats_from_source<S: crate::load::ByteSource>(
    source: S,
    name: &str,
    device: &Device,
) -> Result<(Vec<LayerStats>, StatsMeta)> {
    use crate::load::SafetensorsFile;
    let mut file = SafetensorsFile::open(source)?;
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
        let key = format!("layer.{layer}.mom2");
        let shape = file
            .info(&key)
            .map(|t| t.shape.clone())
            .ok_or_else(|| bad(format!("no tensor `{key}`")))?;
        if shape.len() != 2 || shape[0] != shape[1] {
            return Err(bad(format!(
                "layer {layer}: mom2 has shape {shape:?}, expected a square matrix"
            )));
        }
        let numel = shape[0]
            .checked_mul(shape[1])
            .ok_or_else(|| bad(format!("layer {layer}: mom2 shape {shape:?} overflows")))?;
        let mut mom2 = Vec::new();
        mom2.try_reserve_exact(numel)
            .map_err(|_| bad(format!("layer {layer}: no memory for a {shape:?} matrix")))?;
        let piece = (STATS_PIECE / 4).max(1);
        while mom2.len() < numel {
            let count = piece.min(numel - mom2.len());
            mom2.extend(file.read_f32_elements(&key, mom2.len(), count)?);
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

/// Bytes of statistics read at a time.
pub const STATS_PIECE: usize = 16 << 20;

fn read_count<S: crate::load::ByteSource>(file: &mut crate::load::SafetensorsFile<S>, name: &str) -> Result<u64> {
    let (v, _) = file.read_f64(name)?;
    v.first()
        .copied()
        .filter(|c| *c >= 0.0 && c.is_finite())
        .map(|c| c as u64)
        .ok_or_else(|| EngineError::Input(format!("{name}: invalid token count")))
}
