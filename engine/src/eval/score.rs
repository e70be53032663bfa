//! Batched teacher-forced scoring: the mean per-token NLL of " target" after a prompt (docs/MATH.md
//! §9), and the argmax tokens the model predicts for it (zsRE accuracy). Many
//! (prompt, target) pairs share one right-padded forward pass; only the scored positions go
//! through the LM head.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::edit::prompts::padded_batch;
use crate::error::Result;
use crate::model::EditableModel;
use crate::predict::encode_prompt;
use crate::readback::read_vec;
use crate::tokenizer::Gpt2Tokenizer;

/// Score of one (prompt, target) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetScore {
    /// Mean per-token NLL of the target tokens (natural log).
    pub nll: f64,
    /// The target's token ids.
    pub target: Vec<u32>,
    /// The model's argmax at each target position (teacher-forced).
    pub argmax: Vec<u32>,
}

/// Prompts per forward pass used by the CLI and the demo.
pub const SCORE_BATCH: usize = 64;

/// Scores every `(prompt, target)` pair, `batch` pairs per forward pass.
pub async fn score_targets(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    pairs: &[(String, String)],
    batch: usize,
) -> Result<Vec<TargetScore>> {
    let device = model.device();
    let mut out = Vec::with_capacity(pairs.len());
    let encoded: Vec<(Vec<u32>, Vec<u32>)> = pairs
        .iter()
        .map(|(p, t)| {
            let prompt = encode_prompt(model, tokenizer, p)?;
            let target = tokenizer.encode_continuation(&format!(" {}", t.trim_start()))?;
            if target.is_empty() {
                return Err(crate::EngineError::Input(format!(
                    "the target {t:?} tokenizes to nothing"
                )));
            }
            let all = prompt.len() + target.len() - 1;
            if all > model.n_positions() {
                return Err(crate::EngineError::Input(format!(
                    "{p:?} + {t:?} has {all} tokens, more than the model's context {}",
                    model.n_positions()
                )));
            }
            Ok((prompt, target))
        })
        .collect::<Result<_>>()?;
    for chunk in encoded.chunks(batch.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|(p, t)| p.iter().chain(&t[..t.len() - 1]).copied().collect())
            .collect();
        let tokens = padded_batch(&seqs, &device);
        let [_, seq] = tokens.dims();
        let (hidden, _) = model.forward_final_hidden(tokens, &Default::default());
        let width = hidden.dims()[2];
        let mut rows = Vec::new();
        let mut cols = Vec::new();
        for (b, (p, t)) in chunk.iter().enumerate() {
            for (j, &tok) in t.iter().enumerate() {
                rows.push((b * seq + p.len() - 1 + j) as i64);
                cols.push(tok as i64);
            }
        }
        let n = rows.len();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
        let cols = Tensor::<2, Int>::from_data(TensorData::new(cols, [n, 1]), &device);
        let picked = hidden.reshape([chunk.len() * seq, width]).select(0, rows);
        let log_probs = log_softmax(model.lm_head(picked.unsqueeze_dim(0)).squeeze_dim::<2>(0), 1);
        let lp = read_vec::<f32, 2, Float>(log_probs.clone().gather(1, cols)).await?;
        let am = read_vec::<i64, 2, Int>(log_probs.argmax(1)).await?;
        let mut at = 0;
        for (_, t) in chunk {
            let k = t.len();
            let nll = -lp[at..at + k].iter().map(|&x| x as f64).sum::<f64>() / k as f64;
            out.push(TargetScore {
                nll,
                target: t.clone(),
                argmax: am[at..at + k].iter().map(|&x| x as u32).collect(),
            });
            at += k;
        }
    }
    Ok(out)
}
