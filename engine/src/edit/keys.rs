//! Keys (docs/MATH.md §4): the input of `mlp.c_proj` at the subject's last token, averaged
//! over context templates — per group, then across groups.

use burn::prelude::*;

use super::prompts::{activations_at, subject_prompt};
use super::request::EditRequest;
use super::templates::ContextTemplates;
use crate::error::Result;
use crate::model::{EditableModel, Site};
use crate::tokenizer::Gpt2Tokenizer;

/// Prompts per forward pass when computing keys.
pub const KEY_BATCH: usize = 64;

/// Keys of `requests` at `layer`, as columns: `[d_inner, E]`.
pub fn compute_keys(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    layer: usize,
    requests: &[EditRequest],
    templates: &ContextTemplates,
) -> Result<Tensor<2>> {
    // One prompt per (request, template), request-major.
    let mut prompts = Vec::with_capacity(requests.len() * templates.len());
    for r in requests {
        for t in templates.all() {
            prompts.push(subject_prompt(tokenizer, &t.replace("{}", &r.prompt), &r.subject)?);
        }
    }
    let acts = activations_at(model, &prompts, layer, Site::MlpKey, KEY_BATCH)?; // [E·T, n]
    let t = templates.len();
    let mut cols = Vec::with_capacity(requests.len());
    for e in 0..requests.len() {
        let mut start = e * t;
        let mut group_means = Vec::with_capacity(templates.groups.len());
        for g in &templates.groups {
            group_means.push(acts.clone().narrow(0, start, g.len()).mean_dim(0));
            start += g.len();
        }
        cols.push(Tensor::cat(group_means, 0).mean_dim(0)); // [1, n]
    }
    Ok(Tensor::cat(cols, 0).transpose())
}
