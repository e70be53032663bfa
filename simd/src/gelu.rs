//! GPT-2's `gelu_new` over a slice.

use crate::{dispatch, exp, madd};

dispatch! {
    /// GPT-2's `gelu_new`, `x·½(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, of every value in place,
    /// computed as `x / (1 + e^(−2u))` with `u = √(2/π)·x·(1 + 0.044715·x²)` and the exponent
    /// capped at 80 (the engine's `model::mlp::gelu_new` explains the form).
    pub fn gelu_new => fn gelu_new_with<const FMA: bool>(values: &mut [f32]) {
        const MINUS_2_SQRT_2_OVER_PI: f32 = (-2.0 * 0.797_884_560_802_865_4_f64) as f32;
        for v in values {
            let x = *v;
            let minus_2u = x * madd::<FMA>(x * x, 0.044715, 1.0) * MINUS_2_SQRT_2_OVER_PI;
            *v = x / (exp::<FMA>(minus_2u.min(80.0)) + 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gelu_new` over a slice (both instantiations; lengths that leave vector tails) equals the
    /// tanh form in f64, far into both tails.
    #[test]
    fn gelu_new_matches_f64_tanh_form() {
        let values: Vec<f32> = (-2000..=2000)
            .map(|i| i as f32 * 0.0051)
            .chain([-1e4, -90.0, 90.0, 1e4, 0.0])
            .collect();
        let reference = |x: f32| {
            let x = x as f64;
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        };
        for len in [values.len(), 13, 7] {
            let mut generic = values[..len].to_vec();
            gelu_new_with::<false>(&mut generic);
            let mut dispatched = values[..len].to_vec();
            gelu_new(&mut dispatched);
            for ((&x, a), b) in values.iter().zip(&generic).zip(&dispatched) {
                let want = reference(x);
                for got in [*a, *b] {
                    assert!(
                        (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "gelu_new({x}) = {got}, f64 tanh form {want}"
                    );
                }
            }
        }
    }
}
