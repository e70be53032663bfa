//! Linear algebra the PM solvers need and burn lacks: Cholesky factorisation and SPD solves on
//! the device, and small f64 host routines (diagonal blocks, references for tests).

pub mod cholesky;
pub mod host;

pub use cholesky::{CholeskyFactor, DEFAULT_BLOCK, LinalgError, spd_solve};
