//! Next-token predictions: the top-k tokens after a prompt with their log-probabilities.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::EditableModel;
use crate::tokenizer::Gpt2Tokenizer;

/// One candidate next token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogProb {
    /// Token id.
    pub id: u32,
    /// The token's text (decoded, e.g. `" Paris"`).
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// Encodes `prompt` and checks it fits the model's context.
pub fn encode_prompt(model: &impl EditableModel, tokenizer: &Gpt2Tokenizer, prompt: &str) -> Result<Vec<u32>> {
    let ids = tokenizer.encode(prompt)?;
    if ids.is_empty() {
        return Err(EngineError::Input("the prompt is empty".into()));
    }
    if ids.len() > model.n_positions() {
        return Err(EngineError::Input(format!(
            "the prompt has {} tokens, more than the model's context of {}",
            ids.len(),
            model.n_positions()
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= model.vocab_size()) {
        return Err(EngineError::Input(format!(
            "token id {bad} is outside the model's vocabulary of {}",
            model.vocab_size()
        )));
    }
    Ok(ids)
}

/// A `[1, n]` token tensor.
pub fn token_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(data, [ids.len()]), device).unsqueeze_dim(0)
}

/// Log-probabilities of the next token after `ids`, `[vocab]`, on the host.
pub async fn next_token_logprobs(model: &impl EditableModel, ids: &[u32]) -> Result<Vec<f32>> {
    let device = model.device();
    let logits = model.forward(token_tensor(ids, &device));
    let [_, seq, vocab] = logits.dims();
    let last = logits.narrow(1, seq - 1, 1).reshape([vocab]);
    crate::readback::read_vec::<f32, 1, Float>(log_softmax(last.cast(burn::tensor::FloatDType::F32), 0)).await
}

/// The `k` most likely next tokens after `prompt`, most likely first.
pub async fn top_k(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    prompt: &str,
    k: usize,
) -> Result<Vec<TokenLogProb>> {
    let ids = encode_prompt(model, tokenizer, prompt)?;
    let logprobs = next_token_logprobs(model, &ids).await?;
    top_k_of(tokenizer, &logprobs, k)
}

/// The `k` largest entries of `logprobs` as tokens (ties broken by the lower id).
pub fn top_k_of(tokenizer: &Gpt2Tokenizer, logprobs: &[f32], k: usize) -> Result<Vec<TokenLogProb>> {
    let mut order: Vec<usize> = (0..logprobs.len()).collect();
    order.sort_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| {
            Ok(TokenLogProb {
                id: i as u32,
                token: tokenizer.token_text(i as u32)?,
                logprob: logprobs[i],
            })
        })
        .collect()
}
