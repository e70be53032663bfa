//! Weights in half precision, activations in f32 (`--dtype f16|bf16`, and the web page on WebGPU
//! adapters with `shader-f16`, where it halves the weights' memory: GPT2-XL 3.1 GB instead of
//! 6.2 GB).
//!
//! Only the matrices are stored in the half dtype; the vectors (biases, LayerNorm scales), a few
//! thousandths of the parameters, stay f32. The residual stream, LayerNorm, attention and GELU run
//! in [`ACTIVATIONS`] (f32); each product with a half-precision matrix ([`crate::linalg::affine`]:
//! [`super::linear::linear_rows`], the embedding and the LM head) gives its result in f32 (on the
//! CPU backend the kernel widens the weights as it packs them; elsewhere the activations are cast
//! to the weights' dtype). An edit therefore needs f32 only for the matrices it changes: the
//! editor casts those to f32 for the edit and back afterwards, and the rest of the network is never
//! copied.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

use super::Gpt2;
use crate::error::{EngineError, Result};

/// The dtype activations are computed in, whatever the weights are stored in.
pub const ACTIVATIONS: FloatDType = FloatDType::F32;

/// Casts the matrices (tensors of two or more dimensions) to a dtype; vectors stay as they are.
struct CastMatrices(FloatDType);

impl ModuleMapper for CastMatrices {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        if D >= 2 { param.map(|t| t.cast(dtype)) } else { param }
    }
}

/// Fails unless `device` computes in `dtype`.
pub fn check_supported(device: &Device, dtype: FloatDType) -> Result<()> {
    if device.supports_dtype(dtype) {
        Ok(())
    } else {
        Err(EngineError::Input(format!(
            "{dtype:?} is not supported on {device:?}; use f32"
        )))
    }
}

/// Stores every weight matrix of `model` in `dtype` (on its device, one tensor at a time), if the
/// device supports it.
pub fn cast_model(model: Gpt2, dtype: FloatDType) -> Result<Gpt2> {
    check_supported(&model.device(), dtype)?;
    Ok(cast_matrices(model, dtype))
}

/// Stores every weight matrix of any module in `dtype` (the caller checked the device).
pub fn cast_matrices<M: Module>(module: M, dtype: FloatDType) -> M {
    module.map(&mut CastMatrices(dtype))
}

/// The float dtype of a stored matrix.
pub fn dtype_of(t: &Tensor<2>) -> FloatDType {
    match t.dtype() {
        burn::tensor::DType::F16 => FloatDType::F16,
        burn::tensor::DType::BF16 => FloatDType::BF16,
        burn::tensor::DType::F64 => FloatDType::F64,
        _ => FloatDType::F32,
    }
}

/// The dtype the model's matrices are stored in (that of its position embeddings).
pub fn model_dtype(model: &Gpt2) -> FloatDType {
    dtype_of(&model.wpe.weight.val())
}
