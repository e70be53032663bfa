//! Linear algebra the PM solvers need and burn lacks: Cholesky factorisation and SPD solves on
//! the device (in place in host memory on the CPU backend), and small f64 host routines
//! (diagonal blocks, references for tests).

pub mod cholesky;
#[cfg(not(target_family = "wasm"))]
mod cpu;
pub mod host;

pub use cholesky::{CholeskyFactor, DEFAULT_BLOCK, LinalgError, spd_solve};
