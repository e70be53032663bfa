//! What the editing code needs of a language model, and nothing more: the [`EditableModel`]
//! trait. The PM editors (docs/MATH.md §3–§5) read keys at the edited matrix's input, add δ at its
//! output or at a block's output, run the blocks after the edited layer and the LM head during the
//! value optimisation, and add Δ to one matrix per layer. A model family plugs in by implementing
//! this trait (docs/ARCHITECTURE.md, "Adding a model family"); [`Gpt2`] is the first.

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::gpt2::{ForwardOutput, Gpt2, KvCache};
use super::hooks::Hooks;
use crate::error::Result;

/// A causal language model whose MLP output matrices the PM editors can rewrite.
///
/// Layout: the edited matrix of layer `l` is W (keys → values); it is read and written as
/// Wᵀ `[key_dim, d_model]`, so keys are its rows' index and a Δ solved by the objective
/// (docs/MATH.md eq. 9) is added as it comes.
pub trait EditableModel: Clone + core::fmt::Debug {
    /// The incremental-decoding cache of [`forward_cached`](Self::forward_cached).
    type Cache: Default;

    /// The family the presets know it by: `gpt2`, `gptj` or `llama` (Mistral and Qwen2 included).
    fn family(&self) -> &'static str {
        "gpt2"
    }
    /// Number of blocks.
    fn n_layer(&self) -> usize;
    /// Maximum context length.
    fn n_positions(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Width of the residual stream (d).
    fn d_model(&self) -> usize;
    /// Dimension of the keys (the edited matrix's input, n).
    fn key_dim(&self) -> usize;
    /// Attention heads (the value optimisation's memory estimate).
    fn n_head(&self) -> usize;
    /// The device the weights live on.
    fn device(&self) -> Device;
    /// Number of parameters.
    fn parameters(&self) -> usize;
    /// The float dtype the weight matrices are stored in (activations are f32 whatever it is).
    fn float_dtype(&self) -> FloatDType;
    /// The model with every weight matrix stored in `dtype` on its device.
    fn cast(self, dtype: FloatDType) -> Result<Self>;

    /// Forward pass with hooks: probes activations and adds edits at `(layer, Site)`.
    fn forward_hooked(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> ForwardOutput;
    /// Like [`forward_hooked`](Self::forward_hooked), returning the final hidden states (after the
    /// final norm, `[batch, seq, d]`) instead of logits.
    fn forward_final_hidden(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> (Tensor<3>, Vec<Tensor<3>>);
    /// Runs blocks `start..` on the residual stream `h` (the output of block `start − 1`) and
    /// returns the final hidden states.
    fn forward_from(&self, start: usize, h: Tensor<3>) -> Tensor<3>;
    /// Logits of the new `tokens` given those already in `cache` (which is extended).
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut Self::Cache) -> Tensor<3>;
    /// The LM head on final hidden states.
    fn lm_head(&self, h: Tensor<3>) -> Tensor<3>;

    /// Wᵀ `[key_dim, d_model]` of layer `layer`'s edited matrix.
    fn edited_weight(&self, layer: usize) -> Tensor<2>;
    /// Replaces Wᵀ of layer `layer` (same shape; f32 or the stored dtype: the forward pass
    /// multiplies in whichever dtype the matrix has).
    fn set_edited_weight(&mut self, layer: usize, weight: Tensor<2>);
    /// The first `rows` rows of the token embeddings (the statistics' model fingerprint).
    fn embedding_rows(&self, rows: usize) -> Tensor<2>;

    /// Logits for every position of `tokens` (`[batch, seq]`, right-padded).
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_hooked(tokens, &Hooks::default())
            .logits
            .expect("logits are computed when not skipped")
    }

    /// Adds `delta` (`[key_dim, d_model]`) to Wᵀ of layer `layer`.
    fn add_to_edited_weight(&mut self, layer: usize, delta: Tensor<2>) {
        let w = self.edited_weight(layer);
        let dtype = w.dtype();
        let updated = if dtype == delta.dtype() {
            w + delta
        } else {
            w + delta.cast(dtype)
        };
        self.set_edited_weight(layer, updated);
    }
}

impl EditableModel for Gpt2 {
    type Cache = KvCache;

    fn n_layer(&self) -> usize {
        Gpt2::n_layer(self)
    }
    fn n_positions(&self) -> usize {
        Gpt2::n_positions(self)
    }
    fn vocab_size(&self) -> usize {
        Gpt2::vocab_size(self)
    }
    fn d_model(&self) -> usize {
        self.wte.d_model()
    }
    fn key_dim(&self) -> usize {
        self.h.first().map_or(0, |b| b.mlp.c_proj.weight.dims()[0])
    }
    fn n_head(&self) -> usize {
        self.h.first().map_or(1, |b| b.attn.n_head)
    }
    fn device(&self) -> Device {
        Gpt2::device(self)
    }
    fn parameters(&self) -> usize {
        burn::module::Module::num_params(self)
    }
    fn float_dtype(&self) -> FloatDType {
        super::precision::model_dtype(self)
    }
    fn cast(self, dtype: FloatDType) -> Result<Self> {
        super::precision::cast_model(self, dtype)
    }
    fn forward_hooked(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> ForwardOutput {
        Gpt2::forward_hooked(self, tokens, hooks)
    }
    fn forward_final_hidden(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> (Tensor<3>, Vec<Tensor<3>>) {
        Gpt2::forward_final_hidden(self, tokens, hooks)
    }
    fn forward_from(&self, start: usize, h: Tensor<3>) -> Tensor<3> {
        Gpt2::forward_from(self, start, h)
    }
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        Gpt2::forward_cached(self, tokens, cache)
    }
    fn lm_head(&self, h: Tensor<3>) -> Tensor<3> {
        Gpt2::lm_head(self, h)
    }
    fn edited_weight(&self, layer: usize) -> Tensor<2> {
        self.h[layer].mlp.c_proj.weight.val()
    }
    fn set_edited_weight(&mut self, layer: usize, weight: Tensor<2>) {
        self.h[layer].mlp.c_proj.weight = burn::module::Param::from_tensor(weight);
    }
    fn embedding_rows(&self, rows: usize) -> Tensor<2> {
        self.wte.head_rows(rows)
    }
    fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        Gpt2::forward(self, tokens)
    }
}
