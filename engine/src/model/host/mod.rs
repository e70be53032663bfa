//! Fused kernels for the CPU backend.
//!
//! burn's `flex` evaluates each tensor op as its own pass over memory, mostly on one core:
//! GPT-2's `gelu_new` written with tensor ops is eight passes over the `[rows, 4d]` activations,
//! and attention is a dozen ops with head reshapes (copies) between them. On the CPU backend a
//! tensor's memory is the host's, and `flex` hands a uniquely owned contiguous tensor to
//! [`TensorData`] and back without copying, so here such a step runs as one pass on every core,
//! through the vectorised kernels of [`pmedit_simd`]. Tensors on other backends, on autodiff devices
//! (the value optimisation needs the gradient graph) or in other dtypes are not
//! [`on_cpu_f32`]: callers use tensor ops for them.

pub(crate) mod attention;

use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::linalg::matmul::on_cpu_f32;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

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
