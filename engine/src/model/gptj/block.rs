//! One GPT-J block: attention and the MLP both read the same LayerNorm of `h`, in parallel:
//! `h + attn(ln_1(h)) + mlp(ln_1(h))`.

use burn::nn::LayerNorm;
use burn::prelude::*;

use crate::model::attention::LayerCache;
use crate::model::hooks::{Hooks, Site};
use crate::model::llama::attention::LlamaAttention;
use crate::model::mlp::Mlp;

/// A parallel-residual block.
#[derive(Module, Debug)]
pub struct GptjBlock {
    /// The one LayerNorm.
    pub ln_1: LayerNorm,
    /// Rotary attention (interleaved pairs on the first `rotary_dim` dimensions of each head).
    pub attn: LlamaAttention,
    /// `fc_out(gelu_new(fc_in(x)))`, held as GPT-2's MLP (`c_fc` = `fc_in`, `c_proj` = `fc_out`,
    /// the edited matrix).
    pub mlp: Mlp,
}

impl crate::model::rotary::RotaryBlock for GptjBlock {
    /// Runs the block as layer `layer` at the positions of `cos`/`sin`, applying `hooks`.
    fn forward(
        &self,
        layer: usize,
        h: Tensor<3>,
        (cos, sin): (&Tensor<2>, &Tensor<2>),
        cache: Option<&mut Option<LayerCache>>,
        hooks: &Hooks,
        probes: &mut [Option<Tensor<3>>],
    ) -> Tensor<3> {
        let x = self.ln_1.forward(h.clone());
        let attn = hooks.visit(
            layer,
            Site::AttnOut,
            self.attn.forward(x.clone(), cos, sin, cache),
            probes,
        );
        let keys = hooks.visit(layer, Site::MlpKey, self.mlp.keys(x), probes);
        let out = hooks.visit(layer, Site::MlpOut, self.mlp.project(keys), probes);
        hooks.visit(layer, Site::BlockOut, h + attn + out, probes)
    }
}
