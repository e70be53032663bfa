//! Cholesky factorisation and SPD solves on the device, from burn tensor ops.
//!
//! burn 0.22 has no solve, inverse or Cholesky, so this is a blocked left-looking Cholesky:
//! block column `j` is first brought up to date with the columns already factored
//! (`A[j:, j] −= L[j:, :j] L[j, :j]ᵀ`, a device matmul that touches only the lower triangle, so
//! the O(n³) work is the n³/3 of LAPACK's `potrf` rather than the 2n³/3 of updating the whole
//! trailing matrix), then its `nb × nb` diagonal block is factored and inverted on the host in
//! f64 (one small round trip per block) and the panel below it is `L21 = A21 L11⁻ᵀ`, another
//! device matmul. Solves reuse the inverted diagonal blocks, so a factor computed once per
//! layer serves every batch.
//!
//! Works in the dtype of its input: f64 where the device has it (flex, Vulkan), f32 on WebGPU.
//! On the CPU backend the same algorithm runs in place in host memory ([`crate::cpu`]): burn
//! tensors are immutable, and the copies this path makes cost more there than the products.

use burn::prelude::*;
use burn::tensor::DType;

use super::host::{Mat, cholesky as host_cholesky, invert_lower};

/// Block size of the factorisation.
pub const DEFAULT_BLOCK: usize = 256;

/// Why a factorisation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinalgError {
    /// The matrix is not (numerically) positive definite: pivot `index` was `pivot`.
    #[error("matrix is not positive definite (pivot {index} is {pivot:e})")]
    NotPositiveDefinite {
        /// Row of the failing pivot.
        index: usize,
        /// Its value.
        pivot: f64,
    },
    /// The input holds NaN or infinity.
    #[error("matrix holds non-finite values")]
    NonFinite,
    /// Reading a tensor back from the device failed.
    #[error("device read failed: {0}")]
    Device(String),
    /// The input does not have the size the routine needs.
    #[error("{0}")]
    Shape(String),
    /// An iterative routine (the eigendecomposition) did not converge.
    #[error("{0} did not converge")]
    NoConvergence(&'static str),
}

/// `L` with `A = L Lᵀ`, plus what solves need.
#[derive(Debug, Clone)]
pub struct CholeskyFactor {
    repr: Repr,
    block: usize,
    n: usize,
    /// Largest and smallest diagonal entry of `L`: `(max/min)²` is a lower bound of cond(A).
    pub diag_range: (f64, f64),
}

/// Where the factor lives.
#[derive(Debug, Clone)]
enum Repr {
    /// On the device: `L` and the inverses of its diagonal blocks as tensors.
    Device {
        l: Box<Tensor<2>>,
        diag_inv: Vec<Tensor<2>>,
    },
    /// On the CPU backend: `scale · L` kept in one host buffer (see [`crate::cpu`]).
    Host {
        factor: std::sync::Arc<crate::cpu::HostFactor>,
        scale: f64,
        device: Device,
    },
}

pub(crate) async fn to_host(t: Tensor<2>) -> Result<Mat, LinalgError> {
    let [r, c] = t.dims();
    let data = t
        .into_data_async()
        .await
        .map_err(|e| LinalgError::Device(format!("{e:?}")))?;
    Ok(Mat::new(r, c, data.iter::<f64>().collect()))
}

/// A host matrix on the device in `dtype`, converted on the host (WebGPU has no f64 to cast from).
pub(crate) fn to_device(m: &Mat, device: &Device, dtype: DType) -> Tensor<2> {
    let shape = [m.rows, m.cols];
    match dtype {
        DType::F64 => Tensor::<2>::from_data(TensorData::new(m.data.clone(), shape), (device, DType::F64)),
        _ => {
            let data = TensorData::new(m.data.iter().map(|&x| x as f32).collect::<Vec<f32>>(), shape);
            Tensor::<2>::from_data(data, (device, DType::F32)).cast(dtype)
        }
    }
}

impl CholeskyFactor {
    /// Factors the SPD matrix `a` (`[n, n]`) with blocks of `block` rows: in place in host memory
    /// on the CPU backend ([`crate::cpu`]), else with device tensor ops
    /// ([`CholeskyFactor::with_tensor_ops`]).
    pub async fn new(a: Tensor<2>, block: usize) -> Result<Self, LinalgError> {
        if crate::cpu::cholesky_applies(&a.device(), a.dtype()) {
            let [n, _] = a.dims();
            let device = a.device();
            let factor = crate::cpu::HostFactor::new(a, block)?;
            return Ok(Self {
                diag_range: factor.diag_range(),
                repr: Repr::Host {
                    factor: std::sync::Arc::new(factor),
                    scale: 1.0,
                    device,
                },
                block: block.max(1),
                n,
            });
        }
        Self::with_tensor_ops(a, block).await
    }

    /// The device path of [`CholeskyFactor::new`], from burn tensor ops on any backend (what
    /// wgpu and WebGPU run).
    pub async fn with_tensor_ops(a: Tensor<2>, block: usize) -> Result<Self, LinalgError> {
        let [n, m] = a.dims();
        assert_eq!(n, m, "Cholesky of a non-square matrix");
        let (device, dtype) = (a.device(), a.dtype());
        let block = block.max(1);
        let mut columns: Vec<Tensor<2>> = Vec::new(); // L[k0.., k0..k0+kb] of each block column
        let mut diag_inv = Vec::new();
        let (mut dmax, mut dmin) = (0.0f64, f64::INFINITY);
        let mut k0 = 0;
        while k0 < n {
            let kb = block.min(n - k0);
            let mut col = a.clone().slice([k0..n, k0..k0 + kb]);
            if k0 > 0 {
                // L[k0.., :k0]: the rows from k0 down of every finished block column.
                let left: Vec<Tensor<2>> = columns
                    .iter()
                    .zip(block_starts(k0, block))
                    .map(|(c, j0)| c.clone().narrow(0, k0 - j0, n - k0))
                    .collect();
                let left = Tensor::cat(left, 1);
                let top = left.clone().narrow(0, 0, kb);
                col = col - left.matmul(top.transpose());
            }
            let akk = to_host(col.clone().narrow(0, 0, kb)).await?;
            if akk.data.iter().any(|v| !v.is_finite()) {
                return Err(LinalgError::NonFinite);
            }
            let lkk =
                host_cholesky(&akk).map_err(|(i, pivot)| LinalgError::NotPositiveDefinite { index: k0 + i, pivot })?;
            for i in 0..kb {
                dmax = dmax.max(lkk[(i, i)]);
                dmin = dmin.min(lkk[(i, i)]);
            }
            let inv = to_device(&invert_lower(&lkk), &device, dtype);
            let mut parts = vec![to_device(&lkk, &device, dtype)];
            if k0 + kb < n {
                parts.push(col.narrow(0, kb, n - k0 - kb).matmul(inv.clone().transpose()));
            }
            columns.push(Tensor::cat(parts, 0));
            diag_inv.push(inv);
            k0 += kb;
        }
        // Assemble L: each block column below `k0` zeros.
        let l = Tensor::cat(
            columns
                .into_iter()
                .zip(block_starts(n, block))
                .map(|(c, j0)| {
                    if j0 == 0 {
                        c
                    } else {
                        let kb = c.dims()[1];
                        Tensor::cat(vec![Tensor::<2>::zeros([j0, kb], (&device, dtype)), c], 0)
                    }
                })
                .collect(),
            1,
        );
        Ok(Self {
            repr: Repr::Device {
                l: Box::new(l),
                diag_inv,
            },
            block,
            n,
            diag_range: (dmax, dmin),
        })
    }

    /// The factor of `s·A` (`s > 0`) from this factor of `A`: `√s·L`, with no new factorisation
    /// (a λ sweep over `λ·C0` factors `C0` once).
    pub fn scaled(&self, s: f64) -> Self {
        let r = s.sqrt();
        let repr = match &self.repr {
            Repr::Device { l, diag_inv } => Repr::Device {
                l: Box::new((**l).clone() * r),
                diag_inv: diag_inv.iter().map(|d| d.clone() / r).collect(),
            },
            Repr::Host { factor, scale, device } => Repr::Host {
                factor: factor.clone(),
                scale: scale * r,
                device: device.clone(),
            },
        };
        Self {
            repr,
            block: self.block,
            n: self.n,
            diag_range: (self.diag_range.0 * r, self.diag_range.1 * r),
        }
    }

    /// Size n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The lower-triangular factor `L` (`[n, n]`).
    pub fn l(&self) -> Tensor<2> {
        match &self.repr {
            Repr::Device { l, .. } => (**l).clone(),
            Repr::Host { factor, scale, device } => factor.l(*scale, device),
        }
    }

    /// Whether the factor is kept in host memory (the CPU backend's in-place path).
    pub fn on_host(&self) -> bool {
        !matches!(self.repr, Repr::Device { .. })
    }

    /// A cheap lower bound of the condition number of `A`: `(max Lᵢᵢ / min Lᵢᵢ)²`.
    pub fn condition_estimate(&self) -> f64 {
        (self.diag_range.0 / self.diag_range.1).powi(2)
    }

    /// Solves `L X = B` (`B` is `[n, m]`) by blocked forward substitution.
    pub fn solve_lower(&self, b: Tensor<2>) -> Tensor<2> {
        match &self.repr {
            Repr::Device { l, diag_inv } => self.device_lower(l, diag_inv, b),
            Repr::Host { factor, scale, .. } => factor.solve(b, *scale, true, false),
        }
    }

    /// Solves `Lᵀ X = B` by blocked backward substitution.
    pub fn solve_upper(&self, b: Tensor<2>) -> Tensor<2> {
        match &self.repr {
            Repr::Device { l, diag_inv } => self.device_upper(l, diag_inv, b),
            Repr::Host { factor, scale, .. } => factor.solve(b, *scale, false, true),
        }
    }

    /// Solves `A X = B`.
    pub fn solve(&self, b: Tensor<2>) -> Tensor<2> {
        match &self.repr {
            Repr::Device { l, diag_inv } => self.device_upper(l, diag_inv, self.device_lower(l, diag_inv, b)),
            Repr::Host { factor, scale, .. } => factor.solve(b, *scale, true, true),
        }
    }

    fn device_lower(&self, l: &Tensor<2>, diag_inv: &[Tensor<2>], b: Tensor<2>) -> Tensor<2> {
        let n = self.n;
        let mut x: Vec<Tensor<2>> = Vec::with_capacity(diag_inv.len());
        for (i, inv) in diag_inv.iter().enumerate() {
            let (r0, r1) = (i * self.block, ((i + 1) * self.block).min(n));
            let mut rhs = b.clone().narrow(0, r0, r1 - r0);
            if r0 > 0 {
                let done = Tensor::cat(x.clone(), 0);
                rhs = rhs - l.clone().slice([r0..r1, 0..r0]).matmul(done);
            }
            x.push(inv.clone().matmul(rhs));
        }
        Tensor::cat(x, 0)
    }

    fn device_upper(&self, l: &Tensor<2>, diag_inv: &[Tensor<2>], b: Tensor<2>) -> Tensor<2> {
        let n = self.n;
        let nblocks = diag_inv.len();
        let mut x: Vec<Tensor<2>> = Vec::with_capacity(nblocks);
        for i in (0..nblocks).rev() {
            let (r0, r1) = (i * self.block, ((i + 1) * self.block).min(n));
            let mut rhs = b.clone().narrow(0, r0, r1 - r0);
            if r1 < n {
                let done = Tensor::cat(x.iter().rev().cloned().collect(), 0);
                rhs = rhs - l.clone().slice([r1..n, r0..r1]).transpose().matmul(done);
            }
            x.push(diag_inv[i].clone().transpose().matmul(rhs));
        }
        x.reverse();
        Tensor::cat(x, 0)
    }
}

/// First rows of the block columns that start before `end`.
fn block_starts(end: usize, block: usize) -> impl Iterator<Item = usize> {
    (0..end).step_by(block)
}

/// Solves `A X = B` for SPD `A` (factor computed and discarded).
pub async fn spd_solve(a: Tensor<2>, b: Tensor<2>) -> Result<Tensor<2>, LinalgError> {
    Ok(CholeskyFactor::new(a, DEFAULT_BLOCK).await?.solve(b))
}
