//! The Llama-family language model (transformers' `LlamaForCausalLM`, `MistralForCausalLM`,
//! `Qwen2ForCausalLM`): token embeddings, `n_layer` pre-RMSNorm blocks with rotary grouped-query
//! attention and SwiGLU MLPs, a final RMSNorm and an LM head that is its own matrix or the
//! embeddings.

use burn::nn::{RmsNorm, RmsNormConfig};
use burn::prelude::*;

use super::attention::LlamaAttentionConfig;
use super::block::{LlamaBlock, LlamaBlockConfig};
use super::config::LlamaConfig;
use super::mlp::SwiGluMlpConfig;
use crate::model::embedding::{TokenEmbedding, TokenEmbeddingConfig, max_chunk_bytes_for};
use crate::model::gpt2::{ForwardOutput, KvCache};
use crate::model::hooks::Hooks;
use crate::model::rotary;

/// A Llama-family model.
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embeddings `[vocab, d]` (in chunks).
    pub embed_tokens: TokenEmbedding,
    /// The blocks.
    pub layers: Vec<LlamaBlock>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
    /// The LM head `[vocab, d]` (transformers' `lm_head.weight`, in chunks); `None` when tied to
    /// the embeddings.
    pub lm_head: Option<TokenEmbedding>,
    /// Maximum context length.
    pub max_positions: usize,
    /// RoPE's inverse frequencies (scaling applied).
    #[module(skip)]
    pub inv_freq: Vec<f64>,
}

impl LlamaConfig {
    /// Creates a Llama with random weights (N(0, 0.02), as transformers) on `device`.
    pub fn init(&self, device: &Device) -> Llama {
        let block = LlamaBlockConfig::new(
            LlamaAttentionConfig::new(
                self.hidden_size,
                self.num_attention_heads,
                self.kv_heads(),
                self.d_head(),
            )
            .with_qkv_bias(self.qkv_bias())
            .with_o_bias(self.o_bias()),
            SwiGluMlpConfig::new(self.hidden_size, self.intermediate_size),
            self.rms_norm_eps,
        );
        let table = || {
            TokenEmbeddingConfig::new(self.vocab_size, self.hidden_size)
                .with_max_chunk_bytes(max_chunk_bytes_for(device))
                .init(device)
        };
        Llama {
            embed_tokens: table(),
            layers: (0..self.num_hidden_layers).map(|_| block.init(device)).collect(),
            norm: RmsNormConfig::new(self.hidden_size)
                .with_epsilon(self.rms_norm_eps)
                .init(device),
            lm_head: (!self.tie_word_embeddings).then(table),
            max_positions: self.max_position_embeddings,
            inv_freq: self.inv_freq(),
        }
    }
}

impl Llama {
    /// Number of blocks.
    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.device()
    }

    /// The LM head: `h · headᵀ`.
    pub fn lm_head(&self, h: Tensor<3>) -> Tensor<3> {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens).logits(h)
    }

    /// Forward pass with hooks.
    pub fn forward_hooked(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> ForwardOutput {
        let (hidden, probes) = self.run(tokens, hooks, None);
        ForwardOutput {
            logits: hidden.map(|h| self.lm_head(h)),
            probes,
        }
    }

    /// Final hidden states (after `norm`) and the probes.
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
        self.norm
            .forward(rotary::run_from(&self.layers, &self.inv_freq, start, h))
    }

    fn run(
        &self,
        tokens: Tensor<2, Int>,
        hooks: &Hooks,
        cache: Option<&mut KvCache>,
    ) -> (Option<Tensor<3>>, Vec<Tensor<3>>) {
        let (h, probes) = rotary::run(&self.embed_tokens, &self.layers, &self.inv_freq, tokens, hooks, cache);
        (h.map(|h| self.norm.forward(h)), probes)
    }
}
