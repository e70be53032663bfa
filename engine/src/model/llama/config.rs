//! The Llama-family hyper-parameters, read from a Hugging Face `config.json`: `model_type`
//! `llama` (Llama-2, Llama-3), `mistral` and `qwen2`, which differ only in what the config says
//! (grouped-query heads, RoPE base and scaling, qkv bias, a tied or untied head).

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// `rope_scaling` of a Llama config: `null`, `{"rope_type": "llama3", ...}` (Llama-3.1 and later)
/// or `{"type"/"rope_type": "linear", "factor": F}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `llama3`, `linear` or `default` (`type` in older configs).
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Scaling factor.
    #[serde(default = "one")]
    pub factor: f64,
    /// Llama-3: wavelengths shorter than `original / high_freq_factor` are kept.
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    /// Llama-3: wavelengths longer than `original / low_freq_factor` are divided by `factor`.
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    /// Llama-3: the context length the model was pre-trained with.
    #[serde(default = "default_original")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_original() -> usize {
    8192
}

/// The subset of transformers' `LlamaConfig` (and `MistralConfig`, `Qwen2Config`) that defines
/// the network. Field names follow `config.json`; unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `mistral` or `qwen2`.
    pub model_type: String,
    /// Vocabulary size (rows of `embed_tokens`).
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer: the key dimension of the edited `down_proj`.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); `null` or absent means one per query head.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of a head, when it is not `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RoPE scaling.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Maximum context length.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Whether the LM head is the token embeddings (small Llama-3.2 and Qwen2 models) or its own
    /// `lm_head.weight`.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on q, k, v and o (Llama's `attention_bias`); Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Bias on the MLP's projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Must be `silu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Token id prepended to every sequence.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End of text: a number or a list (Llama-3 instruct models).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    /// A Llama config with Llama-2's defaults for everything but the sizes.
    pub fn new(vocab_size: usize, hidden_size: usize, intermediate_size: usize, layers: usize, heads: usize) -> Self {
        Self {
            model_type: "llama".into(),
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: None,
            head_dim: None,
            rms_norm_eps: default_eps(),
            rope_theta: default_theta(),
            rope_scaling: None,
            max_position_embeddings: default_positions(),
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: default_act(),
            bos_token_id: Some(1),
            eos_token_id: Some(2.into()),
        }
    }

    /// Parses and validates `config.json` contents.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| EngineError::Config {
            path: "config.json".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn d_head(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q, k and v carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// Whether the output projection of attention carries a bias.
    pub fn o_bias(&self) -> bool {
        self.attention_bias
    }

    /// Checks that the config describes a network pmedit computes exactly.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| {
            Err(EngineError::Config {
                path: "config.json".into(),
                reason,
            })
        };
        if !matches!(self.model_type.as_str(), "llama" | "mistral" | "qwen2") {
            return fail(format!("model_type `{}` is not a Llama-family model", self.model_type));
        }
        if self.vocab_size == 0
            || self.hidden_size == 0
            || self.intermediate_size == 0
            || self.num_hidden_layers == 0
            || self.num_attention_heads == 0
            || self.kv_heads() == 0
            || self.max_position_embeddings == 0
        {
            return fail(
                "vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, \
                 num_key_value_heads and max_position_embeddings must be positive"
                    .into(),
            );
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.d_head().is_multiple_of(2) || self.d_head() == 0 {
            return fail(format!(
                "the head width {} must be even for rotary embeddings",
                self.d_head()
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return fail(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if self.hidden_act != "silu" {
            return fail(format!(
                "hidden_act `{}` is not supported (Llama uses silu)",
                self.hidden_act
            ));
        }
        if self.mlp_bias {
            return fail("mlp_bias = true is not supported".into());
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return fail(format!("rms_norm_eps {} is out of range", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return fail(format!("rope_theta {} is out of range", self.rope_theta));
        }
        if let Some(s) = &self.rope_scaling {
            if !matches!(s.rope_type.as_str(), "llama3" | "linear" | "default") {
                return fail(format!(
                    "rope_scaling type `{}` is not supported (llama3, linear)",
                    s.rope_type
                ));
            }
            let in_range = s.factor.is_finite()
                && s.factor >= 1.0
                && s.low_freq_factor.is_finite()
                && s.low_freq_factor > 0.0
                && s.high_freq_factor.is_finite()
                && s.high_freq_factor > s.low_freq_factor
                && s.original_max_position_embeddings > 0;
            if !in_range {
                return fail(format!("rope_scaling {s:?} is out of range"));
            }
        }
        if self.checked_num_params().is_none() {
            return fail("the sizes overflow: not a real model".into());
        }
        Ok(())
    }

    /// Number of parameters (a tied head counted once).
    pub fn num_params(&self) -> usize {
        self.checked_num_params().unwrap_or(usize::MAX)
    }

    /// [`Self::num_params`], or `None` when the sizes overflow (a hostile `config.json`).
    pub fn checked_num_params(&self) -> Option<usize> {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads.checked_mul(self.d_head())?;
        let kv = self.kv_heads().checked_mul(self.d_head())?;
        let mul = |a: usize, b: usize| a.checked_mul(b);
        let qkv_bias = if self.qkv_bias() { q + 2 * kv } else { 0 };
        let o_bias = if self.o_bias() { d } else { 0 };
        let block = [
            mul(2, d)?,
            mul(d, q)?,
            mul(mul(2, d)?, kv)?,
            mul(q, d)?,
            qkv_bias,
            o_bias,
            mul(mul(3, d)?, f)?,
        ]
        .into_iter()
        .try_fold(0usize, usize::checked_add)?;
        let head = if self.tie_word_embeddings { 0 } else { mul(v, d)? };
        [mul(v, d)?, head, mul(self.num_hidden_layers, block)?, d]
            .into_iter()
            .try_fold(0usize, usize::checked_add)
    }

    /// RoPE's inverse frequencies θ^(−2i/d_head), i < d_head/2, with `rope_scaling` applied as
    /// transformers' `_compute_llama3_parameters` / linear scaling do.
    pub fn inv_freq(&self) -> Vec<f64> {
        let dh = self.d_head();
        let base: Vec<f64> = (0..dh / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / dh as f64))
            .collect();
        match &self.rope_scaling {
            Some(s) if s.rope_type == "linear" => base.iter().map(|f| f / s.factor).collect(),
            Some(s) if s.rope_type == "llama3" => {
                let old = s.original_max_position_embeddings as f64;
                let low_wavelen = old / s.low_freq_factor;
                let high_wavelen = old / s.high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    })
                    .collect()
            }
            _ => base,
        }
    }
}
