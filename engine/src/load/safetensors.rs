//! Reading safetensors files tensor by tensor. The header is parsed with the `safetensors`
//! crate's types; the byte ranges are validated here against the real file length, so a truncated
//! or overlapping file is refused before any tensor is read.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use super::source::ByteSource;
use crate::error::{EngineError, Result};

/// Largest header pmedit accepts (the safetensors crate's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// An opened safetensors file: its header, and the source to read tensors from.
pub struct SafetensorsFile<S> {
    source: S,
    data_start: u64,
    tensors: HashMap<String, TensorInfo>,
    metadata: HashMap<String, String>,
}

impl<S: ByteSource> SafetensorsFile<S> {
    /// Reads and validates the header of `source`.
    pub fn open(mut source: S) -> Result<Self> {
        let path = source.name().to_path_buf();
        let bad = |reason: String| EngineError::Safetensors {
            path: path.clone(),
            reason,
        };
        let file_len = source.len();
        if file_len < 8 {
            return Err(bad(format!(
                "file is {file_len} bytes, too short for a safetensors header"
            )));
        }
        let n = u64::from_le_bytes(source.read_at(0, 8)?.try_into().expect("8 bytes"));
        if n > MAX_HEADER {
            return Err(bad(format!("header length {n} exceeds the {MAX_HEADER}-byte limit")));
        }
        if 8 + n > file_len {
            return Err(bad(format!(
                "header length {n} is larger than the file ({file_len} bytes): truncated or not a safetensors file"
            )));
        }
        let header = source.read_at(8, n as usize)?;
        let header = std::str::from_utf8(&header).map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
        let meta: Metadata = serde_json::from_str(header).map_err(|e| bad(format!("header is not valid: {e}")))?;
        let tensors: HashMap<String, TensorInfo> = meta.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();

        // Every tensor's byte range must match its shape and dtype, ranges must not overlap, and
        // the data must fit in the file.
        let data_len = file_len - 8 - n;
        let mut ranges: Vec<(&str, usize, usize)> = Vec::with_capacity(tensors.len());
        for (name, info) in &tensors {
            let (s, e) = info.data_offsets;
            let numel = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let bytes = numel.and_then(|n| n.checked_mul(info.dtype.bitsize())).map(|b| b / 8);
            if e < s || Some(e - s) != bytes {
                return Err(bad(format!(
                    "tensor `{name}`: byte range {s}..{e} does not match shape {:?} of {:?}",
                    info.shape, info.dtype
                )));
            }
            if e as u64 > data_len {
                return Err(bad(format!(
                    "tensor `{name}` ends at byte {e} of the data but the file holds only {data_len}: the file is truncated"
                )));
            }
            ranges.push((name, s, e));
        }
        ranges.sort_by_key(|r| (r.1, r.2));
        for w in ranges.windows(2) {
            if w[1].1 < w[0].2 {
                return Err(bad(format!("tensors `{}` and `{}` overlap", w[0].0, w[1].0)));
            }
        }
        Ok(Self {
            source,
            data_start: 8 + n,
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// Names of all tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Header entry of `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Reads tensor `name` converted to f32, with its shape.
    pub fn read_f32(&mut self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.tensors.get(name).ok_or_else(|| EngineError::MissingTensor {
            name: name.into(),
            path: self.source.name().to_path_buf(),
        })?;
        let (s, e) = info.data_offsets;
        let (dtype, shape) = (info.dtype, info.shape.clone());
        let bytes = self.source.read_at(self.data_start + s as u64, e - s)?;
        Ok((to_f32(name, dtype, &bytes)?, shape))
    }
}

impl<S: ByteSource> SafetensorsFile<S> {
    /// Reads an F64 or F32 tensor as f64, with its shape.
    pub fn read_f64(&mut self, name: &str) -> Result<(Vec<f64>, Vec<usize>)> {
        let info = self.tensors.get(name).ok_or_else(|| EngineError::MissingTensor {
            name: name.into(),
            path: self.source.name().to_path_buf(),
        })?;
        if info.dtype != Dtype::F64 {
            let (v, shape) = self.read_f32(name)?;
            return Ok((v.into_iter().map(f64::from).collect(), shape));
        }
        let (s, e) = info.data_offsets;
        let shape = info.shape.clone();
        let bytes = self.source.read_at(self.data_start + s as u64, e - s)?;
        let values = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok((values, shape))
    }
}

/// Converts little-endian F32/F16/BF16 bytes to f32.
pub fn to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let pairs = || bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => pairs().map(|b| half::f16::from_bits(b).to_f32()).collect(),
        Dtype::BF16 => pairs().map(|b| half::bf16::from_bits(b).to_f32()).collect(),
        other => {
            return Err(EngineError::UnsupportedDtype {
                name: name.into(),
                dtype: format!("{other:?}"),
            });
        }
    })
}
