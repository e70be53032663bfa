//! Vectorised f32 kernels of pmedit's CPU backend: [`exp`], GPT-2's [`gelu_new`] over a slice,
//! and one query row of causal attention ([`attend_row`]).
//!
//! pmedit is built for baseline x86-64, whose vectors hold four f32 and have no fused
//! multiply-add. Each kernel is therefore written once as plain Rust (`#[inline(always)]`,
//! generic over whether multiply-adds are fused) and instantiated twice: inside a
//! `#[target_feature(enable = "avx2,fma")]` function, where LLVM compiles its loops to 8-lane AVX2
//! with FMA — taken when the CPU has both (checked at run time) — and as written, for every other
//! CPU. The loops avoid what stops vectorisation: reductions keep [`LANES`] separate partial
//! sums, [`exp`] rounds with the 1.5·2²³ trick and builds 2ⁿ from bits instead of calling libm
//! (one value per call), and integer steps wrap instead of being checked. The crate is compiled
//! at opt-level 3 in every profile (LLVM vectorises loops from opt-level 2 on).

mod attention;
mod exp;
mod gelu;

pub use attention::attend_row;
pub use exp::exp;
pub use gelu::gelu_new;

/// Partial sums of a reduction: one AVX2 register of f32.
const LANES: usize = 8;

/// Whether the CPU runs the AVX2 + FMA instantiations.
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// `a·b + c`, fused when `FMA` (one rounding; one instruction under the `fma` feature, a libm
/// call without it, hence the flag).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `Σ aᵢ` in [`LANES`] partial sums (so the loop vectorises), then their sum.
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let a8 = a.chunks_exact(LANES);
    let tail: f32 = a8.remainder().iter().sum();
    for x in a8 {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ aᵢ·bᵢ` in [`LANES`] partial sums (so the loop vectorises), then their sum.
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..LANES {
            acc[l] = madd::<FMA>(x[l], y[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Takes a kernel written once, generic over `const $fma: bool` (whether multiply-adds are
/// fused), and defines it (`#[inline(always)]`) together with `pub fn $name`, which runs its
/// `true` instantiation compiled for AVX2 + FMA when the CPU has them and its `false`
/// instantiation otherwise.
macro_rules! dispatch {
    (
        $(#[$doc:meta])*
        pub fn $name:ident => fn $generic:ident<const $fma:ident: bool>(
            $($arg:ident : $ty:ty),* $(,)?
        ) $(-> $ret:ty)? $body:block
    ) => {
        #[inline(always)]
        fn $generic<const $fma: bool>($($arg: $ty),*) $(-> $ret)? $body

        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic::<true>($($arg),*)
                }
                if crate::avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}
pub(crate) use dispatch;
