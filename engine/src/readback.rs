//! Reading tensors back to the host.
//!
//! WebGPU cannot block: a browser hands a mapped GPU buffer back only through its event loop, so
//! burn's synchronous reads panic there. Every read in the engine therefore goes through the
//! `async` functions here, and every engine function that reads a tensor is `async` too. Native
//! callers (the CLI, tests) drive them with [`block_on`]; the web worker awaits them.

use burn::prelude::*;
use burn::tensor::{Bool, Element};

use crate::error::{EngineError, Result};

fn device_error(e: impl std::fmt::Debug) -> EngineError {
    EngineError::Backend(format!("reading a tensor back from the device failed: {e:?}"))
}

/// The tensor's data on the host.
pub async fn read<const D: usize, K: burn::tensor::kind::Basic>(t: Tensor<D, K>) -> Result<TensorData> {
    t.into_data_async().await.map_err(device_error)
}

/// The tensor's values on the host as `E` (converted from the tensor's dtype).
pub async fn read_vec<E: Element, const D: usize, K: burn::tensor::kind::Basic>(t: Tensor<D, K>) -> Result<Vec<E>> {
    Ok(read(t).await?.iter::<E>().collect())
}

/// A one-element tensor's value as `E`.
pub async fn read_scalar<E: Element, const D: usize, K: burn::tensor::kind::Basic>(t: Tensor<D, K>) -> Result<E> {
    read_vec::<E, D, K>(t)
        .await?
        .first()
        .copied()
        .ok_or_else(|| EngineError::Backend("read an empty tensor where one value was expected".into()))
}

/// Whether any element of a boolean tensor is true.
pub async fn any<const D: usize>(t: Tensor<D, Bool>) -> Result<bool> {
    read_scalar::<bool, 1, Bool>(t.any()).await
}

/// Runs an engine future to completion on the calling thread (native only: a browser must await).
#[cfg(not(target_family = "wasm"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    burn::tensor::read_sync(future)
}
