//! Running a loaded model in half precision on devices that support it (`--dtype f16`, and the
//! web page on WebGPU adapters with `shader-f16`, where it halves the weights' GPU memory).
//! Weights are always read as f32 and cast on the device; editing math stays in f32/f64: an edit
//! of a half-precision model runs on an f32 copy ([`cast_model`] to F32), and the edited model is
//! cast back — the unchanged weights round-trip exactly.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

use super::Gpt2;
use crate::error::{EngineError, Result};

struct Cast(FloatDType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// Casts every weight of `model` to `dtype`, if its device supports it.
pub fn cast_model(model: Gpt2, dtype: FloatDType) -> Result<Gpt2> {
    let device = model.device();
    if !device.supports_dtype(dtype) {
        return Err(EngineError::Input(format!(
            "{dtype:?} is not supported on {device:?}; use f32"
        )));
    }
    Ok(model.map(&mut Cast(dtype)))
}

/// The float dtype `model` computes in (that of its first weight).
pub fn model_dtype(model: &Gpt2) -> FloatDType {
    match model.wpe.weight.val().dtype() {
        burn::tensor::DType::F16 => FloatDType::F16,
        burn::tensor::DType::BF16 => FloatDType::BF16,
        burn::tensor::DType::F64 => FloatDType::F64,
        _ => FloatDType::F32,
    }
}
