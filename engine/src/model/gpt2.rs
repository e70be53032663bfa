//! The GPT-2 language model (Hugging Face `GPT2LMHeadModel`, lm_head tied to `wte`).

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};

use super::embedding::{TokenEmbedding, TokenEmbeddingConfig, max_chunk_bytes_for};
use burn::prelude::*;

use super::attention::LayerCache;
use super::block::{Block, BlockConfig};
use super::config::Gpt2Config;
use super::hooks::{Hooks, Site};

/// GPT-2: token + position embeddings, `n_layer` blocks, final LayerNorm, tied LM head.
#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embeddings `[vocab, d]` (in chunks), also the (tied) LM head.
    pub wte: TokenEmbedding,
    /// Position embeddings `[n_positions, d]`.
    pub wpe: Embedding,
    /// The blocks.
    pub h: Vec<Block>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm,
}

/// Key/value cache for incremental decoding, one entry per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
}

impl KvCache {
    /// Number of tokens already processed.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|c| c.as_ref())
            .map_or(0, |c| c.k.dims()[2])
    }

    /// Whether no token was processed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `n` layers (a fresh cache has none).
    pub(crate) fn ensure_layers(&mut self, n: usize) {
        if self.layers.len() != n {
            self.layers = vec![None; n];
        }
    }

    /// The slot of layer `layer`.
    pub(crate) fn layer_mut(&mut self, layer: usize) -> &mut Option<LayerCache> {
        &mut self.layers[layer]
    }
}

/// What a hooked forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// Logits `[batch, seq, vocab]`, absent when the hooks asked to skip them.
    pub logits: Option<Tensor<3>>,
    /// The probed activations, in the order of `Hooks::probes`.
    pub probes: Vec<Tensor<3>>,
}

impl Gpt2Config {
    /// Creates a GPT-2 with random weights on `device`, initialised as transformers does: N(0, 0.02)
    /// for the embeddings and weights, N(0, 0.02/√(2·n_layer)) for the projections that feed the
    /// residual stream (burn's defaults — N(0, 1) position embeddings, Kaiming-uniform weights —
    /// train a GPT-2 several times slower).
    pub fn init(&self, device: &Device) -> Gpt2 {
        let block = BlockConfig::new(self.n_embd, self.d_inner(), self.n_head, self.layer_norm_epsilon)
            .with_proj_init_std(0.02 / (2.0 * self.n_layer as f64).sqrt());
        Gpt2 {
            wte: TokenEmbeddingConfig::new(self.vocab_size, self.n_embd)
                .with_max_chunk_bytes(max_chunk_bytes_for(device))
                .init(device),
            wpe: EmbeddingConfig::new(self.n_positions, self.n_embd)
                .with_initializer(burn::nn::Initializer::Normal { mean: 0.0, std: 0.02 })
                .init(device),
            h: (0..self.n_layer).map(|_| block.init(device)).collect(),
            ln_f: LayerNormConfig::new(self.n_embd)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device),
        }
    }
}

impl Gpt2 {
    /// Number of blocks.
    pub fn n_layer(&self) -> usize {
        self.h.len()
    }

    /// Maximum context length.
    pub fn n_positions(&self) -> usize {
        self.wpe.weight.dims()[0]
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.wte.vocab()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.wte.device()
    }

    /// Logits for every position of `tokens` (`[batch, seq]`, right-padded).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let out = self.forward_hooked(tokens, &Hooks::default());
        out.logits.expect("logits are computed when not skipped")
    }

    /// Forward pass with hooks: probes activations and adds edits (see [`Hooks`]).
    pub fn forward_hooked(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> ForwardOutput {
        let (hidden, probes) = self.run(tokens, hooks, None);
        ForwardOutput {
            logits: hidden.map(|h| self.lm_head(h)),
            probes,
        }
    }

    /// Like [`forward_hooked`](Self::forward_hooked) but returns the final hidden states (after
    /// `ln_f`, `[batch, seq, d]`) instead of logits, so callers can apply [`lm_head`](Self::lm_head)
    /// to the few positions they score.
    pub fn forward_final_hidden(&self, tokens: Tensor<2, Int>, hooks: &Hooks) -> (Tensor<3>, Vec<Tensor<3>>) {
        let (hidden, probes) = self.run(tokens, &hooks.with_logits(), None);
        (
            hidden.expect("hidden states are computed when logits are not skipped"),
            probes,
        )
    }

    /// Logits of the new `tokens` given the tokens already in `cache` (which is extended).
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let (hidden, _) = self.run(tokens, &Hooks::default(), Some(cache));
        self.lm_head(hidden.expect("hidden states are computed when logits are not skipped"))
    }

    /// Runs blocks `start..` on the residual stream `h` (`[batch, seq, d]`, the output of block
    /// `start - 1`) and returns the final hidden states after `ln_f`. Value optimisation uses it to
    /// skip the blocks before the edited layer, whose outputs never change.
    pub fn forward_from(&self, start: usize, h: Tensor<3>) -> Tensor<3> {
        let hooks = Hooks::default();
        let mut h = h;
        for (layer, block) in self.h.iter().enumerate().skip(start) {
            h = block.forward(layer, h, None, &hooks, &mut []);
        }
        self.ln_f.forward(h)
    }

    /// The tied LM head: `h · wteᵀ`.
    pub fn lm_head(&self, h: Tensor<3>) -> Tensor<3> {
        self.wte.logits(h)
    }

    /// Final hidden states (after `ln_f`, unless the hooks skip them) and the probes.
    fn run(
        &self,
        tokens: Tensor<2, Int>,
        hooks: &Hooks,
        cache: Option<&mut KvCache>,
    ) -> (Option<Tensor<3>>, Vec<Tensor<3>>) {
        let [_, seq] = tokens.dims();
        let mut cache = cache;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(c) = cache.as_mut()
            && c.layers.len() != self.h.len()
        {
            c.layers = vec![None; self.h.len()];
        }
        let pos = self
            .wpe
            .weight
            .val()
            .narrow(0, past, seq)
            .cast(super::precision::ACTIVATIONS)
            .unsqueeze_dim::<3>(0);
        let mut probes = hooks.probe_slots();
        let mut h = hooks.visit(0, Site::Embed, self.wte.forward(tokens) + pos, &mut probes);

        let last = hooks.blocks_to_run(self.h.len());
        for (layer, block) in self.h.iter().enumerate().take(last) {
            let slot = cache.as_mut().map(|c| &mut c.layers[layer]);
            h = block.forward(layer, h, slot, hooks, &mut probes);
        }
        let hidden = (!hooks.skip_logits).then(|| self.ln_f.forward(h));
        (hidden, hooks.recorded(probes))
    }
}
