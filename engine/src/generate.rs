//! Text generation with a KV cache and seeded top-k sampling (ChaCha8, so a seed gives the same
//! text on every platform, the browser included).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::error::Result;
use crate::model::EditableModel;
use crate::predict::{encode_prompt, token_tensor};
use crate::tokenizer::Gpt2Tokenizer;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Number of tokens to add.
    pub max_new_tokens: usize,
    /// Sample among the `top_k` most likely tokens; 1 is greedy.
    pub top_k: usize,
    /// Softmax temperature.
    pub temperature: f32,
    /// RNG seed.
    pub seed: u64,
    /// Stop at `<|endoftext|>`.
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 40,
            top_k: 5,
            temperature: 1.0,
            seed: 0,
            stop_at_eos: true,
        }
    }
}

/// Draws one token among the `top_k` largest `logits` (on the host).
pub fn sample_top_k(logits: &[f32], top_k: usize, temperature: f32, rng: &mut ChaCha8Rng) -> u32 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let k = top_k.clamp(1, logits.len());
    order.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let t = temperature.max(1e-6);
    let max = logits[order[0]];
    let weights: Vec<f64> = order.iter().map(|&i| (((logits[i] - max) / t) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut acc = 0.0;
    for (w, &i) in weights.iter().zip(&order) {
        acc += w;
        if u < acc {
            return i as u32;
        }
    }
    order[k - 1] as u32
}

/// Token ids generated after `prompt_ids` (the prompt itself is not included).
pub async fn generate_ids<M: EditableModel>(
    model: &M,
    prompt_ids: &[u32],
    opts: &GenerateOptions,
    eos: Option<u32>,
) -> Result<Vec<u32>> {
    let device = model.device();
    let budget = model.n_positions().saturating_sub(prompt_ids.len());
    let steps = opts.max_new_tokens.min(budget);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut cache = M::Cache::default();
    let mut input = prompt_ids.to_vec();
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let logits = model.forward_cached(token_tensor(&input, &device), &mut cache);
        let [_, seq, vocab] = logits.dims();
        let last =
            crate::readback::read_vec::<f32, 1, burn::tensor::Float>(logits.narrow(1, seq - 1, 1).reshape([vocab]))
                .await?;
        let next = sample_top_k(&last, opts.top_k, opts.temperature, &mut rng);
        out.push(next);
        if opts.stop_at_eos && Some(next) == eos {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

/// Generates a continuation of `prompt` and returns only the new text, without special tokens
/// (the end-of-text token it stopped at).
pub async fn generate(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    prompt: &str,
    opts: &GenerateOptions,
) -> Result<String> {
    let ids = encode_prompt(model, tokenizer, prompt)?;
    let new = generate_ids(model, &ids, opts, tokenizer.eos_id()).await?;
    tokenizer.decode_continuation(&ids, &new)
}
