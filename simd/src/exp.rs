//! eˣ without libm, in a form loops vectorise.

use crate::madd;

/// eˣ within 2 ulp for −87.3 ≤ x ≤ 88; arguments outside are clamped to that range (the result
/// never overflows, and is ≈ 1.2·10⁻³⁸ rather than 0 far below), NaN stays NaN. `FMA`: whether
/// multiply-adds are fused (see the crate docs).
///
/// x = n·ln 2 + r with n = round(x·log₂e) and |r| ≤ ln 2 / 2; eʳ = 1 + r + r²·P(r) with Cephes'
/// degree-5 minimax P; eˣ = 2ⁿ·eʳ with 2ⁿ assembled in the exponent bits.
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer (ties to even), which the low mantissa bits then hold.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that n·LN2_HI is exact for |n| < 2⁹.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let x = x.clamp(-87.33, 88.0);
    let t = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = madd::<FMA>(n, -LN2_LO, madd::<FMA>(n, -LN2_HI, x));
    let p = P[1..].iter().fold(P[0], |p, &c| madd::<FMA>(p, r, c));
    let e_r = madd::<FMA>(p, r * r, r + 1.0);
    // n is t's mantissa minus ROUND's (both lie in [2²³, 2²⁴), where one mantissa unit is 1).
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    e_r * f32::from_bits(biased.wrapping_shl(23))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp` with and without fused multiply-adds stays within 2 ulp (relative 2.4·10⁻⁷) of f64's
    /// over the whole range it serves, and clamps outside it.
    #[test]
    fn exp_is_accurate_over_its_range() {
        let check = |f: fn(f32) -> f32| {
            let mut worst = 0.0f64;
            for i in -87_300..=88_000 {
                for frac in [0.0f32, 0.1234, 0.5, 0.777] {
                    let x = ((i as f32 + frac) * 1e-3).min(88.0);
                    let want = (x as f64).exp();
                    worst = worst.max(((f(x) as f64 - want) / want).abs());
                }
            }
            assert!(worst <= 2.4e-7, "worst relative error {worst}");
            assert_eq!(f(1000.0), f(88.0));
            assert!(f(-1000.0) > 0.0 && f(-1000.0) < 1.3e-38);
            assert!(f(f32::NAN).is_nan());
        };
        check(exp::<false>);
        // Outside a `target_feature` function `mul_add` is libm's `fmaf`: slow, but as exact.
        check(exp::<true>);
    }
}
