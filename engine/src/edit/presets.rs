//! Hyper-parameter presets, kept as data in `presets/hparams.json`: the reference code's GPT2-XL
//! values (docs/MATH.md §10), and a relative-depth rule for other GPT-2 sizes.

use serde::Deserialize;
use std::collections::HashMap;

use super::algorithm::{Algorithm, EditHparams, default_l2, default_nullspace_threshold};
use super::values::ValueHparams;
use crate::model::Gpt2Config;

const PRESETS: &str = include_str!("../../presets/hparams.json");

#[derive(Deserialize)]
struct Presets {
    families: HashMap<String, Family>,
    relative: HashMap<String, Relative>,
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

/// The preset for `algorithm` on a model with `config`.
pub fn preset(algorithm: Algorithm, config: &Gpt2Config) -> EditHparams {
    preset_for(algorithm, config.n_layer, config.n_embd)
}

/// The preset for `algorithm` on a model of `n_layer` blocks of width `n_embd`.
pub fn preset_for(algorithm: Algorithm, n_layer: usize, n_embd: usize) -> EditHparams {
    let p: Presets = serde_json::from_str(PRESETS).expect("presets/hparams.json is valid");
    for fam in p.families.values() {
        if fam.matches.n_layer == n_layer
            && fam.matches.n_embd == n_embd
            && let Some(v) = fam.algos.get(algorithm.name())
        {
            return serde_json::from_value(v.clone()).expect("family preset is valid");
        }
    }
    let r = &p.relative[algorithm.name()];
    let last = (((n_layer.max(1) - 1) as f64) * 17.0 / 47.0).round() as usize;
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
