//! GPT-J (transformers' `GPTJForCausalLM`): token embeddings, parallel-residual blocks with
//! rotary attention, a final LayerNorm and an untied LM head with a bias.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::block::GptjBlock;
use super::config::GptjConfig;
use crate::model::embedding::{TokenEmbedding, TokenEmbeddingConfig, max_chunk_bytes_for};
use crate::model::gpt2::{ForwardOutput, KvCache};
use crate::model::hooks::Hooks;
use crate::model::llama::attention::LlamaAttentionConfig;
use crate::model::mlp::MlpConfig;
use crate::model::rope::Pairing;
use crate::model::rotary;

/// GPT-J.
#[derive(Module, Debug)]
pub struct Gptj {
    /// Token embeddings `[vocab, d]` (in chunks).
    pub wte: TokenEmbedding,
    /// The blocks.
    pub h: Vec<GptjBlock>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm,
    /// LM head `[vocab, d]` (in chunks).
    pub lm_head: TokenEmbedding,
    /// LM head bias `[vocab]`.
    pub lm_head_bias: Param<Tensor<1>>,
    /// Maximum context length.
    pub max_positions: usize,
    /// RoPE's inverse frequencies over the rotated dimensions.
    #[module(skip)]
    pub inv_freq: Vec<f64>,
}

impl GptjConfig {
    /// Creates a GPT-J with random weights (N(0, 0.02)) on `device`.
    pub fn init(&self, device: &Device) -> Gptj {
        let (d, h) = (self.n_embd, self.n_head);
        let ln = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device)
        };
        let table = || {
            TokenEmbeddingConfig::new(self.vocab_size, d)
                .with_max_chunk_bytes(max_chunk_bytes_for(device))
                .init(device)
        };
        let attention = LlamaAttentionConfig::new(d, h, h, self.d_head()).with_pairing(Pairing::Interleaved);
        let mlp = MlpConfig::new(d, self.d_inner());
        Gptj {
            wte: table(),
            h: (0..self.n_layer)
                .map(|_| GptjBlock {
                    ln_1: ln(),
                    attn: attention.init(device),
                    mlp: mlp.init(device),
                })
                .collect(),
            ln_f: ln(),
            lm_head: table(),
            lm_head_bias: burn::nn::Initializer::Zeros.init([self.vocab_size], device),
            max_positions: self.n_positions,
            inv_freq: self.inv_freq(),
        }
    }
}

impl Gptj {
    /// Number of blocks.
    pub fn n_layer(&self) -> usize {
        self.h.len()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.wte.device()
    }

    /// The LM head: `h · headᵀ + b`.
    pub fn lm_head(&self, h: Tensor<3>) -> Tensor<3> {
        let logits = self.lm_head.logits(h);
        let bias = self.lm_head_bias.val().cast(logits.dtype());
        logits + bias.unsqueeze_dims::<3>(&[0, 1])
    }

    /// Forward pass with hooks.
    pub fn forward_hooked(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> ForwardOutput {
        let (hidden, probes) = self.run(tokens, hooks, None);
        ForwardOutput {
            logits: hidden.map(|h| self.lm_head(h)),
            probes,
        }
    }

    /// Final hidden states (after `ln_f`) and the probes.
    pub fn forward_final_hidden(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> (Tensor<3>, Vec<Tensor<3>>) {
        let (hidden, probes) = self.run(tokens, &hooks.with_logits(), None);
        (
            hidden.expect("hidden states are computed when logits are not skipped"),
            probes,
        )
    }

    /// Logits of the new `tokens` given those already in `cache` (which is extended).
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let (hidden, _) = self.run(tokens, &Hooks::default(), Some(cache));
        self.lm_head(hidden.expect("hidden states are computed when logits are not skipped"))
    }

    /// Runs blocks `start..` on `h` (positions from 0) and returns the final hidden states.
    pub fn forward_from(&self, start: usize, h: Tensor<3>) -> Tensor<3> {
        self.ln_f.forward(rotary::run_from(&self.h, &self.inv_freq, start, h))
    }

    fn run(
        &self,
        tokens: Tensor<2, Int>,
        hooks: &Hooks,
        cache: Option<&mut KvCache>,
    ) -> (Option<Tensor<3>>, Vec<Tensor<3>>) {
        let (h, probes) = rotary::run(&self.wte, &self.h, &self.inv_freq, tokens, hooks, cache);
        (h.map(|h| self.ln_f.forward(h)), probes)
    }
}
