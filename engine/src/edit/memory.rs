//! How much memory the value optimisation needs, so a batch that will not fit is split into
//! smaller groups — or, when not even one request fits, refused up front with the estimate and
//! the limit instead of failing half-way (or taking the machine down) with an allocation error.

use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Gpt2Config};

/// The sizes the estimate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Blocks.
    pub n_layer: usize,
    /// Width.
    pub n_embd: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Vocabulary.
    pub vocab: usize,
}

impl From<&Gpt2Config> for ModelShape {
    fn from(c: &Gpt2Config) -> Self {
        Self {
            n_layer: c.n_layer,
            n_embd: c.n_embd,
            n_head: c.n_head,
            vocab: c.vocab_size,
        }
    }
}

impl ModelShape {
    /// The sizes of `model`.
    pub fn of(model: &impl EditableModel) -> Self {
        Self {
            n_layer: model.n_layer(),
            n_embd: model.d_model(),
            n_head: model.n_head(),
            vocab: model.vocab_size(),
        }
    }
}

/// Estimated bytes per padded prompt position of one value-optimisation group (f32): activations
/// the backward pass keeps for every block after `layer` (≈ 16·d floats of LayerNorm, attention
/// and MLP tensors, plus 2·heads·seq attention weights, doubled for the gradients) and the LM
/// head's logits, log-softmax and gradient at the position (3·vocab).
pub fn value_bytes_per_position(shape: ModelShape, layer: usize, seq: usize) -> u64 {
    let blocks = shape.n_layer.saturating_sub(layer + 1).max(1) as u64;
    let d = shape.n_embd as u64;
    let per_block = 16 * d + 2 * shape.n_head as u64 * seq as u64;
    4 * (2 * blocks * per_block + 3 * shape.vocab as u64)
}

/// The largest group (in padded positions, at most `wanted`) that fits in `budget` bytes for
/// prompts of up to `seq` tokens; `min_positions` is what the largest single request needs.
pub fn value_group_positions(
    shape: ModelShape,
    layer: usize,
    seq: usize,
    min_positions: usize,
    wanted: usize,
    budget: Option<u64>,
) -> Result<usize> {
    let Some(budget) = budget else {
        return Ok(wanted);
    };
    let per = value_bytes_per_position(shape, layer, seq).max(1);
    let fits = (budget / per) as usize;
    if fits < min_positions {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(EngineError::Resource(format!(
            "one request's value optimisation needs ≈ {:.2} GiB ({min_positions} prompt positions × {:.1} MiB) \
             but the memory budget is {:.2} GiB: use fewer or shorter context templates, edit a later layer, \
             or run where more memory is free",
            gib(per * min_positions as u64),
            per as f64 / (1u64 << 20) as f64,
            gib(budget)
        )));
    }
    Ok(wanted.min(fits).max(min_positions))
}

/// Memory the CPU can give right now: `MemAvailable` of /proc/meminfo (Linux), if readable; none
/// in a browser.
pub fn available_memory() -> Option<u64> {
    #[cfg(target_family = "wasm")]
    return None;
    #[cfg(not(target_family = "wasm"))]
    {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

/// The value optimisation's default budget for a model on `device`: 70 % of the memory free now
/// when tensors live in host memory (the CPU backend); none on a GPU, for which wgpu reports no
/// free-memory figure.
pub fn default_budget(device: &burn::prelude::Device) -> Option<u64> {
    if *device == burn::prelude::Device::flex() {
        available_memory().map(|b| b / 10 * 7)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xl() -> ModelShape {
        (&Gpt2Config::new(50257, 1024, 1600, 48, 25)).into()
    }

    #[test]
    fn gpt2_xl_estimate_by_hand() {
        // Layer 17 of 48: 30 blocks after it; d = 1600, 25 heads, 20-token prompts.
        let per = value_bytes_per_position(xl(), 17, 20);
        assert_eq!(per, 4 * (2 * 30 * (16 * 1600 + 2 * 25 * 20) + 3 * 50257));
        // ≈ 6.7 MiB per position, so the default 4096-position group needs ≈ 27 GiB.
        assert!((per as f64 / (1 << 20) as f64 - 6.66).abs() < 0.01, "{per}");
    }

    #[test]
    fn groups_shrink_to_the_budget_and_refuse_when_one_request_does_not_fit() {
        let c = xl();
        let per = value_bytes_per_position(c, 17, 20);
        assert_eq!(value_group_positions(c, 17, 20, 40, 4096, None).unwrap(), 4096);
        assert_eq!(
            value_group_positions(c, 17, 20, 40, 4096, Some(per * 1000)).unwrap(),
            1000
        );
        assert_eq!(
            value_group_positions(c, 17, 20, 40, 4096, Some(per * 100_000)).unwrap(),
            4096
        );
        let e = value_group_positions(c, 17, 20, 40, 4096, Some(per * 39)).unwrap_err();
        assert_eq!(e.kind(), "resource");
        assert!(
            e.to_string().contains("40 prompt positions") && e.to_string().contains("GiB"),
            "{e}"
        );
    }
}
