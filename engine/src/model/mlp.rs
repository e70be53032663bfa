//! The GPT-2 MLP: `c_proj(gelu_new(c_fc(x)))`. `c_proj` is the matrix W that the PM family edits;
//! its input (after GELU) is the *key* k and its output the *value* (PAPER.md, "The setting").

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

/// Configuration of [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Model width d.
    pub d_model: usize,
    /// Hidden width (4·d for GPT-2): the key dimension.
    pub d_inner: usize,
    /// Standard deviation of the random `c_fc` weights.
    #[config(default = 0.02)]
    pub init_std: f64,
    /// Standard deviation of the random `c_proj` weights (see [`AttentionConfig`](super::attention::AttentionConfig)).
    #[config(default = 0.02)]
    pub proj_init_std: f64,
}

/// Position-wise feed-forward network of a GPT-2 block.
#[derive(Module, Debug)]
pub struct Mlp {
    /// d → d_inner; HF Conv1D weight `[in, out]`, the same layout as burn's `Linear`.
    pub c_fc: Linear,
    /// d_inner → d: the edited matrix W (stored `[in, out]`, i.e. Wᵀ in the paper's notation).
    pub c_proj: Linear,
}

impl MlpConfig {
    /// Creates an MLP with randomly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        Mlp {
            c_fc: LinearConfig::new(self.d_model, self.d_inner)
                .with_initializer(super::attention::normal(self.init_std))
                .init(device),
            c_proj: LinearConfig::new(self.d_inner, self.d_model)
                .with_initializer(super::attention::normal(self.proj_init_std))
                .init(device),
        }
    }
}

impl Mlp {
    /// The keys: `gelu_new(c_fc(x))`, shape `[.., d_inner]`.
    pub fn keys<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        gelu_approximate(self.c_fc.forward(x))
    }

    /// The values: `c_proj(k)`, shape `[.., d]`.
    pub fn project<const D: usize>(&self, keys: Tensor<D>) -> Tensor<D> {
        self.c_proj.forward(keys)
    }
}
