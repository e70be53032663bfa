//! Values (PAPER.md "Values", eq. 12): the vector the edited layer must output at the subject's
//! last token so that the model says the new target.
//!
//! δ (initially 0) is added at the subject's last token of every prompt — at the MLP output of
//! layer L (ROME) or the residual stream after layer L (MEMIT/EMMET) — and optimised with Adam on
//!
//!   mean NLL of the target tokens over the templated prompts
//!   + kl_factor · KL(p₀ ‖ p_δ) of the next-token distribution at the subject of "{subject} is a"
//!   + v_weight_decay · ‖δ‖ / ‖v_init‖²
//!
//! (the KL direction is the reference code's `F.kl_div(log p_δ, log p₀, log_target=True)`), stopping
//! early when the loss drops below 5e-2 and clamping ‖δ‖ ≤ clamp_norm_factor · ‖v_init‖ after each
//! step. The result is `v = v_init + δ`. Runs on whatever device the model lives on, with burn's
//! autodiff (the model's weights stay plain tensors and act as constants).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use super::prompts::{SubjectPrompt, gather_positions, padded_batch, subject_prompt};
use super::request::EditRequest;
use super::templates::ContextTemplates;
use crate::error::{EngineError, Result};
use crate::model::{Gpt2, Hooks, Site};
use crate::tokenizer::Gpt2Tokenizer;

/// Hyper-parameters of the value optimisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueHparams {
    /// Optimisation steps (`v_num_grad_steps`).
    pub steps: usize,
    /// Adam learning rate (`v_lr`).
    pub lr: f64,
    /// Weight of ‖δ‖/‖v_init‖² (`v_weight_decay`).
    pub weight_decay: f64,
    /// Weight of the KL term (`kl_factor`).
    pub kl_factor: f64,
    /// ‖δ‖ ≤ this · ‖v_init‖ (`clamp_norm_factor`).
    pub clamp_norm_factor: f64,
}

/// Loss terms of one optimisation step (for progress bars and the web page's loss curve).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLoss {
    /// Step index.
    pub step: usize,
    /// Mean NLL of the target tokens.
    pub nll: f32,
    /// KL term before weighting.
    pub kl: f32,
    /// Weight-decay term (weighted).
    pub weight_decay: f32,
    /// Total loss.
    pub total: f32,
}

/// The optimised value of one request.
#[derive(Debug, Clone)]
pub struct Value {
    /// `v_init`: the activation before editing, `[d]`.
    pub v_init: Tensor<1>,
    /// `v = v_init + δ`, `[d]`.
    pub v: Tensor<1>,
    /// Loss per step.
    pub losses: Vec<StepLoss>,
}

/// Loss below which optimisation stops early (reference code).
pub const EARLY_STOP: f32 = 5e-2;

/// Tokens of the target with a forced leading space.
pub fn target_ids(tokenizer: &Gpt2Tokenizer, request: &EditRequest) -> Result<Vec<u32>> {
    let ids = tokenizer.encode(&format!(" {}", request.target_new.trim_start()))?;
    if ids.is_empty() {
        return Err(EngineError::Request(format!(
            "target {:?} tokenizes to nothing",
            request.target_new
        )));
    }
    Ok(ids)
}

/// Optimises the value of `request` at `(layer, site)`; `on_step` sees each step's loss.
#[allow(clippy::too_many_arguments)]
pub fn compute_value(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    request: &EditRequest,
    templates: &ContextTemplates,
    layer: usize,
    site: Site,
    hp: &ValueHparams,
    mut on_step: impl FnMut(&StepLoss),
) -> Result<Value> {
    if layer >= model.n_layer() {
        return Err(EngineError::Input(format!(
            "layer {layer} does not exist (the model has {} layers)",
            model.n_layer()
        )));
    }
    let device = model.device();
    let target = target_ids(tokenizer, request)?;
    let t_len = target.len();

    // Rewriting prompts (template ∘ prompt, then the target minus its last token) and one KL prompt.
    let mut prompts: Vec<SubjectPrompt> = Vec::new();
    let mut prompt_lens = Vec::new();
    for t in templates.all() {
        let mut p = subject_prompt(tokenizer, &t.replace("{}", &request.prompt), &request.subject)?;
        prompt_lens.push(p.ids.len());
        p.ids.extend_from_slice(&target[..t_len - 1]);
        prompts.push(p);
    }
    prompts.push(subject_prompt(tokenizer, "{} is a", &request.subject)?);
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    if longest > model.n_positions() {
        return Err(EngineError::Input(format!(
            "a templated prompt has {longest} tokens, more than the model's context {}",
            model.n_positions()
        )));
    }
    let seqs: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let tokens = padded_batch(&seqs, &device);
    let [batch, seq] = tokens.dims();
    let subject_pos: Vec<usize> = prompts.iter().map(|p| p.subject_last).collect();

    // Where δ goes: one position per prompt.
    let mut mask = vec![0f32; batch * seq];
    for (b, &p) in subject_pos.iter().enumerate() {
        mask[b * seq + p] = 1.0;
    }
    let mask = Tensor::<3>::from_data(TensorData::new(mask, [batch, seq, 1]), &device);

    // Positions scored: the target tokens of each rewriting prompt, then the KL position.
    let mut rows = Vec::new();
    let mut cols = Vec::new();
    for (b, &len) in prompt_lens.iter().enumerate() {
        for (j, &tok) in target.iter().enumerate() {
            rows.push((b * seq + len - 1 + j) as i64);
            cols.push(tok as i64);
        }
    }
    let n_scored = rows.len();
    rows.push(((batch - 1) * seq + subject_pos[batch - 1]) as i64);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n_scored + 1]), &device);
    let cols = Tensor::<2, Int>::from_data(TensorData::new(cols, [n_scored, 1]), &device);

    // Unedited pass: v_init (the bare prompt's subject) and the KL reference distribution.
    let probe = Hooks {
        probes: vec![(layer, site)],
        ..Default::default()
    };
    let (hidden, probes) = model.forward_final_hidden(tokens.clone(), &probe);
    let width = hidden.dims()[2];
    let at_subject = gather_positions(probes.into_iter().next().expect("one probe"), &subject_pos);
    let v_init = at_subject.narrow(0, 0, 1).reshape([width]);
    let kl_hidden = hidden
        .reshape([batch * seq, width])
        .select(0, rows.clone().narrow(0, n_scored, 1));
    let log_p0 = log_softmax(
        model
            .lm_head(kl_hidden.unsqueeze_dim(0))
            .reshape([1, model.vocab_size()]),
        1,
    );
    let p0 = log_p0.clone().exp();

    let init_norm = v_init.clone().powi_scalar(2).sum().into_scalar::<f64>().sqrt();
    if !(init_norm > 0.0 && init_norm.is_finite()) {
        return Err(EngineError::Numerical(format!(
            "the activation at layer {layer} has norm {init_norm}: cannot scale δ"
        )));
    }
    let max_norm = hp.clamp_norm_factor * init_norm;
    let ad = device.clone().autodiff();
    let mut delta = Tensor::<1>::zeros([width], &ad).require_grad();
    let (mut m, mut v) = (
        Tensor::<1>::zeros([width], &device),
        Tensor::<1>::zeros([width], &device),
    );
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut losses = Vec::with_capacity(hp.steps);
    for step in 0..hp.steps {
        let edit = mask.clone() * delta.clone().reshape([1, 1, width]);
        let hooks = Hooks::default().with_edit(layer, site, edit);
        let (hidden, _) = model.forward_final_hidden(tokens.clone(), &hooks);
        let picked = hidden.reshape([batch * seq, width]).select(0, rows.clone()); // [N+1, d]
        let log_probs = log_softmax(model.lm_head(picked.unsqueeze_dim(0)).squeeze_dim::<2>(0), 1);
        let target_lp = log_probs.clone().narrow(0, 0, n_scored).gather(1, cols.clone()); // [N, 1]
        // Mean per-token NLL per prompt, then mean over prompts = sum / (T · prompts).
        let nll = target_lp.sum().neg() / (n_scored as f64);
        let log_pd = log_probs.narrow(0, n_scored, 1);
        let kl = (p0.clone() * (log_p0.clone() - log_pd)).sum();
        // ‖δ‖ with a 1e-30 floor under the root: the gradient at δ = 0 is then 0 (PyTorch's norm
        // subgradient) instead of 0·∞ = NaN.
        let wd = (delta.clone().powi_scalar(2).sum() + 1e-30).sqrt() * (hp.weight_decay / (init_norm * init_norm));
        let loss = nll.clone() + kl.clone() * hp.kl_factor + wd.clone();

        let scalars = Tensor::cat(vec![nll, kl, wd, loss.clone()], 0)
            .without_autodiff()
            .into_data()
            .iter::<f32>()
            .collect::<Vec<_>>();
        let record = StepLoss {
            step,
            nll: scalars[0],
            kl: scalars[1],
            weight_decay: scalars[2],
            total: scalars[3],
        };
        on_step(&record);
        losses.push(record);
        if !record.total.is_finite() {
            return Err(EngineError::Numerical(format!(
                "the value loss became {} at step {step}; lower v_lr",
                record.total
            )));
        }
        if record.total < EARLY_STOP || step + 1 == hp.steps {
            break;
        }
        let grads = loss.backward();
        let g = delta.grad(&grads).expect("δ requires grad").without_autodiff();
        // Adam (PyTorch defaults: β = (0.9, 0.999), ε = 1e-8).
        let t = (step + 1) as i32;
        m = m * beta1 + g.clone() * (1.0 - beta1);
        v = v * beta2 + g.powi_scalar(2) * (1.0 - beta2);
        let m_hat = m.clone() / (1.0 - beta1.powi(t));
        let v_hat = v.clone() / (1.0 - beta2.powi(t));
        let mut next = delta.without_autodiff() - m_hat / (v_hat.sqrt() + eps) * hp.lr;
        let norm = next.clone().powi_scalar(2).sum().into_scalar::<f64>().sqrt();
        if norm > max_norm {
            next = next * (max_norm / norm);
        }
        delta = next.autodiff().require_grad();
    }
    let v = v_init.clone() + delta.without_autodiff();
    Ok(Value { v_init, v, losses })
}
