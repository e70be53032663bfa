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
    #[serde(default)]
    d_inner: Option<usize>,
}

/// What picks a preset: the family and the sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetKey<'a> {
    /// `gpt2`, or `llama` for the Llama family (Mistral and Qwen2 included).
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
            && m.model_type.as_deref().unwrap_or("gpt2") == key.family
            && m.d_inner.is_none_or(|f| f == key.d_inner)
            && let Some(v) = fam.algos.get(algorithm.name())
        {
            return serde_json::from_value(v.clone()).expect("family preset is valid");
        }
    }
    let r = &p.relative[algorithm.name()];
    let depth = &p.relative_depth[if key.family == "llama" { "llama" } else { "gpt2" }];
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
