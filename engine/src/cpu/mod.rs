//! The CPU backend's fast paths, natively (in wasm, `absent.rs` stands in for this module and
//! every fast path declines; this is the engine's one `cfg` on the CPU backend).
//!
//! burn's `flex` evaluates each tensor op as its own pass over memory, mostly on one core:
//! GPT-2's `gelu_new` written with tensor ops is eight passes over the `[rows, 4d]` activations,
//! attention is a dozen ops with head reshapes (copies) between them, and immutable tensors make
//! a blocked Cholesky copy n² floats per block column. On the CPU backend a tensor's memory is the
//! host's, and `flex` hands a uniquely owned contiguous tensor to [`TensorData`] and back without
//! copying, so here such a step runs as one pass on every core: products through
//! [`pmedit_sgemm`], element-wise maps and attention through the vectorised kernels of
//! [`pmedit_simd`], the Cholesky factorisation in place.
//!
//! Each entry point takes the tensor it would compute on and declines (`None`, or the tensor
//! back) when it is not a plain f32 tensor on the CPU backend outside autodiff ([`on_cpu_f32`]):
//! on wgpu/WebGPU, on autodiff devices (the value optimisation needs the gradient graph) and in
//! other dtypes the callers ([`crate::linalg`], [`crate::model`]) use burn's tensor ops. The
//! matrix product goes further ([`product`]): it also takes half-precision weights and, with an
//! autodiff operation of its own, the value optimisation's tracked activations.

mod attention;
mod cholesky;
mod product;

pub(crate) use attention::causal as causal_attention;
pub(crate) use cholesky::{HostFactor, applies as cholesky_applies};
pub(crate) use product::product;

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Whether `t` is a plain f32 tensor on the CPU backend outside autodiff: what the host paths
/// take.
pub(crate) fn on_cpu_f32<const D: usize>(t: &Tensor<D>) -> bool {
    let device = t.device();
    device == Device::flex() && !device.is_autodiff() && t.dtype() == burn::tensor::DType::F32
}

/// The flex primitive behind `t`, when [`on_cpu_f32`] holds (a cheap handle: the buffer is
/// shared, not copied).
pub(crate) fn flex<const D: usize>(t: &Tensor<D>) -> Option<burn_flex::FlexTensor> {
    if !on_cpu_f32(t) {
        return None;
    }
    t.clone().try_into_primitive::<burn_flex::Flex>().ok()
}

/// A CPU-backend tensor of shape `dims` owning `values` (row-major; not copied).
pub(crate) fn from_host<const D: usize>(values: Vec<f32>, dims: [usize; D]) -> Tensor<D> {
    use burn::tensor::{Bytes, DType, Shape};
    debug_assert_eq!(values.len(), dims.iter().product::<usize>());
    let layout = burn_flex::Layout::contiguous(Shape::from(dims.to_vec()));
    Tensor::from_primitive::<burn_flex::Flex>(burn_flex::FlexTensor::new(
        Bytes::from_elems(values),
        layout,
        DType::F32,
    ))
}

/// GPT-2's `gelu_new` of `x` in one fused, vectorised pass (`pmedit_simd::gelu_new`) when it is
/// [`on_cpu_f32`], else `tensor_ops(x)`.
pub(crate) fn gelu_new<const D: usize>(x: Tensor<D>, tensor_ops: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    if on_cpu_f32(&x) {
        map_f32(x, pmedit_simd::gelu_new)
    } else {
        tensor_ops(x)
    }
}

/// `x` (for which [`on_cpu_f32`] holds) with `f` applied in place to its host memory, one pass
/// split in slices over every core.
pub(crate) fn map_f32<const D: usize>(x: Tensor<D>, f: impl Fn(&mut [f32]) + Sync) -> Tensor<D> {
    debug_assert!(on_cpu_f32(&x), "map_f32 on a tensor it does not handle");
    let device = x.device();
    let mut data = x.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(values) => values.par_chunks_mut(CHUNK).for_each(&f),
        Err(e) => unreachable!("an f32 tensor's data is f32: {e:?}"),
    }
    Tensor::from_data(data, (&device, DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_cpu_f32_tensors_and_returns_others() {
        let device = Device::flex();
        let x = Tensor::<2>::from_floats([[1.0, -2.0], [3.0, 0.5]], &device);
        assert!(on_cpu_f32(&x));
        let y = map_f32(x, |s| s.iter_mut().for_each(|v| *v = *v * *v + 1.0));
        assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), vec![2.0, 5.0, 10.0, 1.25]);
        // Large enough for several parallel chunks, and a view (not uniquely owned) stays valid.
        let big = Tensor::<1, Int>::arange(0..100_000, &device).float();
        let keep = big.clone();
        let doubled = map_f32(big, |s| s.iter_mut().for_each(|v| *v *= 2.0))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(doubled.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32));
        assert_eq!(keep.into_data().try_to_vec::<f32>().unwrap()[99_999], 99_999.0);
        // Not for autodiff or f64 tensors.
        let tracked = Tensor::<1>::from_floats([1.0], &device.clone().autodiff());
        assert!(!on_cpu_f32(&tracked));
        let wide = Tensor::<1>::from_data(TensorData::new(vec![1.0f64], [1]), (&device, DType::F64));
        assert!(!on_cpu_f32(&wide));
    }
}
