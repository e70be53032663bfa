//! Turning (template, prompt, subject) into tokens plus the index of the subject's last token,
//! and running many such prompts through the model in right-padded batches.

use burn::prelude::*;

use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Hooks, Site};
use crate::tokenizer::Gpt2Tokenizer;

/// Tokens of one prompt and where its subject ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPrompt {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Index of the subject's first token in `ids`.
    pub subject_first: usize,
    /// Index of the subject's last token in `ids`.
    pub subject_last: usize,
}

/// Tokenizes `text` (which holds one `{}`) with `subject` in place of `{}`.
///
/// As in the reference code (docs/MATH.md §4), the prefix (trailing space stripped), `" " + subject`
/// and the suffix are tokenized separately, so the subject's last token is known exactly.
pub fn subject_prompt(tokenizer: &Gpt2Tokenizer, text: &str, subject: &str) -> Result<SubjectPrompt> {
    let (prefix, suffix) = text
        .split_once("{}")
        .ok_or_else(|| EngineError::Input(format!("{text:?} has no `{{}}` for the subject")))?;
    let prefix = prefix.trim_end();
    let mut ids = if prefix.is_empty() {
        Vec::new()
    } else {
        tokenizer.encode(prefix)?
    };
    let subject_text = if prefix.is_empty() {
        subject.to_string()
    } else {
        format!(" {}", subject.trim_start())
    };
    let subject_ids = if prefix.is_empty() {
        tokenizer.encode(&subject_text)?
    } else {
        tokenizer.encode_continuation(&subject_text)?
    };
    if subject_ids.is_empty() {
        return Err(EngineError::Input(format!(
            "the subject {subject:?} tokenizes to nothing"
        )));
    }
    let subject_first = ids.len() + usize::from(prefix.is_empty() && tokenizer.bos_id().is_some());
    ids.extend(&subject_ids);
    let subject_last = ids.len() - 1;
    if !suffix.is_empty() {
        ids.extend(tokenizer.encode_continuation(suffix)?);
    }
    Ok(SubjectPrompt {
        ids,
        subject_first,
        subject_last,
    })
}

/// Right-pads `seqs` into a `[batch, max_len]` tensor (pad id 0; positions after a sequence's
/// end never influence earlier ones under causal attention).
pub fn padded_batch(seqs: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let len = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut data = vec![0i64; seqs.len() * len];
    for (b, s) in seqs.iter().enumerate() {
        for (t, &id) in s.iter().enumerate() {
            data[b * len + t] = id as i64;
        }
    }
    Tensor::from_data(TensorData::new(data, [seqs.len(), len]), device)
}

/// Picks row `positions[b]` of each batch entry: `[batch, seq, k] → [batch, k]`.
pub fn gather_positions(x: Tensor<3>, positions: &[usize]) -> Tensor<2> {
    let [b, s, k] = x.dims();
    let flat: Vec<i64> = positions.iter().enumerate().map(|(i, &p)| (i * s + p) as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(flat, [b]), &x.device());
    x.reshape([b * s, k]).select(0, idx)
}

/// Activation at `(layer, site)` at one position per prompt, `[prompts, width]`, computed in
/// batches of `batch` prompts.
pub fn activations_at(
    model: &impl EditableModel,
    prompts: &[SubjectPrompt],
    layer: usize,
    site: Site,
    batch: usize,
) -> Result<Tensor<2>> {
    if layer >= model.n_layer() {
        return Err(EngineError::Input(format!(
            "layer {layer} does not exist (the model has {} layers)",
            model.n_layer()
        )));
    }
    let device = model.device();
    let mut parts = Vec::new();
    for chunk in prompts.chunks(batch.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|p| p.ids.clone()).collect();
        let pos: Vec<usize> = chunk.iter().map(|p| p.subject_last).collect();
        let out = model.forward_hooked(padded_batch(&seqs, &device), &Hooks::probe_only(vec![(layer, site)]));
        let act = out.probes.into_iter().next().expect("one probe");
        parts.push(gather_positions(act, &pos));
    }
    Ok(Tensor::cat(parts, 0))
}
