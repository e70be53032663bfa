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
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Width of one attention head.
    pub fn d_head(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Number of parameters (with `lm_head` tied, counted once).
    pub fn num_params(&self) -> usize {
        let d = self.n_embd;
        let f = self.d_inner();
        let block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
        self.vocab_size * d + self.n_positions * d + self.n_layer * block + 2 * d
    }
}
