//! The matrix product on host memory (`a · b + bias`) through [`pmedit_sgemm`]: the operands are
//! borrowed straight from `flex`'s buffers, and the bias is written into the output before the
//! product accumulates onto it.
//!
//! `a` (the activations) and the bias are f32; `b` (a weight matrix) is f32 or half precision —
//! f16 and bf16 weights (`--dtype f16|bf16`) are widened to f32 as the kernel packs them
//! ([`pmedit_sgemm::sgemm_half`]), so they neither cost more than f32 weights nor round the
//! activations to their dtype. In the value optimisation `a` is tracked by autodiff while the weights are
//! constants: there the product is an autodiff operation of its own ([`Product`]) whose backward
//! pass (`∂a = ∂out · bᵀ`) runs on the same kernel.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::DType;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn_flex::{Flex, FlexTensor};
use pmedit_sgemm::{Strided, View, ViewMut, sgemm, sgemm_half};
use rayon::prelude::*;

/// Outputs of at least this many values get their bias rows written in parallel.
const PARALLEL_FILL: usize = 1 << 16;

/// The view of a 2-D f32 host tensor, transposed when asked.
fn view(t: &FlexTensor, transposed: bool) -> View {
    strided(t.storage::<f32>().as_ptr(), t, transposed)
}

/// The view of a 2-D f16 host tensor, transposed when asked.
fn f16_view(t: &FlexTensor, transposed: bool) -> Strided<half::f16> {
    strided(t.storage::<half::f16>().as_ptr(), t, transposed)
}

/// The view of a 2-D bf16 host tensor, transposed when asked.
fn bf16_view(t: &FlexTensor, transposed: bool) -> Strided<half::bf16> {
    strided(t.storage::<half::bf16>().as_ptr(), t, transposed)
}

/// The strided view of `t`'s layout over its storage at `base`.
fn strided<T>(base: *const T, t: &FlexTensor, transposed: bool) -> Strided<T> {
    let layout = t.layout();
    let strides = layout.strides();
    let (rs, cs) = if transposed {
        (strides[1], strides[0])
    } else {
        (strides[0], strides[1])
    };
    Strided {
        // SAFETY: the layout's start offset is inside the storage.
        ptr: unsafe { base.add(layout.start_offset()) },
        rs,
        cs,
    }
}

/// The dims of a 2-D host tensor, transposed when asked.
fn dims2(t: &FlexTensor, transposed: bool) -> [usize; 2] {
    let shape = t.layout().shape();
    if transposed {
        [shape[1], shape[0]]
    } else {
        [shape[0], shape[1]]
    }
}

/// Whether `b` is a dtype the kernel takes as its `B` operand.
fn takes_b(b: &FlexTensor) -> bool {
    match b.dtype() {
        DType::F32 => true,
        DType::F16 | DType::BF16 => pmedit_sgemm::half_packs(),
        _ => false,
    }
}

/// `a · b (+ bias)` (or `a · bᵀ`) on host tensors: `a` and `bias` f32, `b` f32, f16 or bf16
/// ([`takes_b`]).
fn host_product(a: &FlexTensor, b: &FlexTensor, b_transposed: bool, bias: Option<&FlexTensor>) -> FlexTensor {
    let ([m, k], [k2, n]) = (dims2(a, false), dims2(b, b_transposed));
    assert_eq!(k, k2, "matmul: inner dimensions differ ({m}×{k} · {k2}×{n})");
    // The output is not zeroed first (`FlexTensor::empty` would memset it, 100 MB for the LM
    // head's logits): it starts as the bias rows, or — with β = 0 — is only written.
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let beta = match bias {
        Some(bias) => {
            let layout = bias.layout();
            let (start, step) = (layout.start_offset() as isize, layout.strides()[0]);
            let values = bias.storage::<f32>();
            let row: Vec<f32> = (0..n as isize).map(|j| values[(start + j * step) as usize]).collect();
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
    // SAFETY: the views address the operands' live buffers (borrowed from `a`, `b`) with their
    // own layouts; `out` holds room for `m × n` values, which the product writes (β = 0) or
    // reads after the bias fill above has written them (β = 1).
    unsafe {
        match b.dtype() {
            DType::F16 => sgemm_half((m, n, k), 1.0, view(a, false), f16_view(b, b_transposed), beta, c),
            DType::BF16 => sgemm_half((m, n, k), 1.0, view(a, false), bf16_view(b, b_transposed), beta, c),
            _ => sgemm((m, n, k), 1.0, view(a, false), view(b, b_transposed), beta, c),
        }
    };
    // SAFETY: every one of the `m × n` values is written now.
    unsafe { out.set_len(m * n) };
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(out),
        burn_flex::Layout::contiguous(burn::tensor::Shape::from(vec![m, n])),
        DType::F32,
    )
}

/// The host primitive of a constant operand: a plain CPU-backend tensor, or an untracked one on
/// an autodiff device (a weight lifted into the graph).
fn constant<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    if t.device().is_autodiff() {
        let ad = t.try_into_primitive::<Autodiff<Flex>>().ok()?;
        (!ad.is_tracked()).then(|| ad.into_primitive())
    } else {
        t.try_into_primitive::<Flex>().ok()
    }
}

/// `a · b (+ bias)` on host memory, or `None` when the operands are not ones the kernel takes:
/// not on the CPU backend, `a` or the bias not f32, `b` neither f32 nor half precision, or a
/// weight or bias tracked by autodiff.
pub(crate) fn product(a: &Tensor<2>, b: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
    if a.dtype() != DType::F32 || bias.is_some_and(|t| t.dtype() != DType::F32) {
        return None;
    }
    let fb = constant(b.clone())?;
    if !takes_b(&fb) {
        return None;
    }
    let fbias = match bias {
        Some(t) => Some(constant(t.clone())?),
        None => None,
    };
    if !a.device().is_autodiff() {
        let fa = a.clone().try_into_primitive::<Flex>().ok()?;
        let out = host_product(&fa, &fb, false, fbias.as_ref());
        return Some(Tensor::from_primitive::<Flex>(out));
    }
    let ad = a.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
    let guard = ad.node();
    let out = host_product(ad.primitive(), &fb, false, fbias.as_ref());
    let out = match Product
        .prepare::<burn_autodiff::checkpoint::strategy::NoCheckpointing>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(fb, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
}

/// `a · b (+ bias)` with `a` tracked and `b`, the bias constant: the backward pass gives `a` the
/// gradient `∂out · bᵀ` through the same kernel (`b` is its state; the bias has no gradient to
/// receive).
#[derive(Debug)]
struct Product;

impl Backward<Flex, 1> for Product {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let b = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| host_product(&grad, &b, true, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, FloatDType};

    fn values(t: Tensor<2>) -> Vec<f64> {
        t.cast(FloatDType::F64).into_data().iter::<f64>().collect()
    }

    /// `a · b + bias` and its gradient with respect to `a`, for f32, f16 and bf16 `b`, against an
    /// f64 reference computed here from the same values (the half-precision weights' own values,
    /// widened).
    #[test]
    fn products_and_gradients_match_an_f64_reference() {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let (m, k, n) = (37, 70, 45);
        for half in [None, Some(FloatDType::F16), Some(FloatDType::BF16)] {
            let a = Tensor::<2>::random([m, k], Distribution::Default, &device);
            let mut b = Tensor::<2>::random([k, n], Distribution::Default, &device);
            if let Some(dtype) = half {
                b = b.cast(dtype);
            }
            let bias = Tensor::<1>::random([n], Distribution::Default, &device);
            let (av, bv, biasv) = (
                values(a.clone()),
                values(b.clone()),
                bias.clone()
                    .cast(FloatDType::F64)
                    .into_data()
                    .iter::<f64>()
                    .collect::<Vec<_>>(),
            );
            let want: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    biasv[j] + (0..k).map(|p| av[i * k + p] * bv[p * n + j]).sum::<f64>()
                })
                .collect();
            let close = |got: &[f64], want: &[f64], what: &str| {
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{what} (b in {half:?}): {g} vs {w}"
                    );
                }
            };
            let plain = product(&a, &b, Some(&bias)).expect("the kernel takes these operands");
            close(&values(plain), &want, "plain product");

            // On an autodiff device: the same values, and ∂(Σ out ⊙ g)/∂a = g · bᵀ.
            let at = Tensor::<2>::from_data(a.to_data(), &ad).require_grad();
            let out = product(&at, &b, Some(&bias)).expect("the kernel takes a tracked a");
            close(&values(out.clone().without_autodiff()), &want, "tracked product");
            let g = Tensor::<2>::random([m, n], Distribution::Default, &device);
            let gv = values(g.clone());
            let grads = (out * Tensor::<2>::from_data(g.to_data(), &ad)).sum().backward();
            let got = values(at.grad(&grads).expect("a is tracked"));
            let want_grad: Vec<f64> = (0..m * k)
                .map(|ip| {
                    let (i, p) = (ip / k, ip % k);
                    (0..n).map(|j| gv[i * n + j] * bv[p * n + j]).sum::<f64>()
                })
                .collect();
            close(&got, &want_grad, "gradient");
        }
        // Declines what it does not take: an f64 `a`, a tracked weight.
        let a64 = Tensor::<2>::random([3, 4], Distribution::Default, &device).cast(FloatDType::F64);
        let b = Tensor::<2>::random([4, 5], Distribution::Default, &device);
        assert!(product(&a64, &b.clone().cast(FloatDType::F64), None).is_none());
        let at = Tensor::<2>::random([3, 4], Distribution::Default, &ad);
        let bt = Tensor::<2>::from_data(b.to_data(), &ad).require_grad();
        assert!(product(&at, &bt, None).is_none());
    }
}
