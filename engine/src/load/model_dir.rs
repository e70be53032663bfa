//! Loading a Hugging Face model directory from disk: `config.json`, `model.safetensors` or a
//! sharded `model.safetensors.index.json`, and the tokenizer files.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::gptj_weights::build_gptj_in;
use super::llama_weights::build_llama_in;
use super::safetensors::SafetensorsFile;
use super::shards::shard_names;
use super::source::FileSource;
use super::weights::{WeightFiles, build_gpt2_in};
use crate::error::{EngineError, Result};
use crate::model::{Model, ModelConfig};
use crate::tokenizer::Gpt2Tokenizer;

/// A model directory loaded onto a device.
#[derive(Debug)]
pub struct LoadedModel {
    /// The directory it came from.
    pub dir: PathBuf,
    /// Its config.
    pub config: ModelConfig,
    /// The network, on the device it was loaded to.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Gpt2Tokenizer,
    /// Storage dtype of the weights (`F32`, `F16`, `BF16`).
    pub dtype: String,
    /// The weight files read.
    pub weight_files: Vec<PathBuf>,
}

/// Reads and validates `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(EngineError::MissingFile {
            dir: dir.to_path_buf(),
            what: "model config".into(),
            expected: "config.json".into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    ModelConfig::from_json(&text).map_err(|e| match e {
        EngineError::Config { reason, .. } => EngineError::Config { path, reason },
        other => other,
    })
}

/// The safetensors files of `dir`: the shards named by `model.safetensors.index.json`, or
/// `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| EngineError::io(&index, e))?;
        return Ok(shard_names(&text, &index)?.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(EngineError::MissingFile {
        dir: dir.to_path_buf(),
        what: "weights".into(),
        expected: "model.safetensors or model.safetensors.index.json".into(),
    })
}

/// Loads config, weights and tokenizer of a Hugging Face model directory (GPT-2, GPT-J or the
/// Llama family) onto `device`.
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<LoadedModel> {
    load_model_dir_in(dir, device, FloatDType::F32)
}

/// [`load_model_dir`] with the weight matrices stored in `dtype` on the device, each cast as it is
/// read (`model::precision`): a half-precision model never exists in f32 as a whole.
pub fn load_model_dir_in(dir: &Path, device: &Device, dtype: FloatDType) -> Result<LoadedModel> {
    if !dir.is_dir() {
        return Err(EngineError::MissingFile {
            dir: dir.to_path_buf(),
            what: "model directory".into(),
            expected: "a directory with config.json, model.safetensors and tokenizer files".into(),
        });
    }
    let config = read_config(dir)?;
    let tokenizer = Gpt2Tokenizer::from_dir(dir)?;
    tokenizer.check_fits(config.vocab_size(), dir)?;
    let paths = weight_files(dir)?;
    let files = paths
        .iter()
        .map(|p| FileSource::open(p).and_then(SafetensorsFile::open))
        .collect::<Result<Vec<_>>>()?;
    let mut weights = WeightFiles::new(files, paths[0].clone());
    let stored = weights.dtype();
    let model = match &config {
        ModelConfig::Gpt2(c) => Model::Gpt2(build_gpt2_in(c, &mut weights, device, dtype)?),
        ModelConfig::Gptj(c) => Model::Gptj(build_gptj_in(c, &mut weights, device, dtype)?),
        ModelConfig::Llama(c) => Model::Llama(build_llama_in(c, &mut weights, device, dtype)?),
    };
    Ok(LoadedModel {
        dir: dir.to_path_buf(),
        config,
        model,
        tokenizer,
        dtype: stored,
        weight_files: paths,
    })
}
