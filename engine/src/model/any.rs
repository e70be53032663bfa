//! Any model pmedit loads: one enum over the families, so the command line and the loaders pick
//! the family from `config.json` at run time while the editing code stays generic over
//! [`EditableModel`]. Each method forwards to the family's own.

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::editable::EditableModel;
use super::gpt2::{ForwardOutput, Gpt2, KvCache};
use super::gptj::{Gptj, GptjConfig};
use super::hooks::Hooks;
use super::llama::{Llama, LlamaConfig};
use super::{Gpt2Config, precision};
use crate::error::{EngineError, Result};

/// The config of any supported family, chosen by `model_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// `gpt2` (or no `model_type`).
    Gpt2(Gpt2Config),
    /// `gptj`.
    Gptj(GptjConfig),
    /// `llama`, `mistral`, `qwen2`.
    Llama(LlamaConfig),
}

/// Families `config.json` may name.
pub const MODEL_TYPES: &str = "gpt2, gptj, llama, mistral, qwen2";

impl ModelConfig {
    /// Parses `config.json` contents and validates them for the family `model_type` names.
    pub fn from_json(text: &str) -> Result<Self> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| EngineError::Config {
            path: "config.json".into(),
            reason: e.to_string(),
        })?;
        // A family's own parse error says which family the file was read as.
        let family = |t: &str, e: EngineError| match e {
            EngineError::Config { path, reason } => EngineError::Config {
                path,
                reason: format!("read as a `{t}` config: {reason}"),
            },
            other => other,
        };
        match json.get("model_type").and_then(|t| t.as_str()) {
            None | Some("gpt2") => Ok(Self::Gpt2(Gpt2Config::from_json(text)?)),
            Some("gptj") => Ok(Self::Gptj(GptjConfig::from_json(text).map_err(|e| family("gptj", e))?)),
            Some(t @ ("llama" | "mistral" | "qwen2")) => {
                Ok(Self::Llama(LlamaConfig::from_json(text).map_err(|e| family(t, e))?))
            }
            Some(other) => Err(EngineError::Config {
                path: "config.json".into(),
                reason: format!("model_type is `{other}`; pmedit edits {MODEL_TYPES}"),
            }),
        }
    }

    /// The family's name (`model_type`).
    pub fn model_type(&self) -> &str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Gptj(_) => "gptj",
            Self::Llama(c) => &c.model_type,
        }
    }
    /// Blocks.
    pub fn n_layer(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_layer,
            Self::Gptj(c) => c.n_layer,
            Self::Llama(c) => c.num_hidden_layers,
        }
    }
    /// Width of the residual stream.
    pub fn d_model(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_embd,
            Self::Gptj(c) => c.n_embd,
            Self::Llama(c) => c.hidden_size,
        }
    }
    /// Key dimension (the edited matrix's input).
    pub fn d_inner(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.d_inner(),
            Self::Gptj(c) => c.d_inner(),
            Self::Llama(c) => c.intermediate_size,
        }
    }
    /// Attention heads.
    pub fn n_head(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_head,
            Self::Gptj(c) => c.n_head,
            Self::Llama(c) => c.num_attention_heads,
        }
    }
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Gptj(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
        }
    }
    /// Maximum context length.
    pub fn n_positions(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_positions,
            Self::Gptj(c) => c.n_positions,
            Self::Llama(c) => c.max_position_embeddings,
        }
    }
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.num_params(),
            Self::Gptj(c) => c.num_params(),
            Self::Llama(c) => c.num_params(),
        }
    }
    /// Name of the edited matrix in transformers' naming, for messages.
    pub fn edited_matrix(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "mlp.c_proj",
            Self::Gptj(_) => "mlp.fc_out",
            Self::Llama(_) => "mlp.down_proj",
        }
    }
}

/// A model of any supported family.
#[derive(Debug, Clone)]
pub enum Model {
    /// GPT-2.
    Gpt2(Gpt2),
    /// GPT-J.
    Gptj(Gptj),
    /// The Llama family.
    Llama(Llama),
}

impl From<Gpt2> for Model {
    fn from(m: Gpt2) -> Self {
        Self::Gpt2(m)
    }
}

impl From<Gptj> for Model {
    fn from(m: Gptj) -> Self {
        Self::Gptj(m)
    }
}

impl From<Llama> for Model {
    fn from(m: Llama) -> Self {
        Self::Llama(m)
    }
}

impl Model {
    /// The device the weights live on (also [`EditableModel::device`]; inherent so callers need
    /// not import the trait).
    pub fn device(&self) -> Device {
        EditableModel::device(self)
    }

    /// Logits for every position of `tokens` (also [`EditableModel::forward`]).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        EditableModel::forward(self, tokens)
    }

    /// The GPT-2 inside, if it is one.
    pub fn as_gpt2(&self) -> Option<&Gpt2> {
        match self {
            Self::Gpt2(m) => Some(m),
            _ => None,
        }
    }
}

macro_rules! each {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Model::Gpt2($m) => $e,
            Model::Gptj($m) => $e,
            Model::Llama($m) => $e,
        }
    };
}

impl EditableModel for Model {
    type Cache = KvCache;

    fn family(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Gptj(_) => "gptj",
            Self::Llama(_) => "llama",
        }
    }
    fn n_layer(&self) -> usize {
        each!(self, m => m.n_layer())
    }
    fn n_positions(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.n_positions(),
            Self::Gptj(m) => m.max_positions,
            Self::Llama(m) => m.max_positions,
        }
    }
    fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.vocab_size(),
            Self::Gptj(m) => m.wte.vocab(),
            Self::Llama(m) => m.embed_tokens.vocab(),
        }
    }
    fn d_model(&self) -> usize {
        match self {
            Self::Gpt2(m) => EditableModel::d_model(m),
            Self::Gptj(m) => m.wte.d_model(),
            Self::Llama(m) => m.embed_tokens.d_model(),
        }
    }
    fn key_dim(&self) -> usize {
        match self {
            Self::Gpt2(m) => EditableModel::key_dim(m),
            Self::Gptj(m) => m.h.first().map_or(0, |b| b.mlp.c_proj.weight.dims()[0]),
            Self::Llama(m) => m.layers.first().map_or(0, |b| b.mlp.down_proj.weight.dims()[0]),
        }
    }
    fn n_head(&self) -> usize {
        match self {
            Self::Gpt2(m) => EditableModel::n_head(m),
            Self::Gptj(m) => m.h.first().map_or(1, |b| b.attn.n_head),
            Self::Llama(m) => m.layers.first().map_or(1, |b| b.self_attn.n_head),
        }
    }
    fn device(&self) -> Device {
        each!(self, m => m.device())
    }
    fn parameters(&self) -> usize {
        each!(self, m => burn::module::Module::num_params(m))
    }
    fn float_dtype(&self) -> FloatDType {
        match self {
            Self::Gpt2(m) => precision::model_dtype(m),
            Self::Gptj(m) => {
                m.h.first()
                    .map_or(FloatDType::F32, |b| precision::dtype_of(&b.mlp.c_fc.weight.val()))
            }
            Self::Llama(m) => m
                .layers
                .first()
                .map_or(FloatDType::F32, |b| precision::dtype_of(&b.mlp.gate_proj.weight.val())),
        }
    }
    fn cast(self, dtype: FloatDType) -> Result<Self> {
        precision::check_supported(&self.device(), dtype)?;
        Ok(match self {
            Self::Gpt2(m) => Self::Gpt2(precision::cast_matrices(m, dtype)),
            Self::Gptj(m) => Self::Gptj(precision::cast_matrices(m, dtype)),
            Self::Llama(m) => Self::Llama(precision::cast_matrices(m, dtype)),
        })
    }
    fn forward_hooked(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> ForwardOutput {
        each!(self, m => m.forward_hooked(tokens, hooks))
    }
    fn forward_final_hidden(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> (Tensor<3>, Vec<Tensor<3>>) {
        each!(self, m => m.forward_final_hidden(tokens, hooks))
    }
    fn forward_from(&self, start: usize, h: Tensor<3>) -> Tensor<3> {
        each!(self, m => m.forward_from(start, h))
    }
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        each!(self, m => m.forward_cached(tokens, cache))
    }
    fn lm_head(&self, h: Tensor<3>) -> Tensor<3> {
        each!(self, m => m.lm_head(h))
    }
    fn edited_weight(&self, layer: usize) -> Tensor<2> {
        match self {
            Self::Gpt2(m) => m.h[layer].mlp.c_proj.weight.val(),
            Self::Gptj(m) => m.h[layer].mlp.c_proj.weight.val(),
            Self::Llama(m) => m.layers[layer].mlp.down_proj.weight.val(),
        }
    }
    fn set_edited_weight(&mut self, layer: usize, weight: Tensor<2>) {
        let weight = burn::module::Param::from_tensor(weight);
        match self {
            Self::Gpt2(m) => m.h[layer].mlp.c_proj.weight = weight,
            Self::Gptj(m) => m.h[layer].mlp.c_proj.weight = weight,
            Self::Llama(m) => m.layers[layer].mlp.down_proj.weight = weight,
        }
    }
    fn embedding_rows(&self, rows: usize) -> Tensor<2> {
        match self {
            Self::Gpt2(m) => m.wte.head_rows(rows),
            Self::Gptj(m) => m.wte.head_rows(rows),
            Self::Llama(m) => m.embed_tokens.head_rows(rows),
        }
    }
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            Self::Gpt2(m) => m.forward(tokens),
            Self::Gptj(m) => m
                .forward_hooked(tokens, &Hooks::default())
                .logits
                .expect("logits are computed when not skipped"),
            Self::Llama(m) => m
                .forward_hooked(tokens, &Hooks::default())
                .logits
                .expect("logits are computed when not skipped"),
        }
    }
}
