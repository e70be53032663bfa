//! The GPT-2 MLP: `c_proj(gelu_new(c_fc(x)))`. `c_proj` is the matrix W that the PM family edits;
//! its input (after GELU) is the *key* k and its output the *value* (docs/MATH.md §1).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::linear::linear_rows;

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
        gelu_new(linear_rows(&self.c_fc, x))
    }

    /// The values: `c_proj(k)`, shape `[.., d]`.
    pub fn project<const D: usize>(&self, keys: Tensor<D>) -> Tensor<D> {
        linear_rows(&self.c_proj, keys)
    }
}

/// GPT-2's `gelu_new`, `x·½(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, computed as `x / (1 + e^(−2u))`
/// with `u = √(2/π)·x·(1 + 0.044715·x²)` (since `½(1 + tanh u) = σ(2u)`): products and one `exp`
/// instead of `powf` and `tanh`, which the CPU backend evaluates one element at a time and which
/// took a fifth of a gpt2-small forward pass. The exponent is capped at 80 (x ≲ −9): beyond it
/// the result is `x·e^(−80)`, 0 to f32 precision as in the tanh form, and the gradient stays
/// finite (uncapped, `e^(−2u)` overflows and its derivative is ∞/∞ = NaN).
///
/// On the CPU backend (outside autodiff) the same formula runs as one fused, vectorised pass on
/// every core (`pmedit_simd::gelu_new`).
pub fn gelu_new<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    crate::cpu::gelu_new(x, |x| {
        let cubic = x.clone() * x.clone() * 0.044715 + 1.0;
        let minus_2u = x.clone() * cubic * (-2.0 * SQRT_2_OVER_PI);
        x / (minus_2u.clamp_max(80.0).exp() + 1.0)
    })
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::gelu_approximate;

    /// The rewritten form equals burn's tanh form, including far into both tails: on the CPU
    /// backend's fused path and with tensor ops (the CPU backend under autodiff runs those).
    #[test]
    fn gelu_new_matches_the_tanh_form() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            gelu_new_matches_on(&device);
        }
    }

    fn gelu_new_matches_on(device: &Device) {
        let values: Vec<f32> = (-400..=400)
            .map(|i| i as f32 * 0.05)
            .chain([-1e4, -90.0, 90.0, 1e4])
            .collect();
        let x = Tensor::<1>::from_floats(values.as_slice(), device);
        let ours = gelu_new(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let reference = gelu_approximate(x).into_data().try_to_vec::<f32>().unwrap();
        for ((a, b), v) in ours.iter().zip(&reference).zip(&values) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{device:?}: gelu_new({v}) = {a}, tanh form {b}"
            );
        }
    }

    /// Its gradient is finite everywhere, far tails included (training and the δ optimisation
    /// backpropagate through it), and matches the tanh form's.
    #[test]
    fn gelu_new_gradient_is_finite_and_matches() {
        let device = Device::flex().autodiff();
        let values = [-1e4f32, -300.0, -90.0, -9.5, -3.0, -0.5, 0.0, 0.7, 4.0, 90.0, 1e4];
        let grad = |f: fn(Tensor<1>) -> Tensor<1>| {
            let x = Tensor::<1>::from_floats(values.as_slice(), &device).require_grad();
            let grads = f(x.clone()).sum().backward();
            x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap()
        };
        let (ours, reference) = (grad(gelu_new), grad(gelu_approximate));
        for ((a, b), v) in ours.iter().zip(&reference).zip(&values) {
            assert!(a.is_finite(), "d gelu_new/dx at {v} = {a}");
            assert!((a - b).abs() <= 1e-5, "d gelu_new/dx at {v}: {a}, tanh form {b}");
        }
    }
}
