//! GPT-J's hyper-parameters, read from a Hugging Face `config.json` (`model_type: gptj`).

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The subset of transformers' `GPTJConfig` that defines the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptjConfig {
    /// Must be `gptj`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum context length.
    pub n_positions: usize,
    /// Model width d.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Dimensions of each head that RoPE rotates (64 of 256 for GPT-J 6B); `null` means all.
    #[serde(default)]
    pub rotary_dim: Option<usize>,
    /// MLP hidden width (the key dimension); `null` means 4·d.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Must be `gelu_new`.
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// GPT-J's head is its own matrix with a bias; `true` is not supported.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Token id of `<|endoftext|>`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Token id of `<|endoftext|>`.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}

impl GptjConfig {
    /// Parses and validates `config.json` contents.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| EngineError::Config {
            path: "config.json".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Width of a head.
    pub fn d_head(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Rotated dimensions per head.
    pub fn rotary(&self) -> usize {
        self.rotary_dim.unwrap_or(self.d_head())
    }

    /// The MLP's hidden width.
    pub fn d_inner(&self) -> usize {
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    /// RoPE's inverse frequencies over the rotated dimensions (transformers'
    /// `create_sinusoidal_positions`).
    pub fn inv_freq(&self) -> Vec<f64> {
        let r = self.rotary();
        (0..r / 2)
            .map(|i| 1.0 / 10_000f64.powf(2.0 * i as f64 / r as f64))
            .collect()
    }

    /// Checks that the config describes a GPT-J pmedit computes exactly.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| {
            Err(EngineError::Config {
                path: "config.json".into(),
                reason,
            })
        };
        if self.model_type != "gptj" {
            return fail(format!("model_type `{}` is not gptj", self.model_type));
        }
        if self.vocab_size == 0 || self.n_positions == 0 || self.n_embd == 0 || self.n_layer == 0 || self.n_head == 0 {
            return fail("vocab_size, n_positions, n_embd, n_layer and n_head must be positive".into());
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return fail(format!(
                "n_embd {} is not divisible by n_head {}",
                self.n_embd, self.n_head
            ));
        }
        let r = self.rotary();
        if r == 0 || !r.is_multiple_of(2) || r > self.d_head() {
            return fail(format!(
                "rotary_dim {r} must be even and at most the head width {}",
                self.d_head()
            ));
        }
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
            return fail(format!(
                "activation_function `{}` is not supported (GPT-J uses gelu_new)",
                self.activation_function
            ));
        }
        if self.tie_word_embeddings {
            return fail("tie_word_embeddings = true is not GPT-J".into());
        }
        if self.n_inner == Some(0) {
            return fail("n_inner must be positive (or null for 4·n_embd)".into());
        }
        if !(self.layer_norm_epsilon > 0.0 && self.layer_norm_epsilon < 1.0) {
            return fail(format!(
                "layer_norm_epsilon {} is out of range",
                self.layer_norm_epsilon
            ));
        }
        if self.checked_num_params().is_none() {
            return fail("the sizes overflow: not a real model".into());
        }
        Ok(())
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.checked_num_params().unwrap_or(usize::MAX)
    }

    /// [`Self::num_params`], or `None` when the sizes overflow.
    pub fn checked_num_params(&self) -> Option<usize> {
        let (d, v) = (self.n_embd, self.vocab_size);
        let f = self.n_inner.unwrap_or(d.checked_mul(4)?);
        let mul = |a: usize, b: usize| a.checked_mul(b);
        // ln_1 (2d), q/k/v/out (4d²), fc_in (df + f), fc_out (fd + d).
        let block = [mul(2, d)?, mul(mul(4, d)?, d)?, mul(d, f)?, f, mul(f, d)?, d]
            .into_iter()
            .try_fold(0usize, usize::checked_add)?;
        [mul(v, d)?, mul(self.n_layer, block)?, mul(2, d)?, mul(v, d)?, v]
            .into_iter()
            .try_fold(0usize, usize::checked_add)
    }
}
