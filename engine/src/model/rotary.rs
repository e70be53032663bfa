//! The block loop shared by the rotary-position families (Llama, GPT-J): embed, compute the RoPE
//! angles of the positions once per pass, run the blocks with hooks and an optional cache. Each
//! family applies its own final norm and LM head.

use burn::prelude::*;

use super::attention::LayerCache;
use super::embedding::TokenEmbedding;
use super::gpt2::KvCache;
use super::hooks::{Hooks, Site};
use super::rope;

/// A block that takes the RoPE angles of its positions.
pub trait RotaryBlock {
    /// Runs the block as layer `layer` on `h` at the positions of `angles` (cos, sin).
    fn forward(
        &self,
        layer: usize,
        h: Tensor<3>,
        angles: (&Tensor<2>, &Tensor<2>),
        cache: Option<&mut Option<LayerCache>>,
        hooks: &Hooks,
        probes: &mut [Option<Tensor<3>>],
    ) -> Tensor<3>;
}

/// Embeds `tokens` and runs `blocks` (as far as `hooks` need), at positions after those already
/// in `cache`. Returns the last block's output (before the final norm; `None` when the hooks skip
/// the logits) and the probes.
pub fn run<B: RotaryBlock>(
    embed: &TokenEmbedding,
    blocks: &[B],
    inv_freq: &[f64],
    tokens: Tensor<2, Int>,
    hooks: &Hooks,
    mut cache: Option<&mut KvCache>,
) -> (Option<Tensor<3>>, Vec<Tensor<3>>) {
    let [_, seq] = tokens.dims();
    let past = cache.as_ref().map_or(0, |c| c.len());
    if let Some(c) = cache.as_mut() {
        c.ensure_layers(blocks.len());
    }
    let mut probes = hooks.probe_slots();
    let mut h = hooks.visit(0, Site::Embed, embed.forward(tokens), &mut probes);
    let (cos, sin) = rope::angles(inv_freq, past, seq, &h.device());
    for (layer, block) in blocks.iter().enumerate().take(hooks.blocks_to_run(blocks.len())) {
        let slot = cache.as_mut().map(|c| c.layer_mut(layer));
        h = block.forward(layer, h, (&cos, &sin), slot, hooks, &mut probes);
    }
    ((!hooks.skip_logits).then_some(h), hooks.recorded(probes))
}

/// Runs `blocks[start..]` on the residual stream `h` (positions from 0), before the final norm.
pub fn run_from<B: RotaryBlock>(blocks: &[B], inv_freq: &[f64], start: usize, h: Tensor<3>) -> Tensor<3> {
    let (cos, sin) = rope::angles(inv_freq, 0, h.dims()[1], &h.device());
    let hooks = Hooks::default();
    let mut h = h;
    for (layer, block) in blocks.iter().enumerate().skip(start) {
        h = block.forward(layer, h, (&cos, &sin), None, &hooks, &mut []);
    }
    h
}
