//! Running a loaded model in half precision on devices that support it (`--dtype f16`). Weights
//! are always read as f32 and cast on the device; editing math stays in f32/f64.

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
