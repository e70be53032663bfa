//! The SwiGLU MLP of the Llama family: `down_proj(silu(gate_proj(x)) ⊙ up_proj(x))`.
//! `down_proj` is the matrix W the PM family edits; its input `silu(gate(x)) ⊙ up(x)` is the key
//! (docs/MATH.md §1), of dimension `intermediate_size`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::model::attention::normal;
use crate::model::linear::linear_rows;

/// Configuration of [`SwiGluMlp`].
#[derive(Config, Debug)]
pub struct SwiGluMlpConfig {
    /// Model width d.
    pub d_model: usize,
    /// Hidden width: the key dimension.
    pub d_inner: usize,
    /// Standard deviation of random weights.
    #[config(default = 0.02)]
    pub init_std: f64,
}

/// Gated feed-forward network.
#[derive(Module, Debug)]
pub struct SwiGluMlp {
    /// d → d_inner, the gate.
    pub gate_proj: Linear,
    /// d → d_inner.
    pub up_proj: Linear,
    /// d_inner → d: the edited matrix W (stored `[in, out]`, Wᵀ in the paper's notation).
    pub down_proj: Linear,
}

impl SwiGluMlpConfig {
    /// Creates the MLP with random weights on `device`.
    pub fn init(&self, device: &Device) -> SwiGluMlp {
        let lin = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(false)
                .with_initializer(normal(self.init_std))
                .init(device)
        };
        SwiGluMlp {
            gate_proj: lin(self.d_model, self.d_inner),
            up_proj: lin(self.d_model, self.d_inner),
            down_proj: lin(self.d_inner, self.d_model),
        }
    }
}

impl SwiGluMlp {
    /// The keys: `silu(gate_proj(x)) ⊙ up_proj(x)`, `[.., d_inner]`.
    pub fn keys<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        silu(linear_rows(&self.gate_proj, x.clone())) * linear_rows(&self.up_proj, x)
    }

    /// The values: `down_proj(k)`, `[.., d]`.
    pub fn project<const D: usize>(&self, keys: Tensor<D>) -> Tensor<D> {
        linear_rows(&self.down_proj, keys)
    }
}
