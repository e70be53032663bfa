//! The f32 matrix product on host memory (`a · b + bias`) through [`pmedit_sgemm`]: the
//! operands are borrowed straight from `flex`'s buffers, and the bias is written into the output
//! before the product accumulates onto it.

use burn::prelude::*;
use burn_flex::FlexTensor;
use pmedit_sgemm::{View, ViewMut, sgemm};
use rayon::prelude::*;

use super::{flex, from_host};

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
pub(crate) fn product(a: &Tensor<2>, b: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
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
    Some(from_host(out, [m, n]))
}
