//! Reading safetensors files tensor by tensor. The header is parsed here with 64-bit offsets and
//! sizes on every target: the `safetensors` crate reads them as `usize`, 32 bits in wasm, where a
//! file over 4 GiB (GPT2-XL in f32 is 6.2 GB) would be refused. The byte ranges are validated
//! against the real file length, so a truncated or overlapping file is refused before any tensor
//! is read. The crate's `Dtype` is still the dtype vocabulary.

use half::slice::HalfFloatSliceExt;
use std::collections::HashMap;

use safetensors::tensor::Dtype;
use serde::Deserialize;

use super::source::ByteSource;
use crate::error::{EngineError, Result};

/// Largest header pmedit accepts (the safetensors crate's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte range in the data section (after the header), 64-bit on every target.
    pub start: u64,
    /// End of that range (exclusive).
    pub end: u64,
}

impl TensorEntry {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A header entry as written (`data_offsets` as 64-bit integers).
#[derive(Deserialize)]
struct RawEntry {
    dtype: Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// An opened safetensors file: its header, and the source to read tensors from.
pub struct SafetensorsFile<S> {
    source: S,
    data_start: u64,
    tensors: HashMap<String, TensorEntry>,
    metadata: HashMap<String, String>,
}

/// A parsed header: the tensors, and the `__metadata__` map.
type Header = (HashMap<String, TensorEntry>, HashMap<String, String>);

/// Parses the JSON header (errors are the reason, without the file's name).
fn parse_header(header: &str) -> std::result::Result<Header, String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(header).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let mut tensors = HashMap::with_capacity(map.len());
    let mut metadata = HashMap::new();
    for (name, value) in map {
        if name == "__metadata__" {
            metadata =
                serde_json::from_value(value).map_err(|e| format!("`__metadata__` is not a map of strings: {e}"))?;
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let too_big = |what: &str| format!("tensor `{name}`: {what} does not fit this platform's address space");
        let shape = raw
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| too_big("a dimension")))
            .collect::<std::result::Result<Vec<usize>, String>>()?;
        let (start, end) = raw.data_offsets;
        let bytes = raw
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(raw.dtype.bitsize() as u64))
            .map(|b| b.div_ceil(8));
        if end < start || Some(end - start) != bytes {
            return Err(format!(
                "tensor `{name}`: byte range {start}..{end} does not match shape {:?} of {:?}",
                raw.shape, raw.dtype
            ));
        }
        // A single tensor must be addressable (the whole file need not be).
        usize::try_from(end - start).map_err(|_| too_big("its size"))?;
        tensors.insert(
            name,
            TensorEntry {
                dtype: raw.dtype,
                shape,
                start,
                end,
            },
        );
    }
    Ok((tensors, metadata))
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
        let (tensors, metadata) = parse_header(header).map_err(bad)?;

        // The data must fit in the file, and ranges must not overlap.
        let data_len = file_len - 8 - n;
        let mut ranges: Vec<(&str, u64, u64)> = Vec::with_capacity(tensors.len());
        for (name, t) in &tensors {
            if t.end > data_len {
                return Err(bad(format!(
                    "tensor `{name}` ends at byte {} of the data but the file holds only {data_len}: the file is truncated",
                    t.end
                )));
            }
            ranges.push((name, t.start, t.end));
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
            metadata,
        })
    }

    /// Names of all tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Header entry of `name`.
    pub fn info(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    fn entry(&self, name: &str) -> Result<TensorEntry> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.into(),
                path: self.source.name().to_path_buf(),
            })
    }

    /// Reads tensor `name` converted to f32, with its shape.
    pub fn read_f32(&mut self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self.entry(name)?;
        let values = self.read_f32_elements(name, 0, t.numel())?;
        Ok((values, t.shape))
    }

    /// Reads `count` elements of tensor `name` from element `first` on (row-major), converted to
    /// f32: a row range of a big matrix without reading the rest of it.
    pub fn read_f32_elements(&mut self, name: &str, first: usize, count: usize) -> Result<Vec<f32>> {
        let t = self.entry(name)?;
        if first.checked_add(count).is_none_or(|e| e > t.numel()) {
            return Err(EngineError::Safetensors {
                path: self.source.name().to_path_buf(),
                reason: format!(
                    "elements {first}..+{count} of `{name}` are past its {} elements",
                    t.numel()
                ),
            });
        }
        let width = t.dtype.bitsize() / 8;
        if width == 0 {
            return Err(EngineError::UnsupportedDtype {
                name: name.into(),
                dtype: format!("{:?}", t.dtype),
            });
        }
        let offset = self.data_start + t.start + (first * width) as u64;
        let bytes = self.source.read_at(offset, count * width)?;
        to_f32(name, t.dtype, &bytes)
    }
}

impl<S: ByteSource> SafetensorsFile<S> {
    /// Reads an F64 or F32 tensor as f64, with its shape.
    pub fn read_f64(&mut self, name: &str) -> Result<(Vec<f64>, Vec<usize>)> {
        let t = self.entry(name)?;
        if t.dtype != Dtype::F64 {
            let (v, shape) = self.read_f32(name)?;
            return Ok((v.into_iter().map(f64::from).collect(), shape));
        }
        let bytes = self
            .source
            .read_at(self.data_start + t.start, (t.end - t.start) as usize)?;
        let values = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok((values, t.shape))
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
        // Whole slices at a time: `half` converts those with F16C where the CPU has it (one
        // feature check per slice instead of one per value).
        Dtype::F16 => {
            let halves: Vec<half::f16> = pairs().map(half::f16::from_bits).collect();
            let mut out = vec![0.0f32; halves.len()];
            halves.convert_to_f32_slice(&mut out);
            out
        }
        Dtype::BF16 => {
            let halves: Vec<half::bf16> = pairs().map(half::bf16::from_bits).collect();
            let mut out = vec![0.0f32; halves.len()];
            halves.convert_to_f32_slice(&mut out);
            out
        }
        other => {
            return Err(EngineError::UnsupportedDtype {
                name: name.into(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// A 6.2 GB file (GPT2-XL in f32) of which only the header and the last tensor exist: reads
    /// past the header are served from the tail, anything else is zeros.
    struct Sparse {
        header: Vec<u8>,
        tail: Vec<u8>,
        len: u64,
        name: PathBuf,
    }

    impl ByteSource for Sparse {
        fn len(&self) -> u64 {
            self.len
        }
        fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
            let mut out = vec![0u8; len];
            for (i, b) in out.iter_mut().enumerate() {
                let at = offset + i as u64;
                if at < self.header.len() as u64 {
                    *b = self.header[at as usize];
                } else if at >= self.len - self.tail.len() as u64 {
                    *b = self.tail[(at - (self.len - self.tail.len() as u64)) as usize];
                }
            }
            Ok(out)
        }
        fn name(&self) -> &Path {
            &self.name
        }
    }

    /// Offsets past 4 GiB are read as 64-bit numbers on every target (the safetensors crate's
    /// `usize` offsets refuse such files in wasm32), and the tensor there reads back.
    #[test]
    fn offsets_past_4_gib_are_read_as_64_bit() {
        let big: u64 = 4_304_012_800; // GPT2-XL's f32 c_proj of a late block starts past here
        let tail: Vec<f32> = vec![1.5, -2.0, 0.25, 8.0];
        let json = format!(
            r#"{{"__metadata__":{{"format":"pt"}},"a":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{big}]}},"b":{{"dtype":"F32","shape":[4],"data_offsets":[{big},{end}]}}}}"#,
            n = big / 4,
            end = big + 16
        );
        let mut header = (json.len() as u64).to_le_bytes().to_vec();
        header.extend_from_slice(json.as_bytes());
        let len = header.len() as u64 + big + 16;
        let mut file = SafetensorsFile::open(Sparse {
            header,
            tail: tail.iter().flat_map(|x| x.to_le_bytes()).collect(),
            len,
            name: "xl/model.safetensors".into(),
        })
        .unwrap();
        let b = file.info("b").unwrap().clone();
        assert_eq!((b.start, b.end), (big, big + 16));
        assert_eq!(file.read_f32("b").unwrap(), (tail.clone(), vec![4]));
        assert_eq!(file.read_f32_elements("b", 2, 2).unwrap(), vec![0.25, 8.0]);
        assert!(file.read_f32_elements("b", 3, 2).is_err(), "past the tensor's end");
    }

    /// A range that does not match its shape is refused, whatever its size.
    #[test]
    fn ranges_must_match_shapes() {
        for (shape, range) in [
            ("[4]", "[0,15]"),
            ("[4]", "[16,0]"),
            ("[18446744073709551615,2]", "[0,8]"),
        ] {
            let json = format!(r#"{{"t":{{"dtype":"F32","shape":{shape},"data_offsets":{range}}}}}"#);
            assert!(parse_header(&json).is_err(), "{shape} {range}");
        }
        assert!(parse_header(r#"{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#).is_ok());
    }
}
