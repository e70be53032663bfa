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
    /// given; the new keys/values are appended to the cache. Without a cache, on the CPU backend
    /// (outside autodiff) the attention runs as one fused pass on host memory
    /// (`crate::cpu`).
    pub fn forward(&self, x: Tensor<3>, cache: Option<&mut Option<LayerCache>>) -> Tensor<3> {
        let [batch, seq, d] = x.dims();
        let dh = d / self.n_head;
        let qkv = linear_rows(&self.c_attn, x);
        if cache.is_none()
            && let Some(out) = crate::cpu::causal_attention(&qkv, self.n_head)
        {
            return linear_rows(&self.c_proj, out);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The fused host attention (no cache, CPU backend) equals the tensor-op attention (what a
    /// cache, autodiff or another backend runs), for one and several prompts.
    #[test]
    fn host_attention_equals_tensor_ops() {
        let device = Device::flex();
        let attn = AttentionConfig::new(48, 4).with_init_std(0.3).init(&device);
        for (batch, seq) in [(1, 1), (1, 9), (3, 17)] {
            let x = Tensor::<3>::random([batch, seq, 48], Distribution::Normal(0.0, 1.0), &device);
            let fused: Vec<f32> = attn.forward(x.clone(), None).into_data().iter().collect();
            let mut slot = None;
            let ops: Vec<f32> = attn.forward(x, Some(&mut slot)).into_data().iter().collect();
            assert!(slot.is_some(), "the tensor-op path filled the cache");
            assert_eq!(fused.len(), ops.len());
            for (f, o) in fused.iter().zip(&ops) {
                assert!(
                    (f - o).abs() <= 1e-5 * (1.0 + o.abs()),
                    "{batch}×{seq}: fused {f}, ops {o}"
                );
            }
        }
    }
}
