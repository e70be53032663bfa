//! Hyper-parameter presets, kept as data in `presets/hparams.json`: the reference code's GPT2-XL
//! values (docs/MATH.md §10), the published Llama-3-8B values, and a relative-depth rule per family
//! for other sizes.

use serde::Deserialize;
use std::collections::HashMap;

use super::algorithm::{Algorithm, EditHparams, default_l2, default_nullspace_threshold};
use super::values::ValueHparams;
use crate::model::{Gpt2Config, ModelConfig};

const PRESETS: &str = include_str!("../../presets/hparams.json");

#[derive(Deserialize)]
struct Presets {
    families: HashMap<String, Family>,
    relative: HashMap<String, Relative>,
    relative_depth: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Family {
    #[serde(rename = "match")]
    matches: Match,
    #[serde(flatten)]
    algos: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Match {
    n_layer: usize,
    n_embd: usize,
    #[serde(default)]
    model_type: Option<String>,
    /// Several families of one shape (the test fixtures); instead of `model_type`.
    #[serde(default)]
    model_types: Option<Vec<String>>,
    #[serde(default)]
    d_inner: Option<usize>,
}

impl Match {
    fn family(&self, family: &str) -> bool {
        match &self.model_types {
            Some(types) => types.iter().any(|t| t == family),
            None => self.model_type.as_deref().unwrap_or("gpt2") == family,
        }
    }
}

/// What picks a preset: the family and the sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetKey<'a> {
    /// `gpt2`, `gptj`, or `llama` for the Llama family (Mistral and Qwen2 included).
    pub family: &'a str,
    /// Blocks.
    pub n_layer: usize,
    /// Width.
    pub n_embd: usize,
    /// Key dimension.
    pub d_inner: usize,
}

impl<'a> From<&'a Gpt2Config> for PresetKey<'a> {
    fn from(c: &'a Gpt2Config) -> Self {
        Self {
            family: "gpt2",
            n_layer: c.n_layer,
            n_embd: c.n_embd,
            d_inner: c.d_inner(),
        }
    }
}

impl<'a> From<&'a ModelConfig> for PresetKey<'a> {
    fn from(c: &'a ModelConfig) -> Self {
        Self {
            family: match c {
                ModelConfig::Gpt2(_) => "gpt2",
                ModelConfig::Gptj(_) => "gptj",
                ModelConfig::Llama(_) => "llama",
            },
            n_layer: c.n_layer(),
            n_embd: c.d_model(),
            d_inner: c.d_inner(),
        }
    }
}

#[derive(Deserialize)]
struct Relative {
    span: usize,
    lambda: f64,
    alpha: f64,
    #[serde(default = "default_l2")]
    l2: f64,
    #[serde(default = "default_nullspace_threshold")]
    nullspace_threshold: f64,
    value: ValueHparams,
}

/// The preset for `algorithm` on a model with `config` (a [`Gpt2Config`] or a [`ModelConfig`]).
pub fn preset<'a>(algorithm: Algorithm, config: impl Into<PresetKey<'a>>) -> EditHparams {
    preset_by(algorithm, config.into())
}

/// The preset for `algorithm` on a GPT-2 of `n_layer` blocks of width `n_embd`.
pub fn preset_for(algorithm: Algorithm, n_layer: usize, n_embd: usize) -> EditHparams {
    preset_by(
        algorithm,
        PresetKey {
            family: "gpt2",
            n_layer,
            n_embd,
            d_inner: 4 * n_embd,
        },
    )
}

/// The preset for `algorithm` on the model `key` describes.
pub fn preset_by(algorithm: Algorithm, key: PresetKey<'_>) -> EditHparams {
    let p: Presets = serde_json::from_str(PRESETS).expect("presets/hparams.json is valid");
    let (n_layer, n_embd) = (key.n_layer, key.n_embd);
    for fam in p.families.values() {
        let m = &fam.matches;
        if m.n_layer == n_layer
            && m.n_embd == n_embd
            && m.family(key.family)
            && m.d_inner.is_none_or(|f| f == key.d_inner)
            && let Some(v) = fam.algos.get(algorithm.name())
        {
            return serde_json::from_value(v.clone()).expect("family preset is valid");
        }
    }
    let r = &p.relative[algorithm.name()];
    let depth = &p.relative_depth[if p.relative_depth.contains_key(key.family) {
        key.family
    } else {
        "gpt2"
    }];
    let fraction = depth[if r.span == 1 { "single" } else { "last" }]
        .as_f64()
        .expect("relative_depth holds numbers");
    let last = (((n_layer.max(1) - 1) as f64) * fraction).round() as usize;
    let first = (last + 1).saturating_sub(r.span);
    EditHparams {
        layers: (first..=last).collect(),
        lambda: r.lambda,
        alpha: r.alpha,
        l2: r.l2,
        nullspace_threshold: r.nullspace_threshold,
        value: r.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(family: &str, n_layer: usize, n_embd: usize, d_inner: usize) -> PresetKey<'_> {
        PresetKey {
            family,
            n_layer,
            n_embd,
            d_inner,
        }
    }

    /// Llama-3-8B and Llama-2-7b get the published values, told apart from each other by d_inner
    /// and from a GPT-2 of the same size by family; other Llama sizes get the Llama depths.
    #[test]
    fn llama_presets_by_family_and_size() {
        for d_inner in [14336, 11008] {
            let rome = preset_by(Algorithm::Rome, key("llama", 32, 4096, d_inner));
            assert_eq!(
                (rome.layers.clone(), rome.value.steps, rome.value.lr),
                (vec![5], 25, 0.5)
            );
            let memit = preset_by(Algorithm::Memit, key("llama", 32, 4096, d_inner));
            assert_eq!((memit.layers.clone(), memit.lambda), (vec![4, 5, 6, 7, 8], 15000.0));
            assert_eq!(memit.value.clamp_norm_factor, 0.75);
            let alpha = preset_by(Algorithm::AlphaEdit, key("llama", 32, 4096, d_inner));
            assert_eq!((alpha.l2, alpha.nullspace_threshold), (10.0, 0.02));
        }
        // A 32 × 4096 GPT-2 is not a Llama: the GPT-2 rule, round(31 · 17/47) = 11.
        assert_eq!(
            preset_by(Algorithm::Rome, key("gpt2", 32, 4096, 16384)).layers,
            vec![11]
        );
        // Llama-3.2-1B (16 layers): single round(15 · 5/31) = 2, MEMIT ends at round(15 · 8/31) = 4.
        assert_eq!(preset_by(Algorithm::Rome, key("llama", 16, 2048, 8192)).layers, vec![2]);
        assert_eq!(
            preset_by(Algorithm::Memit, key("llama", 16, 2048, 8192)).layers,
            vec![0, 1, 2, 3, 4]
        );
        // GPT-J 6B: ROME at 5, MEMIT 3-8; a GPT-J of 12 layers: round(11 · 5/27) = 2.
        assert_eq!(preset_by(Algorithm::Rome, key("gptj", 28, 4096, 16384)).layers, vec![5]);
        assert_eq!(
            preset_by(Algorithm::Memit, key("gptj", 28, 4096, 16384)).layers,
            vec![3, 4, 5, 6, 7, 8]
        );
        assert_eq!(preset_by(Algorithm::Rome, key("gptj", 12, 768, 3072)).layers, vec![2]);
        // GPT2-XL keeps the reference values.
        assert_eq!(preset_for(Algorithm::Rome, 48, 1600).layers, vec![17]);
    }
}
