//! The f32 matrix product of pmedit's CPU backend: `C = α·A·B + β·C` on strided host memory.
//!
//! On x86-64 with AVX2 and FMA but no AVX-512 (checked at run time) the product runs here, blocked
//! the way BLIS
//! blocks it: B is packed in `KC × NC` panels of 16-column strips, A in `MC × KC` blocks of 6-row
//! strips, and a 6 × 16 register tile (12 of the 16 `ymm` registers as accumulators, two for a
//! row of B, one for a broadcast element of A) does `2·6·16` flops per 8 loads. The row blocks
//! (and, when there are few of them, column groups of the packed panel) are split over the
//! rayon pool.
//!
//! Which CPUs take this path, and why: on AVX2-only x86-64 (e.g. AMD Zen 3), `gemm` 0.19 — what
//! burn's `flex` multiplies with — reaches about three quarters of MKL's speed on a 2048² product,
//! and this kernel matches MKL. With AVX-512 (e.g. Zen 4/5, recent Xeons), `gemm`'s 16-lane kernels
//! are faster than both, so the product is `gemm`'s; so it is on other architectures and without
//! AVX2. `bench/NOTES.md` and BENCHMARKS.md have the measurements and the machines.
//!
//! [`sgemm_half`] multiplies f32 activations by weights stored in half precision (f16 or bf16):
//! the same kernel, with B widened to f32 as it is packed, on every x86-64 CPU with AVX2, FMA and
//! F16C — `gemm` has no mixed-precision product (its f16 product would round the activations to
//! f16, and burn's bf16 product converts both whole operands to f32 first).

/// A strided read-only view of `T`s: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Debug)]
pub struct Strided<T> {
    pub ptr: *const T,
    pub rs: isize,
    pub cs: isize,
}

impl<T> Clone for Strided<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Strided<T> {}

/// A view of f32 values (the operands of [`sgemm`], the `A` operand of [`sgemm_half`]).
pub type View = Strided<f32>;

/// A view of f16 values (a `B` operand of [`sgemm_half`]: weights stored in f16).
pub type HalfView = Strided<half::f16>;

// SAFETY: a view is only dereferenced inside the products, whose caller guarantees the memory is
// valid and not written during the product.
unsafe impl<T> Send for Strided<T> {}
unsafe impl<T> Sync for Strided<T> {}

/// The output of a product: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub struct ViewMut {
    pub ptr: *mut f32,
    pub rs: isize,
    pub cs: isize,
}

// SAFETY: the tasks of one product write disjoint tiles of the output.
unsafe impl Send for ViewMut {}
unsafe impl Sync for ViewMut {}

/// Products with fewer rows or columns than this are `gemm`'s (see [`sgemm`]).
pub const THIN: usize = 32;

/// Products of at least this many multiply-adds are split over the rayon pool.
pub const PARALLEL_THRESHOLD: usize = 128 * 128 * 128;

/// `c[m×n] = alpha·a[m×k]·b[k×n] + beta·c`; with `beta == 0` the old `c` is not read (it may hold
/// anything, NaN included).
///
/// # Safety
/// Each view must address valid memory for its shape, and `c` must not overlap `a` or `b`.
pub unsafe fn sgemm((m, n, k): (usize, usize, usize), alpha: f32, a: View, b: View, beta: f32, c: ViewMut) {
    if m == 0 || n == 0 {
        return;
    }
    let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD;
    // Thin products (generation's one row per step, matrix–vector products in the solves) are
    // bound by reading B: packing it would double that traffic, and `gemm` multiplies them in
    // place. Measured crossover for 768-deep products: 32 rows.
    #[cfg(target_arch = "x86_64")]
    if avx2::preferred() && m.min(n) >= THIN {
        // SAFETY: the features are present; the caller vouches for the views.
        unsafe { avx2::sgemm((m, n, k), alpha, a, b, beta, c, parallel) };
        return;
    }
    // SAFETY: as above.
    unsafe { with_gemm((m, n, k), alpha, a, b, beta, c, parallel) };
}

/// The half-precision types a `B` operand may be stored in ([`sgemm_half`]): f16 and bf16. Every
/// value widens to f32 exactly.
pub trait Half: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The value in f32 (exact).
    fn widen(self) -> f32;

    /// The packing kernel's product for this type.
    ///
    /// # Safety
    /// As for [`sgemm`], `m, n ≥ 1`, and [`half_packs`] holds.
    #[doc(hidden)]
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn packed(
        dims: (usize, usize, usize),
        alpha: f32,
        a: View,
        b: Strided<Self>,
        beta: f32,
        c: ViewMut,
        parallel: bool,
    );
}

macro_rules! half_type {
    ($t:ty) => {
        impl Half for $t {
            fn widen(self) -> f32 {
                self.to_f32()
            }

            #[cfg(target_arch = "x86_64")]
            unsafe fn packed(
                dims: (usize, usize, usize),
                alpha: f32,
                a: View,
                b: Strided<Self>,
                beta: f32,
                c: ViewMut,
                parallel: bool,
            ) {
                // SAFETY: the caller vouches for the views and the features.
                unsafe { avx2::sgemm(dims, alpha, a, b, beta, c, parallel) }
            }
        }
    };
}
half_type!(half::f16);
half_type!(half::bf16);

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// Whether [`sgemm_half`] converts `B` while packing it (x86-64 with AVX2, FMA and F16C); where it
/// does not, it converts the whole of `B` to f32 first, which costs a temporary copy.
pub fn half_packs() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2::half_available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[m×n] = alpha·a[m×k]·b[k×n] + beta·c` with `b` in half precision (f16 or bf16): f32
/// activations times half-precision weights, computed in f32 (each value of `b` is exact in f32).
/// `b` is converted to f32 while it is packed into the kernel's panels ([`half_packs`]), so such
/// weights cost no more than f32 ones and are never rounded against f32 activations cast down to
/// their dtype. With `beta == 0` the old `c` is not read.
///
/// # Safety
/// As for [`sgemm`].
pub unsafe fn sgemm_half<T: Half>(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: View,
    b: Strided<T>,
    beta: f32,
    c: ViewMut,
) {
    if m == 0 || n == 0 {
        return;
    }
    // There is no thin-product alternative here (`gemm` has no mixed-precision product), so every
    // shape takes the packing kernel.
    #[cfg(target_arch = "x86_64")]
    if avx2::half_available() {
        let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD;
        // SAFETY: the features are present; the caller vouches for the views.
        unsafe { T::packed((m, n, k), alpha, a, b, beta, c, parallel) };
        return;
    }
    // SAFETY: as above.
    unsafe { half_widened((m, n, k), alpha, a, b, beta, c) };
}

/// [`sgemm_half`] where `B` cannot be converted while packing: `B` is converted to f32 as a whole
/// (a temporary copy), then multiplied by [`sgemm`].
///
/// # Safety
/// As for [`sgemm`].
unsafe fn half_widened<T: Half>(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: View,
    b: Strided<T>,
    beta: f32,
    c: ViewMut,
) {
    let mut wide = Vec::with_capacity(k * n);
    for p in 0..k {
        for j in 0..n {
            // SAFETY: `(p, j)` is inside `b`.
            wide.push(unsafe { *b.ptr.offset(p as isize * b.rs + j as isize * b.cs) }.widen());
        }
    }
    let b = View {
        ptr: wide.as_ptr(),
        rs: n as isize,
        cs: 1,
    };
    // SAFETY: `b` is the dense copy above; the caller vouches for `a` and `c`.
    unsafe { sgemm((m, n, k), alpha, a, b, beta, c) };
}

/// The same product by the `gemm` crate (what `flex` multiplies with).
///
/// # Safety
/// As for [`sgemm`].
unsafe fn with_gemm(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: ViewMut,
    parallel: bool,
) {
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller vouches for the views; `gemm` computes dst = alpha·dst + beta·lhs·rhs
    // (its names), reading dst only when told to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.ptr,
            c.cs,
            c.rs,
            beta != 0.0,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        )
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Half, HalfView, Strided, View, ViewMut};
    use rayon::prelude::*;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    /// Rows of the register tile.
    const MR: usize = 6;
    /// Columns of the register tile (two 8-lane vectors).
    const NR: usize = 16;
    /// Most depth of a packed block (the depth is split into equal blocks of at most this): a
    /// 16-column strip of B (≤ 16 KiB) and a 6-row strip of A (≤ 6 KiB) stay in L1 together.
    const KC: usize = 256;
    /// Most rows of a packed block of A (≤ 144 KiB; the rows are split into equal blocks of at
    /// most this): stays in L2 while the strips of B stream past it.
    const MC: usize = 96;
    /// Columns of a packed panel of B (4 MiB): stays in L3.
    const NC: usize = 4080;

    /// Whether this CPU has AVX2 and FMA (the kernel can run).
    pub fn available() -> bool {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Whether this CPU can also convert half-precision values (F16C), for [`super::sgemm_half`].
    pub fn half_available() -> bool {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| available() && is_x86_feature_detected!("f16c"))
    }

    /// A stored value in f32 (exact), for the packing's element-by-element edges.
    trait Widen: Copy {
        fn widen(self) -> f32;
    }

    impl Widen for f32 {
        fn widen(self) -> f32 {
            self
        }
    }

    impl<T: Half> Widen for T {
        fn widen(self) -> f32 {
            Half::widen(self)
        }
    }

    /// The element types `B` may be stored in: each packs a `kc × nr` strip into f32.
    pub trait PackB: Copy + Sized {
        /// Packs the `kc × nr` strip at `b` (`nr ≤ 16`): for each depth index, 16 values
        /// (columns past `nr` are zero).
        ///
        /// # Safety
        /// `b` addresses `kc × nr` valid values; `dst` has room for `kc × 16` (32-byte aligned);
        /// the CPU has the features of [`available`] (and [`half_available`] for f16 and bf16).
        unsafe fn pack(nr: usize, kc: usize, b: Strided<Self>, dst: *mut f32);
    }

    impl PackB for f32 {
        unsafe fn pack(nr: usize, kc: usize, b: View, dst: *mut f32) {
            unsafe { pack_b(nr, kc, b, dst) }
        }
    }

    impl PackB for half::f16 {
        unsafe fn pack(nr: usize, kc: usize, b: HalfView, dst: *mut f32) {
            unsafe { pack_b_f16(nr, kc, b, dst) }
        }
    }

    impl PackB for half::bf16 {
        unsafe fn pack(nr: usize, kc: usize, b: Strided<half::bf16>, dst: *mut f32) {
            unsafe { pack_b_bf16(nr, kc, b, dst) }
        }
    }

    /// Whether the kernel is the one to use: AVX2 + FMA without AVX-512, where `gemm`'s 16-lane
    /// kernels are faster (on the AVX-512 Xeon of the earlier benchmarks they beat MKL).
    pub fn preferred() -> bool {
        static USE: OnceLock<bool> = OnceLock::new();
        *USE.get_or_init(|| available() && !is_x86_feature_detected!("avx512f"))
    }

    /// A 32-byte aligned scratch buffer.
    struct Scratch {
        v: Vec<f32>,
        off: usize,
    }

    impl Scratch {
        fn new(len: usize) -> Self {
            let v = vec![0.0f32; len + 8];
            let off = (32 - v.as_ptr() as usize % 32) % 32 / 4;
            Scratch { v, off }
        }
        fn ptr(&mut self) -> *mut f32 {
            // SAFETY: `off < 8` and the buffer has 8 spare elements.
            unsafe { self.v.as_mut_ptr().add(self.off) }
        }
    }

    /// Packs the `mc × kc` block at `a` into 6-row strips: for each depth index, six values
    /// (rows past `mc` are zero).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_a(mc: usize, kc: usize, a: View, dst: *mut f32) {
        unsafe {
            let mut d = dst;
            for i0 in (0..mc).step_by(MR) {
                let mr = MR.min(mc - i0);
                let rows: [*const f32; MR] =
                    std::array::from_fn(|i| a.ptr.offset((i0 + i.min(mr - 1)) as isize * a.rs));
                let mut p = 0;
                if a.cs == 1 {
                    // Rows are contiguous: 8 depth steps of the six rows (and two zero rows) are
                    // transposed in registers, and each step's six values stored as 4 + 2.
                    while p + 8 <= kc {
                        let zero = _mm256_setzero_ps();
                        let block: [__m256; 8] =
                            std::array::from_fn(|i| if i < mr { _mm256_loadu_ps(rows[i].add(p)) } else { zero });
                        for (s, v) in transpose8(block).into_iter().enumerate() {
                            let at = d.add(s * MR);
                            _mm_storeu_ps(at, _mm256_castps256_ps128(v));
                            _mm_storel_epi64(
                                at.add(4) as *mut __m128i,
                                _mm_castps_si128(_mm256_extractf128_ps::<1>(v)),
                            );
                        }
                        d = d.add(8 * MR);
                        p += 8;
                    }
                } else if a.rs == 1 && mr == MR {
                    // A transposed operand (`Kᵀ` in `KᵀK`): each step's six values are contiguous.
                    while p < kc {
                        std::ptr::copy_nonoverlapping(rows[0].offset(p as isize * a.cs), d, MR);
                        d = d.add(MR);
                        p += 1;
                    }
                }
                for p in p..kc {
                    let o = p as isize * a.cs;
                    for (i, row) in rows.iter().enumerate() {
                        *d.add(i) = if i < mr { *row.offset(o) } else { 0.0 };
                    }
                    d = d.add(MR);
                }
            }
        }
    }

    /// The transpose of an 8 × 8 block held as eight row vectors.
    #[target_feature(enable = "avx2,fma")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// `$name` packs the `kc × nr` strip of `$t`s at `b` (`nr ≤ 16`): for each depth index, 16
    /// f32 values (columns past `nr` are zero), each group of eight loaded (and widened, exactly)
    /// by `$load8`. Rows contiguous: two loads per depth index; columns contiguous (a transposed
    /// operand: `Wᵀ` in a product's gradient, the LM head's `tableᵀ`): 8 × 8 blocks transposed in
    /// registers; any other strides: element by element.
    macro_rules! pack_b_as {
        ($name:ident, $t:ty, $features:literal, $load8:expr) => {
            #[target_feature(enable = $features)]
            unsafe fn $name(nr: usize, kc: usize, b: Strided<$t>, dst: *mut f32) {
                unsafe {
                    let load8 = $load8;
                    if nr == NR && b.cs == 1 {
                        for p in 0..kc {
                            let s = b.ptr.offset(p as isize * b.rs);
                            _mm256_store_ps(dst.add(p * NR), load8(s));
                            _mm256_store_ps(dst.add(p * NR + 8), load8(s.add(8)));
                        }
                    } else if b.rs == 1 && nr == NR {
                        let mut p = 0;
                        while p + 8 <= kc {
                            for half in 0..2 {
                                let cols: [*const $t; 8] =
                                    std::array::from_fn(|j| b.ptr.offset((half * 8 + j) as isize * b.cs + p as isize));
                                let rows = transpose8(cols.map(load8));
                                for (r, v) in rows.into_iter().enumerate() {
                                    _mm256_store_ps(dst.add((p + r) * NR + half * 8), v);
                                }
                            }
                            p += 8;
                        }
                        for p in p..kc {
                            for j in 0..NR {
                                *dst.add(p * NR + j) = Widen::widen(*b.ptr.offset(p as isize + j as isize * b.cs));
                            }
                        }
                    } else {
                        for p in 0..kc {
                            for j in 0..NR {
                                *dst.add(p * NR + j) = if j < nr {
                                    Widen::widen(*b.ptr.offset(p as isize * b.rs + j as isize * b.cs))
                                } else {
                                    0.0
                                };
                            }
                        }
                    }
                }
            }
        };
    }

    pack_b_as!(pack_b, f32, "avx2,fma", |p: *const f32| _mm256_loadu_ps(p));
    // f16: F16C's `vcvtph2ps`.
    pack_b_as!(pack_b_f16, half::f16, "avx2,fma,f16c", |p: *const half::f16| {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    });
    // bf16: the upper half of an f32, so zero-extended and shifted left by 16 bits.
    pack_b_as!(pack_b_bf16, half::bf16, "avx2,fma,f16c", |p: *const half::bf16| {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(
            p as *const __m128i,
        ))))
    });

    /// The register tile: `c[6×16] = alpha·Σ_p a[:, p] ⊗ b[p, :] + beta·c` over packed strips
    /// (`beta == 0`: `c` is not read). `c`'s columns are contiguous.
    ///
    /// The depth loop is unrolled four times and fetches the strip of B eight steps ahead; the
    /// rows of `c` are fetched before the loop so that merging into them does not wait (this was
    /// 10–15 % on the Zen 3 EPYC for 2048² and the GPT-2 shapes, with KC 256).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, alpha: f32, beta: f32) {
        unsafe {
            for i in 0..MR {
                let row = c.offset(i as isize * rsc) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.add(60));
            }
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let (mut a, mut b) = (a, b);
            // One depth step `o` ahead of `a` / `b`.
            macro_rules! step {
                ($o:expr) => {{
                    let b0 = _mm256_load_ps(b.add($o * NR));
                    let b1 = _mm256_load_ps(b.add($o * NR + 8));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = _mm256_broadcast_ss(&*a.add($o * MR + i));
                        row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                    }
                }};
            }
            let mut p = 0;
            while p + 4 <= kc {
                // Four 64-byte lines: the four steps of B eight steps on (past the strip's end
                // this touches the next strip or spare scratch; a prefetch never faults).
                for line in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(8 * NR + 16 * line) as *const i8);
                }
                step!(0);
                step!(1);
                step!(2);
                step!(3);
                a = a.add(4 * MR);
                b = b.add(4 * NR);
                p += 4;
            }
            while p < kc {
                step!(0);
                a = a.add(MR);
                b = b.add(NR);
                p += 1;
            }
            let va = _mm256_set1_ps(alpha);
            for (i, row) in acc.iter().enumerate() {
                let r = c.offset(i as isize * rsc);
                if beta == 0.0 {
                    _mm256_storeu_ps(r, _mm256_mul_ps(va, row[0]));
                    _mm256_storeu_ps(r.add(8), _mm256_mul_ps(va, row[1]));
                } else {
                    let vb = _mm256_set1_ps(beta);
                    let o0 = _mm256_mul_ps(vb, _mm256_loadu_ps(r));
                    let o1 = _mm256_mul_ps(vb, _mm256_loadu_ps(r.add(8)));
                    _mm256_storeu_ps(r, _mm256_fmadd_ps(va, row[0], o0));
                    _mm256_storeu_ps(r.add(8), _mm256_fmadd_ps(va, row[1], o1));
                }
            }
        }
    }

    /// A tile at the edge of `c` (or of a `c` with strided columns): computed into a local tile,
    /// of which the `mr × nr` part is merged.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn edge_tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: ViewMut,
        (mr, nr): (usize, usize),
        alpha: f32,
        beta: f32,
    ) {
        let mut local = [0.0f32; MR * NR];
        unsafe {
            tile(kc, a, b, local.as_mut_ptr(), NR as isize, alpha, 0.0);
            for i in 0..mr {
                for j in 0..nr {
                    let d = c.ptr.offset(i as isize * c.rs + j as isize * c.cs);
                    *d = if beta == 0.0 {
                        local[i * NR + j]
                    } else {
                        local[i * NR + j] + beta * *d
                    };
                }
            }
        }
    }

    /// See [`super::sgemm`] and [`super::sgemm_half`]; here `m, n ≥ 1` and the features of
    /// [`PackB::pack`] for `T` are present.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn sgemm<T: PackB>(
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: View,
        b: Strided<T>,
        beta: f32,
        c: ViewMut,
        parallel: bool,
    ) {
        let at = |v: ViewMut, i: usize, j: usize| ViewMut {
            // SAFETY (of the callers): `(i, j)` is inside `c`.
            ptr: unsafe { v.ptr.offset(i as isize * v.rs + j as isize * v.cs) },
            ..v
        };
        if k == 0 {
            for i in 0..m {
                for j in 0..n {
                    let d = at(c, i, j).ptr;
                    // SAFETY: inside `c`.
                    unsafe { *d = if beta == 0.0 { 0.0 } else { beta * *d } };
                }
            }
            return;
        }
        let threads = if parallel {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        // Equal depth blocks (800 = 4 × 200, not 3 × 256 + 32) and equal row blocks (multiples
        // of MR), so no block is a sliver. Measured on the Zen 3 EPYC, for the GPT-2 shapes
        // (512 rows × 768 deep) and 2048², with the prefetching tile: KC 256 / MC 96 was as fast or
        // faster than 384 / 96 and 256 / 144 (without prefetches 384 / 96 had been best).
        let kc_max = k.div_ceil(k.div_ceil(KC));
        let mc_max = m.div_ceil(m.div_ceil(MC)).next_multiple_of(MR);
        // With one block of rows (thin products: the value optimisation's few prompts, a
        // product's gradient), each packed strip of B is used by one task only: that task packs
        // it into a strip of its own right before its tiles use it, while it is in L1, instead of
        // all strips going through a panel in L3 first (whose writing and reading back took as
        // long as the tiles for f16 weights and 20 rows).
        let fused = m <= mc_max;
        let mut panel = Scratch::new(if fused { 0 } else { kc_max * NC.min(n.div_ceil(NR) * NR) });
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let strips = nc.div_ceil(NR);
            for pc in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - pc);
                // Later depth blocks add to what the first one wrote.
                let beta = if pc == 0 { beta } else { 1.0 };
                let bp = ViewMut {
                    ptr: panel.ptr(),
                    rs: 0,
                    cs: 0,
                };
                // SAFETY: `(pc, jc)` is inside `b`.
                let b0 = Strided {
                    ptr: unsafe { b.ptr.offset(pc as isize * b.rs + jc as isize * b.cs) },
                    ..b
                };
                let pack = |q: usize| {
                    let (b0, bp) = (b0, bp);
                    let strip = Strided {
                        // SAFETY: column `q·16` of the panel is inside `b`.
                        ptr: unsafe { b0.ptr.offset((q * NR) as isize * b0.cs) },
                        ..b0
                    };
                    // SAFETY: strip `q` of the scratch panel holds `kc × 16` values.
                    unsafe { T::pack(NR.min(nc - q * NR), kc, strip, bp.ptr.add(q * kc * NR)) };
                };
                if fused {
                    // Packed by the tasks below.
                } else if threads > 1 && strips > 1 {
                    (0..strips).into_par_iter().for_each(pack);
                } else {
                    (0..strips).for_each(pack);
                }
                // Tasks: blocks of MC rows × groups of strips (several per thread, for balance).
                let blocks = m.div_ceil(mc_max);
                let groups = if threads > 1 {
                    (8 * threads).div_ceil(blocks).min(strips)
                } else {
                    1
                };
                let per_group = strips.div_ceil(groups);
                let task = |t: usize| {
                    let (a, c, bp, b0) = (a, c, bp, b0);
                    let (ic, g) = ((t / groups) * mc_max, t % groups);
                    let mc = mc_max.min(m - ic);
                    let (q0, q1) = (g * per_group, ((g + 1) * per_group).min(strips));
                    if q0 >= q1 {
                        return;
                    }
                    let mut block = Scratch::new(mc_max * kc_max);
                    let ap = block.ptr();
                    let a_block = View {
                        // SAFETY: `(ic, pc)` is inside `a`.
                        ptr: unsafe { a.ptr.offset(ic as isize * a.rs + pc as isize * a.cs) },
                        ..a
                    };
                    // SAFETY: the scratch block holds `mc_max × kc_max` values.
                    unsafe { pack_a(mc, kc, a_block, ap) };
                    let mut own = Scratch::new(if fused { kc * NR } else { 0 });
                    for q in q0..q1 {
                        let j = q * NR;
                        let nr = NR.min(nc - j);
                        // SAFETY: packed strips and tiles inside `c`; tasks write disjoint tiles.
                        unsafe {
                            let bq = if fused {
                                let strip = Strided {
                                    // SAFETY: column `j` of the panel is inside `b`.
                                    ptr: b0.ptr.offset(j as isize * b0.cs),
                                    ..b0
                                };
                                T::pack(nr, kc, strip, own.ptr());
                                own.ptr() as *const f32
                            } else {
                                bp.ptr.add(q * kc * NR)
                            };
                            for i0 in (0..mc).step_by(MR) {
                                let mr = MR.min(mc - i0);
                                let ct = at(c, ic + i0, jc + j);
                                if mr == MR && nr == NR && c.cs == 1 {
                                    tile(kc, ap.add(i0 * kc), bq, ct.ptr, c.rs, alpha, beta);
                                } else {
                                    edge_tile(kc, ap.add(i0 * kc), bq, ct, (mr, nr), alpha, beta);
                                }
                            }
                        }
                    }
                };
                let tasks = blocks * groups;
                if threads > 1 && tasks > 1 {
                    (0..tasks).into_par_iter().for_each(task);
                } else {
                    (0..tasks).for_each(task);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Every blocking edge (m, n, k around 6, 16, 72, 256 and 4080), transposed and strided
    /// operands, strided output, and α/β, against an f64 reference.
    #[test]
    fn matches_an_f64_reference() {
        let shapes = [
            (1, 1, 1),
            (5, 17, 3),
            (6, 16, 256),
            (7, 15, 257),
            (73, 33, 300),
            (150, 100, 520),
            (13, 4100, 20),
            (2, 3, 0),
        ];
        for (m, n, k) in shapes {
            for (ta, tb, tc) in [(false, false, false), (true, true, false), (false, true, true)] {
                for (alpha, beta) in [(1.0f32, 0.0f32), (-0.5, 1.0), (2.0, 0.25)] {
                    let a = values(m * k, 1);
                    let b = values(k * n, 2);
                    let c0 = values(m * n, 3);
                    for path in 0..3 {
                        let mut c = c0.clone();
                        // a: m×k, row-major or stored as its transpose; likewise b; c row- or column-major.
                        let av = if ta { (1, m as isize) } else { (k as isize, 1) };
                        let bv = if tb { (1, k as isize) } else { (n as isize, 1) };
                        let cv = if tc { (1, m as isize) } else { (n as isize, 1) };
                        let get = |v: &[f32], (rs, cs): (isize, isize), i: usize, j: usize| {
                            v[(i as isize * rs + j as isize * cs) as usize]
                        };
                        let (av_, bv_) = (
                            View {
                                ptr: a.as_ptr(),
                                rs: av.0,
                                cs: av.1,
                            },
                            View {
                                ptr: b.as_ptr(),
                                rs: bv.0,
                                cs: bv.1,
                            },
                        );
                        let cv_ = ViewMut {
                            ptr: c.as_mut_ptr(),
                            rs: cv.0,
                            cs: cv.1,
                        };
                        unsafe {
                            match path {
                                0 => sgemm((m, n, k), alpha, av_, bv_, beta, cv_),
                                1 => with_gemm((m, n, k), alpha, av_, bv_, beta, cv_, true),
                                // The AVX2 kernel itself, also for thin shapes and on CPUs where
                                // it is not the default.
                                #[cfg(target_arch = "x86_64")]
                                _ if avx2::available() && m > 0 && n > 0 => {
                                    avx2::sgemm((m, n, k), alpha, av_, bv_, beta, cv_, true)
                                }
                                _ => continue,
                            }
                        };
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f64 = (0..k)
                                    .map(|p| get(&a, av, i, p) as f64 * get(&b, bv, p, j) as f64)
                                    .sum();
                                let want = alpha as f64 * dot + beta as f64 * get(&c0, cv, i, j) as f64;
                                let got = get(&c, cv, i, j) as f64;
                                assert!(
                                    (got - want).abs() <= 1e-5 * (1.0 + k as f64).sqrt() * (1.0 + want.abs()),
                                    "path {path}: {m}×{n}×{k} ta {ta} tb {tb} tc {tc} α {alpha} β {beta} at ({i}, {j}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The half-precision-`B` products, f16 and bf16 (converted while packing, and converted as
    /// a whole), for plain and transposed `B`, thin and wide shapes and every blocking edge,
    /// against an f64 reference on the stored values; β = 0 never reads the (NaN) output.
    #[test]
    fn half_b_matches_an_f64_reference() {
        half_b_case(half::f16::from_f32);
        half_b_case(half::bf16::from_f32);
    }

    fn half_b_case<T: Half>(from: fn(f32) -> T) {
        for (m, n, k) in [
            (1, 1, 1),
            (1, 40, 33),
            (5, 17, 3),
            (7, 15, 257),
            (73, 33, 300),
            (13, 4100, 20),
        ] {
            for tb in [false, true] {
                for (alpha, beta) in [(1.0f32, 0.0f32), (-0.5, 1.0)] {
                    let a = values(m * k, 21);
                    let b: Vec<T> = values(k * n, 22).into_iter().map(from).collect();
                    let c0: Vec<f32> = if beta == 0.0 {
                        vec![f32::NAN; m * n]
                    } else {
                        values(m * n, 23)
                    };
                    let bv = if tb { (1, k as isize) } else { (n as isize, 1) };
                    for path in 0..2 {
                        let mut c = c0.clone();
                        let av = View {
                            ptr: a.as_ptr(),
                            rs: k as isize,
                            cs: 1,
                        };
                        let hv = Strided {
                            ptr: b.as_ptr(),
                            rs: bv.0,
                            cs: bv.1,
                        };
                        let cv = ViewMut {
                            ptr: c.as_mut_ptr(),
                            rs: n as isize,
                            cs: 1,
                        };
                        unsafe {
                            match path {
                                0 => sgemm_half((m, n, k), alpha, av, hv, beta, cv),
                                _ => half_widened((m, n, k), alpha, av, hv, beta, cv),
                            }
                        };
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f64 = (0..k)
                                    .map(|p| {
                                        let bij = b[(p as isize * bv.0 + j as isize * bv.1) as usize];
                                        a[i * k + p] as f64 * bij.widen() as f64
                                    })
                                    .sum();
                                let old = if beta == 0.0 {
                                    0.0
                                } else {
                                    beta as f64 * c0[i * n + j] as f64
                                };
                                let want = alpha as f64 * dot + old;
                                let got = c[i * n + j] as f64;
                                assert!(
                                    (got - want).abs() <= 1e-5 * (1.0 + k as f64).sqrt() * (1.0 + want.abs()),
                                    "path {path}: {m}×{n}×{k} tb {tb} α {alpha} β {beta} at ({i}, {j}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// With β = 0 the output's old contents (NaN here) are never read.
    #[test]
    fn beta_zero_overwrites_nan() {
        let (m, n, k) = (20, 40, 8);
        let a = values(m * k, 4);
        let b = values(k * n, 5);
        let mut c = vec![f32::NAN; m * n];
        unsafe {
            sgemm(
                (m, n, k),
                1.0,
                View {
                    ptr: a.as_ptr(),
                    rs: k as isize,
                    cs: 1,
                },
                View {
                    ptr: b.as_ptr(),
                    rs: n as isize,
                    cs: 1,
                },
                0.0,
                ViewMut {
                    ptr: c.as_mut_ptr(),
                    rs: n as isize,
                    cs: 1,
                },
            )
        };
        assert!(c.iter().all(|v| v.is_finite()));
    }

    /// Sub-matrix views (a row stride larger than the row) of odd sizes, each operand inside an
    /// exactly-sized buffer whose padding is NaN: a kernel that reads padding gives NaN, one that
    /// writes it breaks the padding check, and one that steps past the buffer is caught by
    /// AddressSanitizer (`scripts/fuzz.sh` runs this crate's tests under it).
    #[test]
    fn padded_strides_touch_only_their_elements() {
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (9, 17, 33), (31, 13, 65), (65, 33, 129)] {
            let (lda, ldb, ldc) = (k + 3, n + 5, n + 1);
            let pad = |rows: usize, ld: usize, cols: usize, seed: u64| {
                let v = values(rows * cols, seed);
                let mut buf = vec![f32::NAN; (rows - 1) * ld + cols];
                for i in 0..rows {
                    buf[i * ld..i * ld + cols].copy_from_slice(&v[i * cols..(i + 1) * cols]);
                }
                (buf, v)
            };
            let (a, a_dense) = pad(m, lda, k, 11);
            let (b, b_dense) = pad(k, ldb, n, 12);
            let (c0, c_dense) = pad(m, ldc, n, 13);
            for path in 0..3 {
                let mut c = c0.clone();
                let (av, bv) = (
                    View {
                        ptr: a.as_ptr(),
                        rs: lda as isize,
                        cs: 1,
                    },
                    View {
                        ptr: b.as_ptr(),
                        rs: ldb as isize,
                        cs: 1,
                    },
                );
                let cv = ViewMut {
                    ptr: c.as_mut_ptr(),
                    rs: ldc as isize,
                    cs: 1,
                };
                unsafe {
                    match path {
                        0 => sgemm((m, n, k), 1.5, av, bv, 0.5, cv),
                        1 => with_gemm((m, n, k), 1.5, av, bv, 0.5, cv, true),
                        #[cfg(target_arch = "x86_64")]
                        _ if avx2::available() => avx2::sgemm((m, n, k), 1.5, av, bv, 0.5, cv, true),
                        _ => continue,
                    }
                }
                for i in 0..m {
                    for j in 0..ldc.min(c.len() - i * ldc) {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert!(got.is_nan(), "path {path}: padding of c written at ({i}, {j})");
                            continue;
                        }
                        let dot: f64 = (0..k)
                            .map(|p| a_dense[i * k + p] as f64 * b_dense[p * n + j] as f64)
                            .sum();
                        let want = 1.5 * dot + 0.5 * c_dense[i * n + j] as f64;
                        assert!(
                            (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "path {path}: {m}×{n}×{k} at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
