//! Linear algebra the PM solvers need and burn lacks: Cholesky factorisation and SPD solves on
//! the device (in place in host memory on the CPU backend), the symmetric eigendecomposition
//! (host, f64), the engine's large matrix products
//! (with the CPU backend's own f32 kernel, `sgemm`), and small f64 host routines (diagonal
//! blocks, references for tests).

pub mod cholesky;
pub mod eigen;
pub mod host;
pub mod matmul;

pub use cholesky::{CholeskyFactor, DEFAULT_BLOCK, LinalgError, spd_solve};
pub use matmul::{affine, matmul};
