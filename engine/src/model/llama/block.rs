//! One Llama block: `h + attn(rms_1(h))`, then `+ mlp(rms_2(·))`.

use burn::nn::{RmsNorm, RmsNormConfig};
use burn::prelude::*;

use super::attention::{LlamaAttention, LlamaAttentionConfig};
use super::mlp::{SwiGluMlp, SwiGluMlpConfig};
use crate::model::attention::LayerCache;
use crate::model::hooks::{Hooks, Site};

/// Configuration of [`LlamaBlock`].
#[derive(Config, Debug)]
pub struct LlamaBlockConfig {
    /// Attention.
    pub attention: LlamaAttentionConfig,
    /// MLP.
    pub mlp: SwiGluMlpConfig,
    /// RMSNorm epsilon.
    pub epsilon: f64,
}

/// A pre-RMSNorm transformer block.
#[derive(Module, Debug)]
pub struct LlamaBlock {
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// Grouped-query attention with rotary positions.
    pub self_attn: LlamaAttention,
    /// RMSNorm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// The MLP holding the edited matrix.
    pub mlp: SwiGluMlp,
}

impl LlamaBlockConfig {
    /// Creates the block with random weights on `device`.
    pub fn init(&self, device: &Device) -> LlamaBlock {
        let norm = || {
            RmsNormConfig::new(self.attention.d_model)
                .with_epsilon(self.epsilon)
                .init(device)
        };
        LlamaBlock {
            input_layernorm: norm(),
            self_attn: self.attention.init(device),
            post_attention_layernorm: norm(),
            mlp: self.mlp.init(device),
        }
    }
}

impl crate::model::rotary::RotaryBlock for LlamaBlock {
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
        let attn = self
            .self_attn
            .forward(self.input_layernorm.forward(h.clone()), cos, sin, cache);
        let h = h + hooks.visit(layer, Site::AttnOut, attn, probes);
        let keys = hooks.visit(
            layer,
            Site::MlpKey,
            self.mlp.keys(self.post_attention_layernorm.forward(h.clone())),
            probes,
        );
        let out = hooks.visit(layer, Site::MlpOut, self.mlp.project(keys), probes);
        hooks.visit(layer, Site::BlockOut, h + out, probes)
    }
}
