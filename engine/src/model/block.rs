//! One pre-LayerNorm GPT-2 block: `h + attn(ln_1(h))`, then `+ mlp(ln_2(·))`.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::{Attention, AttentionConfig, LayerCache};
use super::hooks::{Hooks, Site};
use super::mlp::{Mlp, MlpConfig};

/// Configuration of [`Block`].
#[derive(Config, Debug)]
pub struct BlockConfig {
    /// Model width d.
    pub d_model: usize,
    /// MLP hidden width.
    pub d_inner: usize,
    /// Number of attention heads.
    pub n_head: usize,
    /// LayerNorm epsilon.
    pub epsilon: f64,
    /// Standard deviation of the residual projections' random weights.
    #[config(default = 0.02)]
    pub proj_init_std: f64,
}

/// A transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// LayerNorm before attention.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: Attention,
    /// LayerNorm before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP holding the edited matrix.
    pub mlp: Mlp,
}

impl BlockConfig {
    /// Creates the block with random weights on `device`.
    pub fn init(&self, device: &Device) -> Block {
        let ln = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.epsilon)
                .init(device)
        };
        Block {
            ln_1: ln(),
            attn: AttentionConfig::new(self.d_model, self.n_head)
                .with_proj_init_std(self.proj_init_std)
                .init(device),
            ln_2: ln(),
            mlp: MlpConfig::new(self.d_model, self.d_inner)
                .with_proj_init_std(self.proj_init_std)
                .init(device),
        }
    }
}

impl Block {
    /// Runs the block as layer `layer`, applying `hooks` at its sites.
    pub fn forward(
        &self,
        layer: usize,
        h: Tensor<3>,
        cache: Option<&mut Option<LayerCache>>,
        hooks: &Hooks,
        probes: &mut [Option<Tensor<3>>],
    ) -> Tensor<3> {
        let attn = hooks.visit(
            layer,
            Site::AttnOut,
            self.attn.forward(self.ln_1.forward(h.clone()), cache),
            probes,
        );
        let h = h + attn;
        let keys = hooks.visit(layer, Site::MlpKey, self.mlp.keys(self.ln_2.forward(h.clone())), probes);
        let out = hooks.visit(layer, Site::MlpOut, self.mlp.project(keys), probes);
        hooks.visit(layer, Site::BlockOut, h + out, probes)
    }
}
