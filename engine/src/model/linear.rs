//! Position-wise linear layers run as one matrix product over every position.

use burn::nn::Linear;
use burn::prelude::*;

/// `layer(x)` for `x: [.., d_in]`, with every leading dimension folded into the rows of one
/// `[rows, d_in] · [d_in, d_out]` product.
///
/// burn keeps a `[batch, seq, d]` input batched when `seq` already fills its row tiles, and the
/// CPU backend then multiplies each prompt separately, packing the weight matrix once per prompt
/// (16 times for the benchmark's 16 prompts × 32 tokens). Folded, the weight is packed once and
/// the product is large enough to use every core. The reshapes are views: inputs here are
/// contiguous. The product is [`crate::linalg::affine`] (the host kernel on the CPU backend).
///
/// Weights stored in half precision meet f32 activations here (see [`super::precision`]); the
/// product ([`crate::linalg::affine`]) gives its result in the activations' dtype.
pub fn linear_rows<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let x = x.reshape([rows, d_in]);
    let y = crate::linalg::affine(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}
#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;

    /// Folding the leading dimensions into rows changes nothing: with and without bias, for one
    /// row (generation) and many, `linear_rows` equals burn's `Linear::forward`.
    #[test]
    fn linear_rows_equals_linear_forward() {
        let device = Device::flex();
        for (d_out, bias) in [(300, true), (257, false)] {
            let layer = LinearConfig::new(40, d_out).with_bias(bias).init(&device);
            for (batch, rows) in [(1, 1), (2, 3), (3, 33)] {
                let x = Tensor::<3>::random([batch, rows, 40], burn::tensor::Distribution::Default, &device);
                let got: Vec<f32> = linear_rows(&layer, x.clone()).into_data().iter().collect();
                let want: Vec<f32> = layer.forward(x).into_data().iter().collect();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{d_out} {rows}: {g} vs {w}");
                }
            }
        }
    }
}
