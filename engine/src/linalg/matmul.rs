//! The engine's large matrix products: the model's linear layers (`x·W + b`), the LM head and
//! the benchmark's peak product.
//!
//! On the CPU backend (burn `flex`; f32 activations, f32/f16/bf16 weights, also inside the value
//! optimisation's autodiff graph) they run through [`pmedit_sgemm`] straight on the tensors' host
//! buffers — the operands are borrowed, not copied, and the bias is written into the output
//! before the product accumulates onto it. Everywhere else (wgpu, WebGPU, other dtypes) they are
//! burn's own `matmul`.
//!
//! A weight stored in half precision (docs/ARCHITECTURE.md, Precision) may meet f32
//! activations: burn's product then runs in the weight's dtype on the activations cast to it, and
//! the result comes back in the activations' dtype before the bias is added.

use burn::prelude::*;

/// `a · b` for `a: [m, k]`, `b: [k, n]` (the result in `a`'s dtype).
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    affine(a, b, None)
}

/// `x · w + bias` (bias broadcast over the rows) for `x: [m, k]`, `w: [k, n]`, `bias: [n]`, in
/// `x`'s dtype.
pub fn affine(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    if let Some(out) = crate::cpu::product(&x, &w, bias.as_ref()) {
        return out;
    }
    let act = x.dtype();
    let y = if w.dtype() == act {
        x.matmul(w)
    } else {
        let weights = w.dtype();
        x.cast(weights).matmul(w).cast(act)
    };
    match bias {
        Some(b) if b.dtype() == act => y + b.unsqueeze_dim(0),
        Some(b) => y + b.cast(act).unsqueeze_dim(0),
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn close(got: Tensor<2>, want: Tensor<2>) {
        let (g, w): (Vec<f32>, Vec<f32>) = (
            got.into_data().try_to_vec().unwrap(),
            want.into_data().try_to_vec().unwrap(),
        );
        assert_eq!(g.len(), w.len());
        for (g, w) in g.iter().zip(&w) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    /// On the CPU backend the host product equals burn's, for plain, transposed and sliced
    /// operands, with and without a bias; on an autodiff device the gradient still flows.
    #[test]
    fn host_products_equal_burns() {
        let device = Device::flex();
        let x = Tensor::<2>::random([37, 50], Distribution::Default, &device);
        let w = Tensor::<2>::random([50, 70], Distribution::Default, &device);
        let bias = Tensor::<1>::random([70], Distribution::Default, &device);
        close(matmul(x.clone(), w.clone()), x.clone().matmul(w.clone()));
        close(
            affine(x.clone(), w.clone(), Some(bias.clone())),
            x.clone().matmul(w.clone()) + bias.clone().unsqueeze_dim(0),
        );
        let wt = Tensor::<2>::random([70, 50], Distribution::Default, &device);
        close(
            matmul(x.clone(), wt.clone().transpose()),
            x.clone().matmul(wt.clone().transpose()),
        );
        // Large enough for the parallel bias fill (rows of 300, in chunks of 64 rows).
        let (xl, wl) = (
            Tensor::<2>::random([301, 20], Distribution::Default, &device),
            Tensor::<2>::random([20, 300], Distribution::Default, &device),
        );
        let bl = Tensor::<1>::random([300], Distribution::Default, &device);
        close(
            affine(xl.clone(), wl.clone(), Some(bl.clone())),
            xl.matmul(wl) + bl.unsqueeze_dim(0),
        );
        let xs = x.clone().narrow(1, 3, 40);
        let ws = w.clone().narrow(0, 5, 40).narrow(1, 1, 60);
        close(matmul(xs.clone(), ws.clone()), xs.matmul(ws));

        let ad = device.clone().autodiff();
        let xa = Tensor::<2>::from_data(x.to_data(), &ad).require_grad();
        let wa = Tensor::<2>::from_data(w.to_data(), &ad);
        let grads = affine(xa.clone(), wa, None).sum().backward();
        assert!(xa.grad(&grads).is_some());
    }
}
