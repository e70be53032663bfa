//! The GPT-2 hyper-parameters, read from a Hugging Face `config.json`.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The subset of Hugging Face's `GPT2Config` that defines the network.
///
/// Field names follow `config.json`, so the file deserialises directly; unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size (rows of `wte`).
    pub vocab_size: usize,
    /// Maximum context length (rows of `wpe`).
    pub n_positions: usize,
    /// Model width d.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Number of attention heads.
    pub n_head: usize,
    /// Width of the MLP hidden layer (the key dimension); `null` in the file means 4·d.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Activation of the MLP; GPT-2 uses `gelu_new` (tanh approximation).
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Must be `gpt2` when present.
    #[serde(default)]
    pub model_type: Option<String>,
    /// GPT-2 ties `lm_head` to `wte`; `false` is not supported.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Mistral-style attention scaling variants are not part of GPT-2; must be `false`.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Must be `true` (scores divided by √d_head).
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    /// Token id of `<|endoftext|>`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Token id used to start unconditional samples.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// A config with GPT-2's defaults for everything but the sizes.
    pub fn new(vocab_size: usize, n_positions: usize, n_embd: usize, n_layer: usize, n_head: usize) -> Self {
        Self {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            layer_norm_epsilon: default_eps(),
            activation_function: default_activation(),
            model_type: Some("gpt2".into()),
            tie_word_embeddings: true,
            scale_attn_by_inverse_layer_idx: false,
            scale_attn_weights: true,
            eos_token_id: Some(vocab_size as u32 - 1),
            bos_token_id: Some(vocab_size as u32 - 1),
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

    /// Checks that the config describes a GPT-2 network pmedit computes exactly.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| {
            Err(EngineError::Config {
                path: "config.json".into(),
                reason,
            })
        };
        if let Some(t) = &self.model_type
            && t != "gpt2"
        {
            return fail(format!("model_type is `{t}`, pmedit edits GPT-2 models (`gpt2`)"));
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
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
            return fail(format!(
                "activation_function `{}` is not supported (GPT-2 uses gelu_new)",
                self.activation_function
            ));
        }
        if !self.tie_word_embeddings {
            return fail("tie_word_embeddings = false is not supported (GPT-2 ties lm_head to wte)".into());
        }
        if self.scale_attn_by_inverse_layer_idx || !self.scale_attn_weights {
            return fail("only standard GPT-2 attention scaling is supported".into());
        }
        if self.n_inner == Some(0) {
            return fail("n_inner must be positive (or null for 4·n_embd)".into());
        }
        if self.checked_num_params().is_none() {
            return fail(format!(
                "the sizes overflow (vocab_size {}, n_positions {}, n_embd {}, n_layer {}, n_inner {:?}): not a real model",
                self.vocab_size, self.n_positions, self.n_embd, self.n_layer, self.n_inner
            ));
        }
        if !(self.layer_norm_epsilon > 0.0 && self.layer_norm_epsilon < 1.0) {
            return fail(format!(
                "layer_norm_epsilon {} is out of range",
                self.layer_norm_epsilon
            ));
        }
        Ok(())
    }

    /// Width of the MLP hidden layer, i.e. the dimension of a key.
    pub fn d_inner(&self) -> usize {
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    /// Width of one attention head.
    pub fn d_head(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Number of parameters (with `lm_head` tied, counted once).
    pub fn num_params(&self) -> usize {
        self.checked_num_params().unwrap_or(usize::MAX)
    }

    /// [`Self::num_params`], or `None` when the sizes overflow (a hostile `config.json`).
    pub fn checked_num_params(&self) -> Option<usize> {
        let (d, f, v) = (
            self.n_embd,
            self.n_inner.unwrap_or(self.n_embd.checked_mul(4)?),
            self.vocab_size,
        );
        let mul = |a: usize, b: usize| a.checked_mul(b);
        // ln_1, ln_2 (2·2d), c_attn (3d² + 3d), attn c_proj (d² + d), c_fc (df + f), mlp c_proj (fd + d).
        let block = [
            mul(4, d)?,
            mul(mul(3, d)?, d)?,
            mul(3, d)?,
            mul(d, d)?,
            d,
            mul(d, f)?,
            f,
            mul(f, d)?,
            d,
        ]
        .into_iter()
        .try_fold(0usize, usize::checked_add)?;
        [
            mul(v, d)?,
            mul(self.n_positions, d)?,
            mul(self.n_layer, block)?,
            mul(2, d)?,
        ]
        .into_iter()
        .try_fold(0usize, usize::checked_add)
    }
}
