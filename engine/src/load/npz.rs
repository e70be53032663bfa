//! Importing the authors' precomputed C0 statistics, so a GPT2-XL user can reuse them instead of
//! spending hours recomputing.
//!
//! Their running statistics (`SecondMoment` in the ROME code's `runningstats`) keep the **sum**
//! Σ k kᵀ over every token seen and the token count; `np.savez` writes that state as one `.npz`
//! per layer with the members `mom2.mom2` (the raw sum, `[n, n]`, float32), `mom2.count` (a 0-d
//! int64) and `constructor` strings. Their code takes C0 as `mom2 / count`, and so does this
//! reader: C0 is the *mean* E[k kᵀ]. `tests/fixtures/generate_authors_npz.py`
//! writes fixtures the way their code does.

use std::collections::HashMap;

use burn::prelude::*;

use crate::edit::stats::LayerStats;
use crate::error::{EngineError, Result};

/// A parsed `.npy` array: shape and values as f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values (C order).
    pub values: Vec<f64>,
}

fn bad(name: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::Input(format!("{name}: {why}"))
}

/// Parses a little-endian, C-ordered `.npy` of float32/float64/int64/int32.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(name, "not a .npy array (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(name, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| bad(name, "truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|e| bad(name, e))?;
    let field = |key: &str| -> Result<&str> {
        let i = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(name, format!("no '{key}' in header")))?;
        let rest = header[i + key.len() + 2..]
            .trim_start()
            .trim_start_matches(':')
            .trim_start();
        Ok(rest)
    };
    let descr = field("descr")?;
    let descr = descr.trim_start_matches('\'').split('\'').next().unwrap_or("");
    if field("fortran_order")?.starts_with("True") {
        return Err(bad(name, "Fortran-ordered arrays are not supported"));
    }
    let shape_text = field("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad(name, "malformed shape"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| bad(name, format!("shape: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(name, "shape overflows"))?;
    let data = &bytes[start + header_len..];
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        other => {
            return Err(bad(
                name,
                format!("dtype {other:?} is not supported (float32/64, int32/64)"),
            ));
        }
    };
    if numel.checked_mul(width) != Some(data.len()) {
        return Err(bad(
            name,
            format!("{} data bytes for shape {shape:?} of {descr}", data.len()),
        ));
    }
    let values = match descr {
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")) as f64)
            .collect(),
        "<i4" => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as f64)
            .collect(),
        "<f8" => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
        _ => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f64)
            .collect(),
    };
    Ok(NpyArray { shape, values })
}

fn u16_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(i..i.checked_add(2)?)?.try_into().ok()?) as u64)
}
fn u32_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(i..i.checked_add(4)?)?.try_into().ok()?) as u64)
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i.checked_add(8)?)?.try_into().ok()?))
}

/// The members of a `.npz` (a zip archive) as `name → bytes`, read through the central directory.
///
/// numpy's `np.savez` (which the authors used) writes uncompressed (stored) members with zip64
/// local headers; that is what this reads. A `zip` crate dependency would turn on features of a
/// crate burn also compiles and rebuild burn, so this small reader stands in; compressed
/// members (`np.savez_compressed`) are refused with a message.
pub fn npz_members<'a>(bytes: &'a [u8], name: &str) -> Result<HashMap<String, &'a [u8]>> {
    let corrupt = |why: &str| bad(name, format!("not a readable .npz (zip) file: {why}"));
    // End of central directory: the last "PK\x05\x06" within the final 64 KiB + 22 bytes.
    let tail = bytes.len().saturating_sub(65_557);
    let eocd = (tail..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| corrupt("no end-of-central-directory record"))?;
    let mut entries = u16_at(bytes, eocd + 10).ok_or_else(|| corrupt("short EOCD"))?;
    let mut cd = u32_at(bytes, eocd + 16).ok_or_else(|| corrupt("short EOCD"))?;
    if cd == 0xFFFF_FFFF || entries == 0xFFFF {
        // zip64: locator just before the EOCD points at the zip64 EOCD record.
        let loc = eocd.checked_sub(20).ok_or_else(|| corrupt("no zip64 locator"))?;
        let rec = u64_at(bytes, loc + 8).ok_or_else(|| corrupt("short zip64 locator"))? as usize;
        if rec > bytes.len() {
            return Err(corrupt(
                "zip64 end-of-central-directory offset past the end of the file",
            ));
        }
        entries = u64_at(bytes, rec + 32).ok_or_else(|| corrupt("short zip64 EOCD"))?;
        cd = u64_at(bytes, rec + 48).ok_or_else(|| corrupt("short zip64 EOCD"))?;
    }
    // Every offset read from the file must point into it (this also keeps the sums below from
    // overflowing).
    if cd > bytes.len() as u64 {
        return Err(corrupt("central directory offset past the end of the file"));
    }
    let mut out = HashMap::new();
    let mut p = cd as usize;
    for _ in 0..entries {
        if bytes.get(p..p + 4) != Some(&[0x50, 0x4b, 0x01, 0x02]) {
            return Err(corrupt("bad central directory entry"));
        }
        let field = |o: usize| u32_at(bytes, p + o).ok_or_else(|| corrupt("short central directory"));
        let method = u16_at(bytes, p + 10).ok_or_else(|| corrupt("short central directory"))?;
        let (mut size, mut offset) = (field(20)?, field(42)?);
        let uncompressed = field(24)?;
        let n = u16_at(bytes, p + 28).unwrap_or(0) as usize;
        let m = u16_at(bytes, p + 30).unwrap_or(0) as usize;
        let k = u16_at(bytes, p + 32).unwrap_or(0) as usize;
        let member = std::str::from_utf8(bytes.get(p + 46..p + 46 + n).ok_or_else(|| corrupt("short name"))?)
            .map_err(|_| corrupt("member name is not UTF-8"))?;
        // zip64 extra field (id 1): the 64-bit values of the fields that read 0xFFFFFFFF, in order.
        let extra = bytes
            .get(p + 46 + n..p + 46 + n + m)
            .ok_or_else(|| corrupt("short extra field"))?;
        let mut e = 0;
        while e + 4 <= extra.len() {
            let (id, len) = (
                u16_at(extra, e).unwrap_or(0),
                u16_at(extra, e + 2).unwrap_or(0) as usize,
            );
            if id == 1 {
                let mut q = e + 4;
                let mut next = || {
                    let v = u64_at(extra, q);
                    q += 8;
                    v
                };
                if uncompressed == 0xFFFF_FFFF {
                    next();
                }
                if size == 0xFFFF_FFFF {
                    size = next().ok_or_else(|| corrupt("short zip64 field"))?;
                }
                if offset == 0xFFFF_FFFF {
                    offset = next().ok_or_else(|| corrupt("short zip64 field"))?;
                }
            }
            e += 4 + len;
        }
        if method != 0 {
            return Err(bad(
                name,
                format!("member {member} is compressed (method {method}); re-save it with np.savez"),
            ));
        }
        if offset > bytes.len() as u64 {
            return Err(corrupt("member offset past the end of the file"));
        }
        let lh = offset as usize;
        if bytes.get(lh..lh + 4) != Some(&[0x50, 0x4b, 0x03, 0x04]) {
            return Err(corrupt("bad local header"));
        }
        let start =
            lh + 30 + u16_at(bytes, lh + 26).unwrap_or(0) as usize + u16_at(bytes, lh + 28).unwrap_or(0) as usize;
        let data = start
            .checked_add(size as usize)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| corrupt("member data runs past the end of the file"))?;
        out.insert(member.to_string(), data);
        p += 46 + n + m + k;
    }
    Ok(out)
}

/// Imports one layer's statistics from the authors' `.npz` bytes onto `device`.
pub fn import_npz(bytes: &[u8], name: &str, layer: usize, device: &Device) -> Result<LayerStats> {
    let members = npz_members(bytes, name)?;
    let array = |key: &str| -> Result<NpyArray> {
        let data = members.get(&format!("{key}.npy")).ok_or_else(|| {
            bad(
                name,
                format!("no `{key}` array (is this one of the authors' layer stats?)"),
            )
        })?;
        parse_npy(data, &format!("{name}:{key}"))
    };
    let mom2 = array("mom2.mom2")?;
    let count = array("mom2.count")?;
    if mom2.shape.len() != 2 || mom2.shape[0] != mom2.shape[1] {
        return Err(bad(
            name,
            format!("mom2.mom2 has shape {:?}, expected a square matrix", mom2.shape),
        ));
    }
    let count = count.values.first().copied().unwrap_or(0.0);
    if !(count.is_finite() && count >= 1.0) {
        return Err(bad(name, format!("mom2.count is {count}")));
    }
    if mom2.values.iter().any(|v| !v.is_finite()) {
        return Err(bad(name, "mom2.mom2 holds non-finite values"));
    }
    let n = mom2.shape[0];
    // `mom2.mom2` already is the running sum Σ k kᵀ: it is the sum pmedit keeps too.
    let sum = Tensor::<2>::from_data(
        TensorData::new(mom2.values.iter().map(|&v| v as f32).collect(), [n, n]),
        device,
    );
    Ok(LayerStats {
        layer,
        sum,
        count: count as u64,
    })
}

/// The layer an `.npz` statistics file holds, read from its name: the authors name them after
/// the edited module (`transformer.h.17.mlp.c_proj_float32_mom2_100000.npz`,
/// `model.layers.5.mlp.down_proj_…`), and `layer17.npz` / `l17.npz` work too.
pub fn layer_from_file_name(name: &str) -> Result<usize> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let after = |marker: &str| {
        file.find(marker).and_then(|i| {
            let digits: String = file[i + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<usize>().ok()
        })
    };
    let stem = file.strip_suffix(".npz").unwrap_or(file).to_ascii_lowercase();
    let named = stem
        .strip_prefix("layer")
        .or_else(|| stem.strip_prefix('l'))
        .and_then(|d| d.trim_start_matches(['_', '-']).parse::<usize>().ok());
    after(".h.").or_else(|| after("layers.")).or(named).ok_or_else(|| {
        bad(
            file,
            "cannot tell which layer these statistics are for; name the file like the authors' \
                 (transformer.h.17.mlp.c_proj_float32_mom2_100000.npz) or layer17.npz",
        )
    })
}
