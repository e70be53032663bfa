//! One query row of causal self-attention, every head.

use crate::{dispatch, dot, exp, madd, sum};

dispatch! {
    /// Attention of one query row `q` over the key rows `keys` and value rows `values` (as many
    /// as the row may see), every head at once: for head `h` (columns `h·dh..(h+1)·dh` of each
    /// row), `out_h = Σⱼ softmax_j(scale·q_h·k_{j,h})·v_{j,h}`. `scores` is scratch space of at
    /// least `keys.len()` values.
    pub fn attend_row => fn attend_row_with<const FMA: bool>(
        q: &[f32],
        keys: &[&[f32]],
        values: &[&[f32]],
        dh: usize,
        scale: f32,
        out: &mut [f32],
        scores: &mut [f32],
    ) {
        let scores = &mut scores[..keys.len()];
        for (h, out_h) in out.chunks_exact_mut(dh).enumerate() {
            let cols = h * dh..(h + 1) * dh;
            let q_h = &q[cols.clone()];
            for (s, k) in scores.iter_mut().zip(keys) {
                *s = scale * dot::<FMA>(q_h, &k[cols.clone()]);
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            for s in scores.iter_mut() {
                *s = exp::<FMA>(*s - max);
            }
            let norm = 1.0 / sum(scores);
            out_h.fill(0.0);
            for (&s, v) in scores.iter().zip(values) {
                let p = s * norm;
                for (o, &x) in out_h.iter_mut().zip(&v[cols.clone()]) {
                    *o = madd::<FMA>(p, x, *o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One query row over five keys, two heads of 12 columns (a vector and a tail), against
    /// softmax written out in f64; both instantiations.
    #[test]
    fn attend_row_matches_f64_softmax() {
        let (dh, heads, n_keys) = (12, 2, 5);
        let d = dh * heads;
        let val = |i: usize| ((i * 7919 % 97) as f32 / 97.0 - 0.5) * 3.0;
        let q: Vec<f32> = (0..d).map(val).collect();
        let k: Vec<Vec<f32>> = (0..n_keys)
            .map(|j| (0..d).map(|c| val(1000 + 31 * j + c)).collect())
            .collect();
        let v: Vec<Vec<f32>> = (0..n_keys)
            .map(|j| (0..d).map(|c| val(5000 + 17 * j + c)).collect())
            .collect();
        let keys: Vec<&[f32]> = k.iter().map(|r| &r[..]).collect();
        let values: Vec<&[f32]> = v.iter().map(|r| &r[..]).collect();
        let scale = 0.3f32;
        let mut want = vec![0.0f64; d];
        for h in 0..heads {
            let cols = h * dh..(h + 1) * dh;
            let s: Vec<f64> = k
                .iter()
                .map(|kj| scale as f64 * cols.clone().map(|c| q[c] as f64 * kj[c] as f64).sum::<f64>())
                .collect();
            let max = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
            for c in cols {
                want[c] = s.iter().zip(&v).map(|(x, vj)| (x - max).exp() / z * vj[c] as f64).sum();
            }
        }
        let mut scores = vec![f32::NAN; n_keys + 3];
        let mut generic = vec![f32::NAN; d];
        attend_row_with::<false>(&q, &keys, &values, dh, scale, &mut generic, &mut scores);
        let mut dispatched = vec![f32::NAN; d];
        attend_row(&q, &keys, &values, dh, scale, &mut dispatched, &mut scores);
        for got in [generic, dispatched] {
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= 1e-5, "{g} vs {w}");
            }
        }
        // A row that sees only itself returns its own value row.
        let mut single = vec![0.0; d];
        attend_row(&q, &keys[..1], &values[..1], dh, scale, &mut single, &mut scores);
        assert_eq!(single, v[0]);
    }
}
