//! The Cholesky factorisation and triangular solves of [`crate::linalg::cholesky`] for the CPU backend
//! (burn `flex`), run in place in host memory.
//!
//! On the CPU the tensors already live in host memory, but burn tensors are immutable: the
//! device path concatenates every finished block column and assembles `L` at the end, copying
//! about n² floats per block column into fresh buffers (and fresh pages cost a fault each). Here
//! the same blocked left-looking algorithm — columns brought up to date by products over the
//! lower triangle only (the n³/3 of LAPACK's `potrf`), diagonal blocks factored and inverted in
//! f64, the panel below each multiplied by that inverse — overwrites the matrix's own buffer,
//! with every product done on every core by [`pmedit_sgemm`] (f32) or `gemm` (f64, the crate
//! `flex` multiplies with).
//! The numerics are those of the device path: products in the matrix's dtype, diagonal blocks in
//! f64.

use burn::prelude::*;
use burn::tensor::{DType, Element};

use crate::linalg::LinalgError;
use crate::linalg::host::{Mat, cholesky as host_cholesky, invert_lower};

/// Products of at least this many multiply-adds run on every core (flex's own threshold).
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// Rows of the diagonal blocks (factored in f64, their inverses applied by products): small
/// blocks keep those products (`rows × 64 × 64`, a dense stand-in for a triangular solve) cheap.
/// Measured on a 2-core EPYC: 64 beat 48, 96, 128 and 256 for n = 3072 and 6400.
const INNER: usize = 64;

/// Diagonal blocks per panel: a panel of 512 columns is brought up to date with everything left
/// of it by one wide product, where `gemm` runs near its peak.
const PANEL_BLOCKS: usize = 8;

/// The float types `gemm` multiplies and the factor is kept in.
pub(crate) trait Real: Element + Copy + Send + Sync + 'static {
    const ONE: Self;
    const MINUS_ONE: Self;
    const ZERO: Self;
    const DTYPE: DType;
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
    fn scale(self, s: f64) -> Self {
        Self::of(self.f64() * s)
    }
}

impl Real for f32 {
    const ONE: Self = 1.0;
    const MINUS_ONE: Self = -1.0;
    const ZERO: Self = 0.0;
    const DTYPE: DType = DType::F32;
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const ONE: Self = 1.0;
    const MINUS_ONE: Self = -1.0;
    const ZERO: Self = 0.0;
    const DTYPE: DType = DType::F64;
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
}

/// A strided view of a matrix for [`gemm`]: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct View<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

fn view<T>(ptr: *const T, rs: usize, cs: usize) -> View<T> {
    View {
        ptr,
        rs: rs as isize,
        cs: cs as isize,
    }
}

/// `dst[m×n] (+)= s · lhs[m×k] · rhs[k×n]` (`accumulate`: add to what `dst` holds, else
/// overwrite); `dst` is row-major with row stride `dst_rs`.
///
/// # Safety
/// Every view must address valid memory for its shape, and `dst` must not overlap `lhs` or `rhs`.
unsafe fn gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut T, usize),
    accumulate: bool,
    lhs: View<T>,
    rhs: View<T>,
    s: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    if T::DTYPE == DType::F32 {
        let f32_view = |v: View<T>| pmedit_sgemm::View {
            ptr: v.ptr.cast::<f32>(),
            rs: v.rs,
            cs: v.cs,
        };
        let out = pmedit_sgemm::ViewMut {
            ptr: dst.cast::<f32>(),
            rs: dst_rs as isize,
            cs: 1,
        };
        let beta = if accumulate { 1.0 } else { 0.0 };
        // SAFETY: `T` is f32 (its dtype says so); the caller vouches for the views.
        unsafe { pmedit_sgemm::sgemm((m, n, k), s.f64() as f32, f32_view(lhs), f32_view(rhs), beta, out) };
        return;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller guarantees the views are valid and `dst` is disjoint from both inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::ONE,
            s,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A tensor's values as host data that can be written in place: the tensor's own buffer when it
/// is uniquely owned (the CPU backend hands it over without a copy), else one copy.
fn host_data<T: Real>(t: Tensor<2>) -> Result<TensorData, LinalgError> {
    let t = if t.dtype() == T::DTYPE { t } else { t.cast(T::DTYPE) };
    let mut data = burn::tensor::read_sync(t.into_data_async()).map_err(|e| LinalgError::Device(format!("{e:?}")))?;
    if data.as_mut_slice::<T>().is_err() {
        // A buffer not aligned for `T`: copy once into one that is.
        let values: Vec<T> = data.iter::<T>().collect();
        data = TensorData::new(values, data.shape().clone());
    }
    Ok(data)
}

fn values<T: Real>(data: &TensorData) -> &[T] {
    data.as_slice::<T>().expect("host data is checked to hold T")
}

fn values_mut<T: Real>(data: &mut TensorData) -> &mut [T] {
    data.as_mut_slice::<T>().expect("host data is checked to hold T")
}

/// `L` (row-major `n × n`, zero above the diagonal) and the inverses of its diagonal blocks.
#[derive(Debug, Clone)]
pub(crate) struct Factor<T> {
    n: usize,
    /// Rows of a diagonal block.
    block: usize,
    /// Diagonal blocks per panel.
    per_panel: usize,
    /// `L`, in the buffer the matrix came in.
    l: TensorData,
    diag_inv: Vec<Vec<T>>,
    /// Largest and smallest diagonal entry of `L`.
    diag_range: (f64, f64),
}

impl<T: Real> Factor<T> {
    /// Factors the row-major SPD matrix in `a` (`n × n`), overwriting it with `L`, in diagonal
    /// blocks of `inner` rows grouped into panels of `outer` columns.
    ///
    /// Two levels, because the two costs pull the block size apart: each panel is brought up to
    /// date with everything left of it by one wide product (`outer` columns), and inside the
    /// panel the small diagonal blocks keep the f64 factorisations and the products with their
    /// inverses cheap.
    pub fn new(mut a: TensorData, n: usize, inner: usize, outer: usize) -> Result<Self, LinalgError> {
        let inner = inner.max(1);
        let outer = outer.max(inner) / inner * inner;
        let m = values_mut::<T>(&mut a);
        assert_eq!(m.len(), n * n, "Cholesky of a non-square matrix");
        let mut diag_inv = Vec::new();
        let (mut dmax, mut dmin) = (0.0f64, f64::INFINITY);
        // One scratch buffer for every panel product (fresh pages cost a fault each).
        let mut scratch = Vec::new();
        let mut p0 = 0;
        while p0 < n {
            let pw = outer.min(n - p0);
            // The panel's columns p0..p0+pw, up to date with every column left of it.
            update(m, n, p0, pw, 0, p0);
            let mut k0 = p0;
            while k0 < p0 + pw {
                let kb = inner.min(p0 + pw - k0);
                // Block column k0..k0+kb, up to date with the panel's columns left of it.
                update(m, n, k0, kb, p0, k0);
                let (inv, (lo, hi)) = factor_block(m, n, k0, kb, &mut scratch)?;
                dmax = dmax.max(hi);
                dmin = dmin.min(lo);
                diag_inv.push(inv);
                k0 += kb;
            }
            p0 += pw;
        }
        for i in 0..n {
            m[i * n + i + 1..(i + 1) * n].fill(T::ZERO);
        }
        Ok(Self {
            n,
            block: inner,
            per_panel: outer / inner,
            l: a,
            diag_inv,
            diag_range: (dmax, dmin),
        })
    }

    fn l(&self) -> &[T] {
        values(&self.l)
    }

    /// Rows `r0..r1` of diagonal block `i`.
    fn rows(&self, i: usize) -> (usize, usize) {
        (i * self.block, ((i + 1) * self.block).min(self.n))
    }

    /// `X[r0..r1] = D⁻¹ X[r0..r1]` (or `D⁻ᵀ`) for diagonal block `i`, through `scratch`.
    fn apply_diag_inv(&self, i: usize, x: &mut [T], m: usize, transpose: bool, scratch: &mut Vec<T>) {
        let (r0, r1) = self.rows(i);
        let rb = r1 - r0;
        let inv = &self.diag_inv[i];
        scratch.resize(rb * m, T::ZERO);
        let lhs = if transpose {
            view(inv.as_ptr(), 1, rb)
        } else {
            view(inv.as_ptr(), rb, 1)
        };
        // SAFETY: `inv` is rb × rb, rows r0..r1 of `x` are rb × m, `scratch` is separate.
        unsafe {
            gemm(
                (rb, m, rb),
                (scratch.as_mut_ptr(), m),
                false,
                lhs,
                view(x.as_ptr().add(r0 * m), m, 1),
                T::ONE,
            );
        }
        x[r0 * m..r1 * m].copy_from_slice(&scratch[..rb * m]);
    }

    /// Diagonal blocks `first..last` of panel `p`.
    fn panel(&self, p: usize) -> std::ops::Range<usize> {
        let first = p * self.per_panel;
        first..(first + self.per_panel).min(self.diag_inv.len())
    }

    fn panels(&self) -> usize {
        self.diag_inv.len().div_ceil(self.per_panel)
    }

    /// `X[r0..r1] −= L[r0..r1, c0..c1] · X[c0..c1]` (`transpose`: `L[c0..c1, r0..r1]ᵀ`), for row
    /// ranges that do not meet.
    fn subtract(&self, x: &mut [T], m: usize, (r0, r1): (usize, usize), (c0, c1): (usize, usize), transpose: bool) {
        if c1 <= c0 {
            return;
        }
        let (n, l) = (self.n, self.l());
        let p = x.as_mut_ptr();
        let lhs = if transpose {
            view(l[c0 * n + r0..].as_ptr(), 1, n)
        } else {
            view(l[r0 * n + c0..].as_ptr(), n, 1)
        };
        // SAFETY: the views lie inside `l` and `x`; rows r0..r1 and c0..c1 of `x` do not meet.
        unsafe {
            gemm(
                (r1 - r0, m, c1 - c0),
                (p.add(r0 * m), m),
                true,
                lhs,
                view(p.add(c0 * m), m, 1),
                T::MINUS_ONE,
            );
        }
    }

    /// Solves `L X = B` in place (`x` is row-major `n × m`) by blocked forward substitution: each
    /// panel's rows are brought up to date with the rows above it in one product, then solved
    /// block by block.
    pub fn solve_lower(&self, x: &mut [T], m: usize) {
        assert_eq!(x.len(), self.n * m, "right-hand side shape");
        let mut scratch = Vec::new();
        for p in 0..self.panels() {
            let blocks = self.panel(p);
            let (p0, p1) = (self.rows(blocks.start).0, self.rows(blocks.end - 1).1);
            self.subtract(x, m, (p0, p1), (0, p0), false);
            for i in blocks {
                let (r0, r1) = self.rows(i);
                self.subtract(x, m, (r0, r1), (p0, r0), false);
                self.apply_diag_inv(i, x, m, false, &mut scratch);
            }
        }
    }

    /// Solves `Lᵀ X = B` in place by blocked backward substitution, panel by panel from the last.
    pub fn solve_upper(&self, x: &mut [T], m: usize) {
        assert_eq!(x.len(), self.n * m, "right-hand side shape");
        let n = self.n;
        let mut scratch = Vec::new();
        for p in (0..self.panels()).rev() {
            let blocks = self.panel(p);
            let (p0, p1) = (self.rows(blocks.start).0, self.rows(blocks.end - 1).1);
            self.subtract(x, m, (p0, p1), (p1, n), true);
            for i in blocks.rev() {
                let (r0, r1) = self.rows(i);
                self.subtract(x, m, (r0, r1), (r1, p1), true);
                self.apply_diag_inv(i, x, m, true, &mut scratch);
            }
        }
    }
}

/// `A[c0.., c0..c0+w] −= L[c0.., j0..j1] · L[c0..c0+w, j0..j1]ᵀ`: columns `c0..c0+w` (from the
/// diagonal down) brought up to date with the finished columns `j0..j1` (all left of `c0`).
fn update<T: Real>(a: &mut [T], n: usize, c0: usize, w: usize, j0: usize, j1: usize) {
    if j1 <= j0 {
        return;
    }
    let p = a.as_mut_ptr();
    // SAFETY: all three views lie inside `a`; the destination's columns c0.. do not meet the
    // inputs' columns j0..j1 (j1 ≤ c0).
    unsafe {
        gemm(
            (n - c0, w, j1 - j0),
            (p.add(c0 * n + c0), n),
            true,
            view(p.add(c0 * n + j0), n, 1),
            view(p.add(c0 * n + j0), 1, n),
            T::MINUS_ONE,
        );
    }
}

/// Factors the up-to-date diagonal block at `k0` (`kb` rows) in f64, writes `L11` and the panel
/// below it (`A21 L11⁻ᵀ`, through `scratch`), and returns `L11⁻¹` with the block's smallest and
/// largest pivot.
#[allow(clippy::type_complexity)]
fn factor_block<T: Real>(
    a: &mut [T],
    n: usize,
    k0: usize,
    kb: usize,
    scratch: &mut Vec<T>,
) -> Result<(Vec<T>, (f64, f64)), LinalgError> {
    let mut akk = Mat::zeros(kb, kb);
    for i in 0..kb {
        for j in 0..=i {
            akk[(i, j)] = a[(k0 + i) * n + k0 + j].f64();
            akk[(j, i)] = akk[(i, j)];
        }
    }
    if akk.data.iter().any(|v| !v.is_finite()) {
        return Err(LinalgError::NonFinite);
    }
    let lkk = host_cholesky(&akk).map_err(|(i, pivot)| LinalgError::NotPositiveDefinite { index: k0 + i, pivot })?;
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for i in 0..kb {
        hi = hi.max(lkk[(i, i)]);
        lo = lo.min(lkk[(i, i)]);
        for j in 0..kb {
            a[(k0 + i) * n + k0 + j] = T::of(lkk[(i, j)]);
        }
    }
    let inv: Vec<T> = invert_lower(&lkk).data.into_iter().map(T::of).collect();
    let below = n - k0 - kb;
    if below > 0 {
        scratch.resize(below * kb, T::ZERO);
        // SAFETY: the panel view lies inside `a`, the inverse inside `inv`, and the destination
        // is the separate scratch buffer.
        unsafe {
            gemm(
                (below, kb, kb),
                (scratch.as_mut_ptr(), kb),
                false,
                view(a.as_ptr().add((k0 + kb) * n + k0), n, 1),
                view(inv.as_ptr(), 1, kb),
                T::ONE,
            );
        }
        for (i, row) in scratch[..below * kb].chunks_exact(kb).enumerate() {
            let at = (k0 + kb + i) * n + k0;
            a[at..at + kb].copy_from_slice(row);
        }
    }
    Ok((inv, (lo, hi)))
}

/// A host factor in the dtype of the matrix it came from.
#[derive(Debug, Clone)]
pub(crate) enum HostFactor {
    F32(Factor<f32>),
    F64(Factor<f64>),
}

/// Whether a matrix on `device` in `dtype` is factored here: the CPU backend, f32 or f64.
pub(crate) fn applies(device: &Device, dtype: DType) -> bool {
    *device == Device::flex() && matches!(dtype, DType::F32 | DType::F64)
}

impl HostFactor {
    /// Factors `a` (on the CPU backend, f32 or f64) with diagonal blocks of at most [`INNER`]
    /// rows (fewer when `block` asks for fewer) in panels [`PANEL_BLOCKS`] blocks wide.
    pub fn new(a: Tensor<2>, block: usize) -> Result<Self, LinalgError> {
        let [n, m] = a.dims();
        assert_eq!(n, m, "Cholesky of a non-square matrix");
        let inner = block.clamp(1, INNER);
        let outer = PANEL_BLOCKS * inner;
        Ok(match a.dtype() {
            DType::F64 => Self::F64(Factor::new(host_data::<f64>(a)?, n, inner, outer)?),
            _ => Self::F32(Factor::new(host_data::<f32>(a)?, n, inner, outer)?),
        })
    }

    pub fn diag_range(&self) -> (f64, f64) {
        match self {
            Self::F32(f) => f.diag_range,
            Self::F64(f) => f.diag_range,
        }
    }

    /// `s · L` as a tensor on `device`.
    pub fn l(&self, s: f64, device: &Device) -> Tensor<2> {
        fn scaled<T: Real>(f: &Factor<T>, s: f64, device: &Device) -> Tensor<2> {
            let l: Vec<T> = f.l().iter().map(|v| if s == 1.0 { *v } else { v.scale(s) }).collect();
            Tensor::<2>::from_data(TensorData::new(l, [f.n, f.n]), (device, T::DTYPE))
        }
        match self {
            Self::F32(f) => scaled(f, s, device),
            Self::F64(f) => scaled(f, s, device),
        }
    }

    /// `(s·L)⁻¹ B` (`lower`), `(s·L)⁻ᵀ B` (`upper`), or both in turn (`(s²·L Lᵀ)⁻¹ B`), for
    /// `b: [n, m]`, in the factor's dtype.
    pub fn solve(&self, b: Tensor<2>, s: f64, lower: bool, upper: bool) -> Tensor<2> {
        fn run<T: Real>(f: &Factor<T>, b: Tensor<2>, s: f64, lower: bool, upper: bool) -> Tensor<2> {
            let [_, m] = b.dims();
            let device = b.device();
            // A read on the CPU backend cannot fail short of a bug in it.
            let mut data = host_data::<T>(b).expect("reading a CPU tensor");
            let x = values_mut::<T>(&mut data);
            if lower {
                f.solve_lower(x, m);
            }
            if upper {
                f.solve_upper(x, m);
            }
            let steps = lower as i32 + upper as i32;
            if s != 1.0 {
                let k = s.powi(-steps);
                x.iter_mut().for_each(|v| *v = v.scale(k));
            }
            Tensor::from_data(data, (&device, T::DTYPE))
        }
        match self {
            Self::F32(f) => run(f, b, s, lower, upper),
            Self::F64(f) => run(f, b, s, lower, upper),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric positive definite `n × n` matrix with entries of both signs.
    fn spd(n: usize) -> Vec<f64> {
        let x: Vec<f64> = (0..n * n).map(|i| (i * 7919 % 1009) as f64 / 1009.0 - 0.5).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| x[i * n + k] * x[j * n + k]).sum::<f64>() / n as f64;
            }
            a[i * n + i] += 0.5;
        }
        a
    }

    /// Ragged inner blocks inside ragged panels (100 = 4 panels of 24 + 4; blocks of 8) give the
    /// reference factor, and both triangular solves invert it.
    #[test]
    fn two_level_factor_matches_the_reference() {
        let n = 100;
        let a = spd(n);
        let want = host_cholesky(&Mat::new(n, n, a.clone())).unwrap();
        let f = Factor::<f64>::new(TensorData::new(a.clone(), [n, n]), n, 8, 24).unwrap();
        let err = f
            .l()
            .iter()
            .zip(&want.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "max |L − L_ref| = {err}");
        assert_eq!(f.diag_inv.len(), 13);
        let m = 3;
        let b: Vec<f64> = (0..n * m).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut x = b.clone();
        f.solve_lower(&mut x, m);
        f.solve_upper(&mut x, m);
        // A x = b.
        for r in 0..n {
            for c in 0..m {
                let ax: f64 = (0..n).map(|k| a[r * n + k] * x[k * m + c]).sum();
                assert!((ax - b[r * m + c]).abs() < 1e-10, "row {r} col {c}");
            }
        }
    }
}
