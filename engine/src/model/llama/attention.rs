//! Causal self-attention of the Llama family: separate `q_proj`, `k_proj`, `v_proj`, `o_proj`
//! (transformers' `nn.Linear`, stored `[out, in]` in the files and transposed on load to burn's
//! `[in, out]`), rotary positions on q and k, and grouped-query attention (each key/value head
//! shared by `n_head / n_kv_head` query heads).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::model::attention::{LayerCache, normal};
use crate::model::linear::linear_rows;
use crate::model::rope::{self, Pairing};

/// Configuration of [`LlamaAttention`].
#[derive(Config, Debug)]
pub struct LlamaAttentionConfig {
    /// Model width d.
    pub d_model: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Width of a head.
    pub d_head: usize,
    /// Bias on q, k, v.
    #[config(default = false)]
    pub qkv_bias: bool,
    /// Bias on o.
    #[config(default = false)]
    pub o_bias: bool,
    /// Standard deviation of random weights.
    #[config(default = 0.02)]
    pub init_std: f64,
    /// How RoPE pairs a head's dimensions (Llama: halves; GPT-J: interleaved).
    #[config(default = "Pairing::Halves")]
    pub pairing: Pairing,
}

/// Grouped-query causal self-attention with rotary positions (also GPT-J's, with one key/value
/// head per query head, interleaved pairs and `rotary_dim` < d_head).
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// d → n_head·d_head.
    pub q_proj: Linear,
    /// d → n_kv_head·d_head.
    pub k_proj: Linear,
    /// d → n_kv_head·d_head.
    pub v_proj: Linear,
    /// n_head·d_head → d.
    pub o_proj: Linear,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// How RoPE pairs a head's dimensions.
    #[module(skip)]
    pub pairing: Pairing,
}

impl LlamaAttentionConfig {
    /// Creates the module with random weights on `device`.
    pub fn init(&self, device: &Device) -> LlamaAttention {
        let lin = |i: usize, o: usize, bias: bool| {
            LinearConfig::new(i, o)
                .with_bias(bias)
                .with_initializer(normal(self.init_std))
                .init(device)
        };
        let (q, kv) = (self.n_head * self.d_head, self.n_kv_head * self.d_head);
        LlamaAttention {
            q_proj: lin(self.d_model, q, self.qkv_bias),
            k_proj: lin(self.d_model, kv, self.qkv_bias),
            v_proj: lin(self.d_model, kv, self.qkv_bias),
            o_proj: lin(q, self.d_model, self.o_bias),
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            pairing: self.pairing,
        }
    }
}

impl LlamaAttention {
    /// Width of a head.
    pub fn d_head(&self) -> usize {
        self.q_proj.weight.dims()[1] / self.n_head
    }

    /// Attention over `x` (`[batch, seq, d]`) at positions `past..past + seq` (RoPE angles
    /// `cos`/`sin`), attending also to `cache` when given (which is extended; it holds the
    /// key/value heads before they are shared out).
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let dh = self.d_head();
        let heads = |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, dh]).swap_dims(1, 2);
        let q = heads(linear_rows(&self.q_proj, x.clone()), self.n_head);
        let k = heads(linear_rows(&self.k_proj, x.clone()), self.n_kv_head);
        let mut v = heads(linear_rows(&self.v_proj, x), self.n_kv_head);
        let q = rope::apply(q, cos, sin, self.pairing);
        let mut k = rope::apply(k, cos, sin, self.pairing);

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
        let (k, v) = (self.share(k), self.share(v));
        let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt();
        let mask =
            Tensor::<2, Bool>::tril_mask([seq, total], past as i64, &scores.device()).reshape([1, 1, seq, total]);
        let scores = scores.mask_fill(mask.expand([batch, self.n_head, seq, total]), f32::MIN);
        let out = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, self.n_head * dh]);
        linear_rows(&self.o_proj, out)
    }

    /// `[b, n_kv_head, s, dh]` → `[b, n_head, s, dh]`: key/value head j serves query heads
    /// `j·g .. (j+1)·g` (transformers' `repeat_kv`).
    fn share(&self, t: Tensor<4>) -> Tensor<4> {
        let groups = self.n_head / self.n_kv_head;
        if groups == 1 {
            return t;
        }
        let [b, h, s, dh] = t.dims();
        t.unsqueeze_dim::<5>(2)
            .expand([b, h, groups, s, dh])
            .reshape([b, h * groups, s, dh])
    }
}
