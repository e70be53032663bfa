//! The engine's large matrix products: the model's linear layers (`x·W + b`), the LM head and
//! the benchmark's peak product.
//!
//! On the CPU backend (burn `flex`, f32, outside autodiff) they run through [`pmedit_sgemm`]
//! straight on the tensors' host buffers — the operands are borrowed, not copied, and the bias
//! is written into the output before the product accumulates onto it. Everywhere else (wgpu,
//! WebGPU, autodiff graphs, other dtypes) they are burn's own `matmul`.

use burn::prelude::*;

/// `a · b` for `a: [m, k]`, `b: [k, n]`.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    #[cfg(not(target_family = "wasm"))]
    if let Some(out) = host::product(&a, &b, None) {
        return out;
    }
    a.matmul(b)
}

/// `x · w + bias` (bias broadcast over the rows) for `x: [m, k]`, `w: [k, n]`, `bias: [n]`.
pub fn affine(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    #[cfg(not(target_family = "wasm"))]
    if let Some(out) = host::product(&x, &w, bias.as_ref()) {
        return out;
    }
    let y = x.matmul(w);
    match bias {
        Some(b) => y + b.unsqueeze_dim(0),
        None => y,
    }
}

/// Whether `t` is a plain f32 tensor on the CPU backend outside autodiff: what the host paths
/// take (these products, and the model's element-wise maps in `model::host`).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn on_cpu_f32<const D: usize>(t: &Tensor<D>) -> bool {
    let device = t.device();
    device == Device::flex() && !device.is_autodiff() && t.dtype() == burn::tensor::DType::F32
}

/// The flex primitive behind `t`, when [`on_cpu_f32`] holds (a cheap handle: the buffer is
/// shared, not copied).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn flex<const D: usize>(t: &Tensor<D>) -> Option<burn_flex::FlexTensor> {
    if !on_cpu_f32(t) {
        return None;
    }
    t.clone().try_into_primitive::<burn_flex::Flex>().ok()
}

/// A CPU-backend tensor of shape `dims` owning `values` (row-major; not copied).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn from_host<const D: usize>(values: Vec<f32>, dims: [usize; D]) -> Tensor<D> {
    use burn::tensor::{Bytes, DType, Shape};
    debug_assert_eq!(values.len(), dims.iter().product::<usize>());
    let layout = burn_flex::Layout::contiguous(Shape::from(dims.to_vec()));
    Tensor::from_primitive::<burn_flex::Flex>(burn_flex::FlexTensor::new(
        Bytes::from_elems(values),
        layout,
        DType::F32,
    ))
}

#[cfg(not(target_family = "wasm"))]
mod host {
    use burn::prelude::*;
    use burn_flex::FlexTensor;
    use pmedit_sgemm::{View, ViewMut, sgemm};
    use rayon::prelude::*;

    use super::flex;

    /// Outputs of at least this many values get their bias rows written in parallel.
    const PARALLEL_FILL: usize = 1 << 16;

    fn view(t: &FlexTensor) -> View {
        let layout = t.layout();
        let strides = layout.strides();
        let base = t.storage::<f32>().as_ptr();
        View {
            // SAFETY: the layout's start offset is inside the storage.
            ptr: unsafe { base.add(layout.start_offset()) },
            rs: strides[0],
            cs: strides[1],
        }
    }

    /// `a · b (+ bias)` on host memory, or `None` when the operands are not on the CPU backend.
    pub(super) fn product(a: &Tensor<2>, b: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
        let (fa, fb) = (flex(a)?, flex(b)?);
        let fbias = match bias {
            Some(t) => Some(flex(t)?),
            None => None,
        };
        let ([m, k], [k2, n]) = (a.dims(), b.dims());
        assert_eq!(k, k2, "matmul: inner dimensions differ ({m}×{k} · {k2}×{n})");
        // The output is not zeroed first (`FlexTensor::empty` would memset it, 100 MB for the LM
        // head's logits): it starts as the bias rows, or — with β = 0 — is only written.
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let beta = match &fbias {
            Some(fbias) => {
                let layout = fbias.layout();
                let (start, step) = (layout.start_offset() as isize, layout.strides()[0]);
                let bias = fbias.storage::<f32>();
                let row: Vec<f32> = (0..n as isize).map(|j| bias[(start + j * step) as usize]).collect();
                // Row by row (a `memcpy` each): element by element this loop took 4 % of a
                // gpt2-small forward pass (the engine is built at opt-level 1).
                let fill = |dst: &mut [std::mem::MaybeUninit<f32>]| {
                    for d in dst.chunks_exact_mut(n.max(1)) {
                        d.write_copy_of_slice(&row);
                    }
                };
                let spare = &mut out.spare_capacity_mut()[..m * n];
                if m * n >= PARALLEL_FILL {
                    spare.par_chunks_mut(n.max(1) * 64).for_each(fill);
                } else {
                    fill(spare);
                }
                1.0
            }
            None => 0.0,
        };
        let c = ViewMut {
            ptr: out.as_mut_ptr(),
            rs: n as isize,
            cs: 1,
        };
        // SAFETY: the views address the operands' live buffers (held by `fa`, `fb`) with their
        // own layouts; `out` holds room for `m × n` values, which the product writes (β = 0) or
        // reads after the bias fill above has written them (β = 1).
        unsafe { sgemm((m, n, k), 1.0, view(&fa), view(&fb), beta, c) };
        // SAFETY: every one of the `m × n` values is written now.
        unsafe { out.set_len(m * n) };
        Some(super::from_host(out, [m, n]))
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
