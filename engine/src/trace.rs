//! Causal tracing (docs/MATH.md §12, ROME's Figure 1): where in the network a fact is recalled.
//!
//! The subject's token embeddings are corrupted with Gaussian noise, which destroys the
//! prediction; then one state of the clean run at a time — a block's output, or the MLP or
//! attention outputs of a window of layers, at one token — is restored in the corrupted run, and
//! the probability of the clean prediction measures how much of the recall that state carries.
//! Restorations are batched: each row of a forward pass is one (restoration, noise sample) pair,
//! the noise of sample `n` is the same in every row that uses it, and clean states are written
//! back through [`Patch`]es.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::edit::prompts::subject_prompt;
use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Hooks, Patch, Site};
use crate::predict::token_tensor;
use crate::readback::{read_scalar, read_vec};
use crate::tokenizer::Gpt2Tokenizer;

/// Tracing settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TraceOptions {
    /// Noise samples averaged per restoration.
    pub samples: usize,
    /// Standard deviation of the noise; `None` is 3 × the standard deviation of the token
    /// embeddings' entries.
    pub noise: Option<f64>,
    /// Layers whose MLP (or attention) outputs are restored together, centred on the layer.
    pub window: usize,
    /// Seed of the noise.
    pub seed: u64,
    /// Rows per forward pass (restorations × samples).
    pub batch: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        Self {
            samples: 10,
            noise: None,
            window: 10,
            seed: 0,
            batch: 256,
        }
    }
}

/// What was restored, `[tokens][layers]` each: the probability of the clean prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The prompt's tokens as text.
    pub tokens: Vec<String>,
    /// The subject's tokens, `[first, last]` (inclusive indices into `tokens`).
    pub subject: [usize; 2],
    /// The clean run's most probable next token.
    pub answer_id: u32,
    /// Its text.
    pub answer: String,
    /// Its probability in the clean run.
    pub p_clean: f32,
    /// Its probability with the subject corrupted (mean over the samples).
    pub p_corrupt: f32,
    /// The noise's standard deviation.
    pub noise: f64,
    /// Samples per restoration.
    pub samples: usize,
    /// The MLP/attention window.
    pub window: usize,
    /// Block outputs restored, one (token, layer) at a time.
    pub hidden: Vec<Vec<f32>>,
    /// MLP outputs restored at one token over the window around each layer.
    pub mlp: Vec<Vec<f32>>,
    /// Attention outputs restored at one token over the window around each layer.
    pub attn: Vec<Vec<f32>>,
}

/// The three kinds of restoration, in the order of [`Trace`]'s tables.
const KINDS: [Site; 3] = [Site::BlockOut, Site::MlpOut, Site::AttnOut];

/// The layers restored together for `layer`: `window` of them centred on it (ROME's
/// `[l − ⌊w/2⌋, l + ⌈w/2⌉)`), clipped to the model.
pub fn window_layers(layer: usize, window: usize, n_layer: usize) -> std::ops::Range<usize> {
    let start = layer.saturating_sub(window / 2);
    let end = (layer + window.div_ceil(2)).min(n_layer).max(layer + 1);
    start..end
}

/// One restoration: the states of the listed `(layer, site)` pairs at `token`; an empty list
/// restores nothing (the corrupted baseline).
struct Job {
    token: usize,
    states: Vec<(usize, Site)>,
}

/// Traces `prompt` (which contains `subject`) through `model`; `progress(done, total)` is told
/// after each forward pass how many restorations are done.
pub async fn trace(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    prompt: &str,
    subject: &str,
    opts: &TraceOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Trace> {
    if opts.samples == 0 || opts.window == 0 || opts.batch == 0 {
        return Err(EngineError::Input(
            "causal tracing needs at least one sample, a window of one layer and one row per pass".into(),
        ));
    }
    if subject.trim().is_empty() || !prompt.contains(subject) {
        return Err(EngineError::Input(format!(
            "the prompt {prompt:?} does not contain the subject {subject:?}"
        )));
    }
    let sp = subject_prompt(tokenizer, &prompt.replacen(subject, "{}", 1), subject)?;
    let ids = sp.ids;
    if ids.len() > model.n_positions() {
        return Err(EngineError::Input(format!(
            "the prompt has {} tokens, more than the model's context of {}",
            ids.len(),
            model.n_positions()
        )));
    }
    let (n_tok, n_layer, d) = (ids.len(), model.n_layer(), model.d_model());
    let device = model.device();

    // The clean run: its prediction, and every state a restoration writes back.
    let probes: Vec<(usize, Site)> = (0..n_layer).flat_map(|l| KINDS.map(|s| (l, s))).collect();
    let (hidden, states) = model.forward_final_hidden(
        token_tensor(&ids, &device),
        &Hooks {
            probes: probes.clone(),
            ..Default::default()
        },
    );
    let last = model.lm_head(hidden.narrow(1, n_tok - 1, 1));
    let vocab = last.dims()[2];
    let probs = read_vec::<f32, 1, Float>(softmax(last.reshape([vocab]), 0)).await?;
    let answer_id = (0..probs.len())
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap_or(0) as u32;
    let clean: std::collections::HashMap<(usize, Site), Tensor<3>> = probes.into_iter().zip(states).collect();

    // The noise: one draw per sample over the subject's tokens, Gaussian from a seeded ChaCha8
    // stream (the same on every platform).
    let noise = match opts.noise {
        Some(x) if x.is_finite() && x >= 0.0 => x,
        Some(x) => return Err(EngineError::Input(format!("the noise level must be ≥ 0, not {x}"))),
        None => 3.0 * embedding_std(model).await?,
    };
    let (first, end) = (sp.subject_first, sp.subject_last + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut noise_data = vec![0f32; opts.samples * n_tok * d];
    for n in 0..opts.samples {
        for t in first..end {
            for v in &mut noise_data[(n * n_tok + t) * d..(n * n_tok + t + 1) * d] {
                *v = (gaussian(&mut rng) * noise) as f32;
            }
        }
    }
    let noise_t = Tensor::<3>::from_data(TensorData::new(noise_data, [opts.samples, n_tok, d]), &device);

    // Every restoration, then the baseline.
    let mut jobs = Vec::with_capacity(3 * n_tok * n_layer + 1);
    for site in KINDS {
        for token in 0..n_tok {
            for layer in 0..n_layer {
                let states = match site {
                    Site::BlockOut => vec![(layer, site)],
                    _ => window_layers(layer, opts.window, n_layer).map(|l| (l, site)).collect(),
                };
                jobs.push(Job { token, states });
            }
        }
    }
    jobs.push(Job {
        token: 0,
        states: Vec::new(),
    });

    let per_pass = (opts.batch / opts.samples).max(1);
    let mut p = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(per_pass) {
        p.extend(run_jobs(model, &ids, &clean, &noise_t, chunk, answer_id, opts.samples).await?);
        progress(p.len(), jobs.len());
    }
    let p_corrupt = p.pop().expect("the baseline");
    let table = |k: usize| -> Vec<Vec<f32>> {
        (0..n_tok)
            .map(|t| p[(k * n_tok + t) * n_layer..(k * n_tok + t + 1) * n_layer].to_vec())
            .collect()
    };
    Ok(Trace {
        tokens: ids.iter().map(|&i| tokenizer.token_text(i)).collect::<Result<_>>()?,
        subject: [first, end - 1],
        answer_id,
        answer: tokenizer.token_text(answer_id)?,
        p_clean: probs[answer_id as usize],
        p_corrupt,
        noise,
        samples: opts.samples,
        window: opts.window,
        hidden: table(0),
        mlp: table(1),
        attn: table(2),
    })
}

/// P(answer) of each job, averaged over the noise samples: one forward pass of
/// `jobs.len() × samples` rows.
async fn run_jobs(
    model: &impl EditableModel,
    ids: &[u32],
    clean: &std::collections::HashMap<(usize, Site), Tensor<3>>,
    noise: &Tensor<3>,
    jobs: &[Job],
    answer: u32,
    samples: usize,
) -> Result<Vec<f32>> {
    let device = model.device();
    let (rows, n_tok) = (jobs.len() * samples, ids.len());
    let tokens = token_tensor(ids, &device).repeat_dim(0, rows);
    let mut hooks = Hooks::default().with_edit(0, Site::Embed, noise.clone().repeat_dim(0, jobs.len()));
    // One patch per restored (layer, site), its mask selecting the rows and token of the jobs
    // that restore it.
    let mut masks: std::collections::BTreeMap<(usize, u8), Vec<f32>> = std::collections::BTreeMap::new();
    for (j, job) in jobs.iter().enumerate() {
        for &(layer, site) in &job.states {
            let mask = masks
                .entry((layer, site_order(site)))
                .or_insert_with(|| vec![0.0; rows * n_tok]);
            for n in 0..samples {
                mask[(j * samples + n) * n_tok + job.token] = 1.0;
            }
        }
    }
    for ((layer, order), mask) in masks {
        let site = KINDS[order as usize];
        hooks.patches.push(Patch {
            layer,
            site,
            mask: Tensor::<3>::from_data(TensorData::new(mask, [rows, n_tok, 1]), &device),
            values: clean[&(layer, site)].clone(),
        });
    }
    // The LM head on the last position only (all positions' logits would be rows × tokens × vocab).
    let (hidden, _) = model.forward_final_hidden(tokens, &hooks);
    let logits = model.lm_head(hidden.narrow(1, n_tok - 1, 1));
    let vocab = logits.dims()[2];
    let last = softmax(logits.reshape([rows, vocab]), 1);
    let p = read_vec::<f32, 1, Float>(last.narrow(1, answer as usize, 1).reshape([rows])).await?;
    Ok(p.chunks(samples)
        .map(|c| c.iter().sum::<f32>() / samples as f32)
        .collect())
}

fn site_order(site: Site) -> u8 {
    KINDS.iter().position(|&s| s == site).expect("a traced site") as u8
}

/// Standard deviation of the entries of the token embedding matrix.
async fn embedding_std(model: &impl EditableModel) -> Result<f64> {
    let e = model
        .embedding_rows(model.vocab_size())
        .cast(burn::tensor::FloatDType::F32);
    let mean = read_scalar::<f32, 1, Float>(e.clone().mean()).await? as f64;
    let sq = read_scalar::<f32, 1, Float>(e.powf_scalar(2.0).mean()).await? as f64;
    Ok((sq - mean * mean).max(0.0).sqrt())
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u = |rng: &mut ChaCha8Rng| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (a, b) = (u(rng), u(rng));
    (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_centred_and_clipped() {
        assert_eq!(window_layers(17, 10, 48), 12..22);
        assert_eq!(window_layers(0, 10, 48), 0..5);
        assert_eq!(window_layers(47, 10, 48), 42..48);
        assert_eq!(window_layers(3, 1, 8), 3..4);
        assert_eq!(window_layers(3, 3, 8), 2..5);
    }

    #[test]
    fn gaussian_draws_have_unit_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f64> = (0..20000).map(|_| gaussian(&mut rng)).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
