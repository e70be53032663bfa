//! The preservation–memorization trade-off of one layer's system, for teaching (docs/MATH.md §7; eq. 1,
//! 4, 8): how far an update moves the outputs of the keys the layer has seen, and how far it is
//! from writing the requested values, as λ sweeps; and AlphaEdit's one point (§11), whose
//! preservation error is bounded by the null-space threshold whatever λ.
//!
//! With `C0 = K0K0ᵀ / N` (the second moment of the keys), the preservation error per key is
//! `‖ΔᵀK0‖_F / √N = √tr(Δᵀ C0 Δ)`, so it needs only `C0`, never `K0`. The memorization error is
//! `‖KᵀΔ − R‖_F` over the edited keys `K` with residuals `R = V_E − W0 K_E`.
//!
//! The closed forms give Δ = Q Y with Q = C⁻¹K `[n, E]` (docs/MATH.md §7), so both errors are
//! computed through the factors: `tr(Δᵀ C0 Δ) = Σ (QᵀC0Q) ∘ (YYᵀ)` and `KᵀΔ − R = (KᵀQ)Y − R`,
//! n²E work per λ instead of the n²d of forming C0Δ (at GPT-2 medium's n = 4096, d = 1024 and one
//! key, 17 GFLOP less per point: minutes in a browser tab). C0 is factored once for all λ and both
//! objectives.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::objective::{Objective, Preservation, solve_factors};
use crate::error::Result;
use crate::readback::read_scalar;

/// The two errors of one solution at one λ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TradeoffPoint {
    /// λ.
    pub lambda: f64,
    /// RMS change of the layer's output over the preserved keys, `√tr(Δᵀ C0 Δ)`.
    pub preservation: f64,
    /// `‖KᵀΔ − R‖_F`: how far the edited keys are from their new values.
    pub memorization: f64,
}

/// Preservation and memorization errors of `objective`'s solution for keys `k: [n, E]` and
/// residuals `r: [E, d]`, at each λ of `lambdas` (`c0`: `[n, n]`; `unit`: C0 factored at any λ,
/// whose factor each λ·C0 reuses, scaled).
pub async fn tradeoff(
    c0: &Tensor<2>,
    unit: &Preservation,
    objective: Objective,
    k: &Tensor<2>,
    r: &Tensor<2>,
    lambdas: &[f64],
) -> Result<Vec<TradeoffPoint>> {
    let mut out = Vec::with_capacity(lambdas.len());
    for &lambda in lambdas {
        let pres = unit.with_lambda(lambda)?;
        let (q, y) = solve_factors(&pres, objective, k.clone(), r.clone()).await?;
        out.push(factored_errors(c0, k, r, q, y, lambda).await?);
    }
    Ok(out)
}

/// [`errors`] of Δ = Q Y from its factors `q: [n, E]` and `y: [E, d]`.
async fn factored_errors(
    c0: &Tensor<2>,
    k: &Tensor<2>,
    r: &Tensor<2>,
    q: Tensor<2>,
    y: Tensor<2>,
    lambda: f64,
) -> Result<TradeoffPoint> {
    let qcq = q.clone().transpose().matmul(c0.clone().matmul(q.clone())); // [E, E]
    let yy = y.clone().matmul(y.clone().transpose()); // [E, E]
    let moved = read_scalar::<f64, 1, Float>((qcq * yy).sum()).await?;
    let miss = k.clone().transpose().matmul(q).matmul(y) - r.clone();
    let memorization = read_scalar::<f64, 1, Float>((miss.clone() * miss).sum()).await?.sqrt();
    if !(moved.is_finite() && memorization.is_finite()) {
        return Err(crate::error::EngineError::Numerical(format!(
            "the teaching view's errors at λ = {lambda} are not finite"
        )));
    }
    Ok(TradeoffPoint {
        lambda,
        preservation: moved.max(0.0).sqrt(),
        memorization,
    })
}

/// Preservation and memorization errors of one update `delta` (`[n, d]`), reported at `lambda`.
pub async fn errors(
    c0: &Tensor<2>,
    k: &Tensor<2>,
    r: &Tensor<2>,
    delta: Tensor<2>,
    lambda: f64,
) -> Result<TradeoffPoint> {
    let moved = read_scalar::<f64, 1, Float>((delta.clone() * c0.clone().matmul(delta.clone())).sum()).await?;
    let miss = k.clone().transpose().matmul(delta) - r.clone();
    let memorization = read_scalar::<f64, 1, Float>((miss.clone() * miss).sum()).await?.sqrt();
    Ok(TradeoffPoint {
        lambda,
        preservation: moved.max(0.0).sqrt(),
        memorization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::host::Mat;

    fn t(m: &Mat, device: &Device) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(m.data.clone(), [m.rows, m.cols]), device).cast(burn::tensor::DType::F64)
    }

    /// On a hand-sized system: EMMET writes the values exactly at every λ (λ cancels in its
    /// solution), MEMIT's memorization error grows and its preservation error shrinks with λ,
    /// and both errors match a direct computation of Δ from eq. 5.
    #[test]
    fn memit_trades_memorization_for_preservation_and_emmet_does_not() {
        let device = Device::flex();
        let c0 = Mat::new(3, 3, vec![2.0, 0.3, 0.1, 0.3, 1.0, 0.2, 0.1, 0.2, 1.5]);
        let k = Mat::new(3, 2, vec![1.0, 0.0, 0.5, 1.0, 0.0, 2.0]);
        let r = Mat::new(2, 2, vec![1.0, -1.0, 0.5, 2.0]);
        let lambdas = [0.01, 1.0, 100.0];
        let (tc0, tk, tr) = (t(&c0, &device), t(&k, &device), t(&r, &device));
        let unit = crate::readback::block_on(Preservation::new(tc0.clone(), 1.0)).unwrap();
        let emmet = crate::readback::block_on(tradeoff(
            &tc0,
            &unit,
            Objective::Emmet { alpha: 0.0 },
            &tk,
            &tr,
            &lambdas,
        ))
        .unwrap();
        let memit = crate::readback::block_on(tradeoff(&tc0, &unit, Objective::Memit, &tk, &tr, &lambdas)).unwrap();
        // The factored errors equal those of the formed Δ (`errors`, as AlphaEdit's point uses).
        for (objective, points) in [(Objective::Emmet { alpha: 0.0 }, &emmet), (Objective::Memit, &memit)] {
            for p in points.iter() {
                let pres = unit.with_lambda(p.lambda).unwrap();
                let delta = crate::readback::block_on(super::super::objective::solve_delta(
                    &pres,
                    objective,
                    tk.clone(),
                    tr.clone(),
                ))
                .unwrap();
                let formed = crate::readback::block_on(errors(&tc0, &tk, &tr, delta, p.lambda)).unwrap();
                assert!(
                    (formed.preservation - p.preservation).abs() < 1e-9,
                    "{formed:?} vs {p:?}"
                );
                assert!(
                    (formed.memorization - p.memorization).abs() < 1e-9,
                    "{formed:?} vs {p:?}"
                );
            }
        }
        for e in &emmet {
            assert!(e.memorization < 1e-9, "{e:?}");
            assert!((e.preservation - emmet[0].preservation).abs() < 1e-9, "{e:?}");
        }
        for w in memit.windows(2) {
            assert!(
                w[1].memorization > w[0].memorization && w[1].preservation < w[0].preservation,
                "{memit:?}"
            );
        }
        // Eq. 5 by hand at λ = 1: Δᵀ = (λC0 + KKᵀ)⁻¹ K R.
        let a = {
            let kk = k.matmul(&k.t());
            Mat::new(3, 3, c0.data.iter().zip(&kk.data).map(|(x, y)| x + y).collect())
        };
        let delta = crate::linalg::host::spd_solve(&a, &k.matmul(&r)).unwrap();
        let miss = k.t().matmul(&delta);
        let mem: f64 = miss
            .data
            .iter()
            .zip(&r.data)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        let pres = delta.t().matmul(&c0).matmul(&delta);
        let pres = (0..2).map(|i| pres.data[i * 2 + i]).sum::<f64>().sqrt();
        assert!(
            (memit[1].memorization - mem).abs() < 1e-9,
            "{} vs {mem}",
            memit[1].memorization
        );
        assert!(
            (memit[1].preservation - pres).abs() < 1e-9,
            "{} vs {pres}",
            memit[1].preservation
        );
    }
}
