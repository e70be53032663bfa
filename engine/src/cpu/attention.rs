//! GPT-2's causal self-attention as one pass over host memory.
//!
//! With tensor ops (`crate::model::attention`) the fused `q | k | v` projection is split into heads
//! (reshapes that `flex` copies), multiplied per head, masked, soft-maxed and transposed back:
//! a dozen passes, several on one core. Here each query row reads its head slices straight from
//! the projection's output and writes its output row in place, rows split over every core.

use burn::prelude::*;
use rayon::prelude::*;

use super::{flex, from_host};
use pmedit_simd::attend_row;

/// Causal attention of the fused projection `qkv` (`[batch, seq, 3d]`, columns `q | k | v`,
/// each of `n_head` heads of `d / n_head` columns), every position attending to itself and the
/// positions before it in its sequence: the `[batch, seq, d]` input of `c_proj`. `None` when
/// `qkv` is not an f32 tensor on the CPU backend outside autodiff, or not contiguous.
pub(crate) fn causal(qkv: &Tensor<3>, n_head: usize) -> Option<Tensor<3>> {
    let primitive = flex(qkv)?;
    let (start, end) = primitive.layout().contiguous_offsets()?;
    let [batch, seq, d3] = qkv.dims();
    let d = d3 / 3;
    let dh = d / n_head;
    let scale = 1.0 / (dh as f32).sqrt();
    let storage = primitive.storage::<f32>();
    let data = &storage[start..end];
    let mut out = vec![0.0f32; batch * seq * d];
    out.par_chunks_mut(d.max(1)).enumerate().for_each_init(
        || (vec![0.0f32; seq], Vec::with_capacity(seq), Vec::with_capacity(seq)),
        |(scores, keys, values), (row, out_row)| {
            let (b, i) = (row / seq, row % seq);
            let rows = &data[b * seq * d3..(b + 1) * seq * d3];
            keys.clear();
            values.clear();
            for j in 0..=i {
                let r = &rows[j * d3..(j + 1) * d3];
                keys.push(&r[d..2 * d]);
                values.push(&r[2 * d..]);
            }
            attend_row(&rows[i * d3..i * d3 + d], keys, values, dh, scale, out_row, scores);
        },
    );
    Some(from_host(out, [batch, seq, d]))
}
