//! The CPU backend's fast paths in wasm: there are none (no `pmedit-sgemm`, `pmedit-simd` or
//! `gemm` in a browser), so every entry point of the native `cpu` module declines and callers use
//! burn's tensor ops. Same signatures as `cpu/mod.rs`.

use burn::prelude::*;
use burn::tensor::DType;

use crate::linalg::LinalgError;

/// Declines: burn's product is used.
pub(crate) fn product(_a: &Tensor<2>, _b: &Tensor<2>, _bias: Option<&Tensor<1>>) -> Option<Tensor<2>> {
    None
}

/// Declines: the tensor-op form is used.
pub(crate) fn gelu_new<const D: usize>(x: Tensor<D>, tensor_ops: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    tensor_ops(x)
}

/// Declines: the tensor-op attention is used.
pub(crate) fn causal_attention(_qkv: &Tensor<3>, _n_head: usize) -> Option<Tensor<3>> {
    None
}

/// No matrix is factored on the host here.
pub(crate) fn cholesky_applies(_device: &Device, _dtype: DType) -> bool {
    false
}

/// A host factor, which cannot exist in wasm ([`cholesky_applies`] is always false).
#[derive(Debug, Clone)]
pub(crate) enum HostFactor {}

impl HostFactor {
    pub fn new(_a: Tensor<2>, _block: usize) -> Result<Self, LinalgError> {
        unreachable!("no host factorisation in wasm (cholesky_applies is false)")
    }

    pub fn diag_range(&self) -> (f64, f64) {
        match *self {}
    }

    pub fn l(&self, _s: f64, _device: &Device) -> Tensor<2> {
        match *self {}
    }

    pub fn solve(&self, _b: Tensor<2>, _s: f64, _lower: bool, _upper: bool) -> Tensor<2> {
        match *self {}
    }
}
