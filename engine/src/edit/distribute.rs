//! Edit distribution over layers (docs/MATH.md §3, eq. 6/7).
//!
//! For layers l₁ < … < L in order: recompute the keys at l on the current (partly edited) model,
//! take the residual of the target hidden state at the last layer L (the block output, where
//! MEMIT adds δ) divided by the number of layers left, solve that layer's PM problem and apply
//! Δˡ before going on. Any objective can be distributed — "ROME on 5 layers" and "MEMIT on one
//! layer" are both valid — because objective and distribution are independent choices.

use std::collections::HashMap;

use burn::prelude::*;

use super::keys::{KEY_BATCH, compute_keys};
use super::nullspace::NullSpace;
use super::objective::{Objective, Preservation, ensure_finite, solve_delta};
use super::prompts::{SubjectPrompt, activations_at, subject_prompt};
use super::request::EditRequest;
use super::templates::ContextTemplates;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Site};
use crate::readback::{read_scalar, read_vec};
use crate::tokenizer::Gpt2Tokenizer;

/// How a layer's Δ is solved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Solver {
    /// Eq. 3, one request at a time. `consistent_keys = false` is ROME (the bare-prompt key in the
    /// denominator and the residual), `true` is r-ROME (the averaged key k* in both).
    RankOne {
        /// r-ROME's fix.
        consistent_keys: bool,
    },
    /// MEMIT (eq. 5) or EMMET (eq. 9).
    Batch(Objective),
    /// AlphaEdit (docs/MATH.md eq. A2/A3) with ridge `l2`.
    NullSpace {
        /// μ.
        l2: f64,
    },
}

/// What a layer's solve preserves.
#[derive(Debug, Clone)]
pub enum Preserved {
    /// λ·C0 factored (ROME, r-ROME, MEMIT, EMMET); with the keys of earlier edits added when the
    /// plan carries them.
    Weighted(Box<Preservation>),
    /// C0's null space and the keys of earlier batches (AlphaEdit).
    NullSpace(Box<NullSpaceTerm>),
}

/// AlphaEdit's preservation term of one layer (docs/MATH.md eq. A1/A2).
#[derive(Debug, Clone)]
pub struct NullSpaceTerm {
    /// P = Û Ûᵀ.
    pub space: NullSpace,
    /// K_p K_pᵀ of the batches applied before, if any.
    pub earlier: Option<Tensor<2>>,
}

impl From<Preservation> for Preserved {
    fn from(p: Preservation) -> Self {
        Self::Weighted(Box::new(p))
    }
}

impl Preserved {
    fn weighted(&self, layer: usize) -> Result<&Preservation> {
        match self {
            Self::Weighted(p) => Ok(p),
            Self::NullSpace(..) => Err(EngineError::Input(format!(
                "layer {layer} has a null-space projector, but this solver needs λ·C0"
            ))),
        }
    }
}

/// The Δ applied to one layer.
#[derive(Debug, Clone)]
pub struct LayerDelta {
    /// The layer.
    pub layer: usize,
    /// Δᵀ `[d_inner, d]`, added to the edited matrix (GPT-2: `mlp.c_proj.weight`).
    pub delta: Tensor<2>,
    /// The keys the system was solved for, `[d_inner, E]` (the teaching view re-solves it).
    pub keys: Tensor<2>,
    /// Their residuals `[E, d]` (this layer's share of `V_E − W0 K_E`).
    pub residual: Tensor<2>,
}

/// Bare prompts (template "{}") of `requests`, for reading the current hidden state.
pub fn bare_prompts(tokenizer: &Gpt2Tokenizer, requests: &[EditRequest]) -> Result<Vec<SubjectPrompt>> {
    requests
        .iter()
        .map(|r| subject_prompt(tokenizer, &r.prompt, &r.subject))
        .collect()
}

/// Adds Δᵀ to the edited matrix of `layer`.
pub fn apply_delta(model: &mut impl EditableModel, layer: usize, delta: Tensor<2>) {
    model.add_to_edited_weight(layer, delta);
}

/// Writes the targets `z` (`[E, d]`, block output of the last layer at each request's bare
/// prompt) into `layers`, distributing the residual as in eq. 6/7. Returns the Δ of each layer.
#[allow(clippy::too_many_arguments)]
pub async fn distribute(
    model: &mut impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    requests: &[EditRequest],
    z: Tensor<2>,
    layers: &[usize],
    solver: Solver,
    key_templates: &ContextTemplates,
    stats: &HashMap<usize, Preserved>,
    mut on_layer: impl FnMut(usize),
) -> Result<Vec<LayerDelta>> {
    let last = *layers
        .last()
        .ok_or_else(|| EngineError::Input("no layer to edit".into()))?;
    if layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(EngineError::Input(format!(
            "layers {layers:?} must be strictly increasing"
        )));
    }
    let bare = bare_prompts(tokenizer, requests)?;
    let mut out = Vec::with_capacity(layers.len());
    for (i, &l) in layers.iter().enumerate() {
        on_layer(l);
        let pres = stats.get(&l).ok_or_else(|| {
            EngineError::Input(format!(
                "no C0 statistics for layer {l}: run `pmedit stats --layers {l}`"
            ))
        })?;
        let keys = compute_keys(model, tokenizer, l, requests, key_templates)?; // k*, [n, E]
        let current = activations_at(model, &bare, last, Site::BlockOut, KEY_BATCH)?;
        let mut residual = (z.clone() - current) / (layers.len() - i) as f64; // [E, d]
        let delta = match solver {
            Solver::Batch(objective) => {
                match solve_delta(pres.weighted(l)?, objective, keys.clone(), residual.clone()).await {
                    Ok(delta) => delta,
                    Err(e) => return Err(name_collisions(e, &keys, requests, l).await),
                }
            }
            Solver::NullSpace { l2 } => {
                let Preserved::NullSpace(term) = pres else {
                    return Err(EngineError::Input(format!(
                        "layer {l} has no null-space projector (AlphaEdit needs C0's eigenvectors)"
                    )));
                };
                match term
                    .space
                    .solve(keys.clone(), residual.clone(), term.earlier.as_ref(), l2)
                    .await
                {
                    Ok(delta) => delta,
                    Err(e) => return Err(name_collisions(e, &keys, requests, l).await),
                }
            }
            Solver::RankOne { consistent_keys } => {
                if requests.len() != 1 {
                    return Err(EngineError::Input("ROME edits one request at a time".into()));
                }
                let bare_key = compute_keys(model, tokenizer, l, requests, &ContextTemplates::bare())?;
                let k_den = if consistent_keys {
                    // r-ROME: the residual is taken against the output for k* (averaged outputs).
                    let w = model.edited_weight(l);
                    residual = residual + (bare_key - keys.clone()).transpose().matmul(w);
                    keys.clone()
                } else {
                    bare_key
                };
                rank_one(pres.weighted(l)?, keys.clone(), k_den, residual.clone()).await?
            }
        };
        apply_delta(model, l, delta.clone());
        out.push(LayerDelta {
            layer: l,
            delta,
            keys,
            residual,
        });
    }
    Ok(out)
}

/// Pairs of requests whose keys point the same way (cosine ≥ `min_cosine`), for keys `[n, E]`.
pub async fn colliding_keys(keys: &Tensor<2>, min_cosine: f64) -> Result<Vec<(usize, usize, f64)>> {
    let [n, e] = keys.dims();
    let data = read_vec::<f64, 2, Float>(keys.clone()).await?;
    let data = &data;
    let col = |j: usize| (0..n).map(move |i| data[i * e + j]);
    let norms: Vec<f64> = (0..e).map(|j| col(j).map(|x| x * x).sum::<f64>().sqrt()).collect();
    let mut out = Vec::new();
    for a in 0..e {
        for b in a + 1..e {
            let dot: f64 = col(a).zip(col(b)).map(|(x, y)| x * y).sum();
            let cos = dot / (norms[a] * norms[b]).max(f64::MIN_POSITIVE);
            if cos >= min_cosine {
                out.push((a, b, cos));
            }
        }
    }
    Ok(out)
}

/// A request left out of a batch because its key duplicates an earlier request's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// Index of the dropped request.
    pub index: usize,
    /// The earlier request with (nearly) the same key.
    pub duplicate_of: usize,
    /// The keys' cosine similarity.
    pub cosine: f64,
    /// The layer where they collide.
    pub layer: usize,
}

/// Drops every request whose key at one of `layers` points the same way (cosine ≥ 0.999) as an
/// earlier kept request's, so a MEMIT/EMMET batch stays solvable (one key cannot take two values).
/// Returns the kept requests and a report of the dropped ones.
pub async fn drop_dependent_keys(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    requests: &[EditRequest],
    layers: &[usize],
    templates: &ContextTemplates,
) -> Result<(Vec<EditRequest>, Vec<Dropped>)> {
    let mut dropped: Vec<Dropped> = Vec::new();
    for &layer in layers {
        let keys = compute_keys(model, tokenizer, layer, requests, templates)?;
        for (a, b, cosine) in colliding_keys(&keys, 0.999).await? {
            let gone = |i: usize| dropped.iter().any(|d| d.index == i);
            if !gone(a) && !gone(b) {
                dropped.push(Dropped {
                    index: b,
                    duplicate_of: a,
                    cosine,
                    layer,
                });
            }
        }
    }
    dropped.sort_by_key(|d| d.index);
    let kept = requests
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.iter().any(|d| d.index == *i))
        .map(|(_, r)| r.clone())
        .collect();
    Ok((kept, dropped))
}

/// Adds to a failed batch solve which requests collide (the same subject twice, typically).
async fn name_collisions(err: EngineError, keys: &Tensor<2>, requests: &[EditRequest], layer: usize) -> EngineError {
    let EngineError::Numerical(msg) = err else {
        return err;
    };
    let pairs = match colliding_keys(keys, 0.999).await {
        Ok(p) if !p.is_empty() => p,
        _ => return EngineError::Numerical(msg),
    };
    let names: Vec<String> = pairs
        .iter()
        .take(5)
        .map(|&(a, b, cos)| {
            let r = |i: usize| format!("{i} ({} → {})", requests[i].subject, requests[i].target_new);
            format!("requests {} and {} (cosine {cos:.6})", r(a), r(b))
        })
        .collect();
    EngineError::Numerical(format!(
        "{msg}. At layer {layer} these requests have (nearly) the same key, and one key cannot take two \
         values: {}{}; edit them in separate batches or drop one (`pmedit edit --drop-dependent`)",
        names.join(", "),
        if pairs.len() > 5 {
            format!(" and {} more pairs", pairs.len() - 5)
        } else {
            String::new()
        }
    ))
}

/// Eq. 3: Δᵀ = C⁻¹k* rᵀ / (k_denᵀ C⁻¹ k*), for `k_star`, `k_den`: `[n, 1]` and `r`: `[1, d]`.
pub async fn rank_one(pres: &Preservation, k_star: Tensor<2>, k_den: Tensor<2>, r: Tensor<2>) -> Result<Tensor<2>> {
    let q = pres.solve(k_star); // [n, 1]
    let denom = read_scalar::<f64, 2, Float>(k_den.transpose().matmul(q.clone())).await?;
    if !denom.is_finite() || denom.abs() <= 1e-30 {
        return Err(EngineError::Numerical(format!(
            "ROME's denominator kᵀC⁻¹k* is {denom:e}: the key is degenerate"
        )));
    }
    let delta = crate::linalg::matmul(q, r) / denom;
    ensure_finite(&delta, "Δ").await?;
    Ok(delta)
}
