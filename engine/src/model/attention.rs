//! Causal multi-head self-attention of GPT-2 (`attn.c_attn` fused q/k/v, `attn.c_proj`).

use burn::nn::{Initializer, Linear, LinearConfig};

/// N(0, std²), transformers' initialiser for GPT-2 weights.
pub(crate) fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::linear::linear_rows;

/// Configuration of [`Attention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width d.
    pub d_model: usize,
    /// Number of heads.
    pub n_head: usize,
    /// Standard deviation of the random `c_attn` weights (transformers' `initializer_range`).
    #[config(default = 0.02)]
    pub init_std: f64,
    /// Standard deviation of the random `c_proj` weights (transformers scales it by
    /// 1/√(2·n_layer) because it feeds the residual stream).
    #[config(default = 0.02)]
    pub proj_init_std: f64,
}

/// Causal self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// d → 3d, columns ordered q | k | v (HF Conv1D `[in, out]`).
    pub c_attn: Linear,
    /// d → d output projection.
    pub c_proj: Linear,
    /// Number of heads.
    pub n_head: usize,
}

/// Cached keys and values of one layer, `[batch, heads, past, d_head]`.
#[derive(Debug, Clone)]
pub struct LayerCache {
    /// Keys of the tokens seen so far.
    pub k: Tensor<4>,
    /// Values of the tokens seen so far.
    pub v: Tensor<4>,
}

impl AttentionConfig {
    /// Creates the attention module with random weights on `device`.
    pub fn init(&self, device: &Device) -> Attention {
        Attention {
            c_attn: LinearConfig::new(self.d_model, 3 * self.d_model)
                .with_initializer(normal(self.init_std))
                .init(device),
            c_proj: LinearConfig::new(self.d_model, self.d_model)
                .with_initializer(normal(self.proj_init_std))
                .init(device),
            n_head: self.n_head,
        }
    }
}

impl Attention {
    /// Attention over `x` (`[batch, seq, d]`), attending also to `cache` (earlier tokens) when
    /// given; the new keys/values are appended to the cache.
    pub fn forward(&self, x: Tensor<3>, cache: Option<&mut Option<LayerCache>>) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let dh = d / self.n_head;
        let qkv = linear_rows(&self.c_attn, x);
        let heads = |t: Tensor<3>| t.reshape([batch, seq, self.n_head, dh]).swap_dims(1, 2);
        let q = heads(qkv.clone().narrow(2, 0, d));
        let mut k = heads(qkv.clone().narrow(2, d, d));
        let mut v = heads(qkv.narrow(2, 2 * d, d));

        let mut past = 0;
        if let Some(slot) = cache {
            if let Some(prev) = slot.take() {
                past = prev.k.dims()[2];
                k = Tensor::cat(vec![prev.k, k], 2);
                v = Tensor::cat(vec![prev.v, v], 2);
            }
            *slot = Some(LayerCache {
                k: k.clone(),
                v: v.clone(),
            });
        }
        let total = past + seq;
        let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt();
        // Query i (absolute position past + i) may not see key j > past + i.
        let mask =
            Tensor::<2, Bool>::tril_mask([seq, total], past as i64, &scores.device()).reshape([1, 1, seq, total]);
        let scores = scores.mask_fill(mask.expand([batch, self.n_head, seq, total]), f32::MIN);
        let weights = softmax(scores, 3);
        let out = weights.matmul(v).swap_dims(1, 2).reshape([batch, seq, d]);
        linear_rows(&self.c_proj, out)
    }
}
