//! Values (docs/MATH.md §5, eq. 12): the vector the edited layer must output at the subject's
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
//!
//! Two options for lifelong editing (docs/MATH.md §11): `stop_at_top1` also stops a request once
//! every target token is the most probable token at every rewriting prompt, and `norm_anchor`
//! rescales v to ‖v_init‖, so values cannot grow edit after edit.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use super::memory::value_group_positions;
use super::prompts::{SubjectPrompt, gather_positions, padded_batch, subject_prompt};
use super::request::EditRequest;
use super::templates::ContextTemplates;
use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Hooks, Site};
use crate::readback::read_vec;
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
    /// Bytes the value optimisation may use (groups of requests shrink to fit; a request that
    /// cannot fit alone is refused). `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
    /// Stop a request's optimisation as soon as every target token is the most probable one at
    /// every rewriting prompt ("most-probable early stopping").
    #[serde(default)]
    pub stop_at_top1: bool,
    /// Rescale each optimised value to the norm of `v_init` ("norm-anchored" values).
    #[serde(default)]
    pub norm_anchor: bool,
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
    let ids = tokenizer.encode_continuation(&format!(" {}", request.target_new.trim_start()))?;
    if ids.is_empty() {
        return Err(EngineError::Request(format!(
            "target {:?} tokenizes to nothing",
            request.target_new
        )));
    }
    Ok(ids)
}

/// Padded prompt tokens per optimisation batch: requests are optimised together until their
/// prompts fill this many positions (activations for the backward pass scale with it).
pub const VALUE_BATCH_TOKENS: usize = 4096;

/// Optimises the value of `request` at `(layer, site)`; `on_step` sees each step's loss.
#[allow(clippy::too_many_arguments)]
pub async fn compute_value(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    request: &EditRequest,
    templates: &ContextTemplates,
    layer: usize,
    site: Site,
    hp: &ValueHparams,
    mut on_step: impl FnMut(&StepLoss),
) -> Result<Value> {
    let mut values = compute_values(
        model,
        tokenizer,
        std::slice::from_ref(request),
        templates,
        layer,
        site,
        hp,
        VALUE_BATCH_TOKENS,
        |_, loss| on_step(loss),
    )
    .await?;
    Ok(values.remove(0))
}

/// The prompts of one request: templated rewriting prompts (followed by the target minus its last
/// token) and the KL prompt last.
struct RequestPrompts {
    prompts: Vec<SubjectPrompt>,
    /// Length of each rewriting prompt before the target tokens.
    prompt_lens: Vec<usize>,
    target: Vec<u32>,
}

fn request_prompts(
    tokenizer: &Gpt2Tokenizer,
    request: &EditRequest,
    templates: &ContextTemplates,
    n_positions: usize,
) -> Result<RequestPrompts> {
    let target = target_ids(tokenizer, request)?;
    let mut prompts = Vec::new();
    let mut prompt_lens = Vec::new();
    for t in templates.all() {
        let mut p = subject_prompt(tokenizer, &t.replace("{}", &request.prompt), &request.subject)?;
        prompt_lens.push(p.ids.len());
        p.ids.extend_from_slice(&target[..target.len() - 1]);
        prompts.push(p);
    }
    prompts.push(subject_prompt(tokenizer, "{} is a", &request.subject)?);
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    if longest > n_positions {
        return Err(EngineError::Input(format!(
            "a templated prompt of request {:?} has {longest} tokens, more than the model's context {n_positions}",
            request.subject
        )));
    }
    Ok(RequestPrompts {
        prompts,
        prompt_lens,
        target,
    })
}

/// Optimises the values of all `requests` at `(layer, site)`, many at once: each request has its
/// own δ (a row of one `[R, d]` tensor) touching only its own prompts, so the gradient of the summed
/// loss with respect to a row is that request's gradient, and Adam, the clamp and the early stop
/// act row by row exactly as if the requests were optimised one after another. Requests are
/// grouped so that a group's padded prompts hold at most `batch_tokens` positions. `on_step` sees
/// `(request index, loss)`.
#[allow(clippy::too_many_arguments)]
pub async fn compute_values(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    requests: &[EditRequest],
    templates: &ContextTemplates,
    layer: usize,
    site: Site,
    hp: &ValueHparams,
    batch_tokens: usize,
    mut on_step: impl FnMut(usize, &StepLoss),
) -> Result<Vec<Value>> {
    if layer >= model.n_layer() {
        return Err(EngineError::Input(format!(
            "layer {layer} does not exist (the model has {} layers)",
            model.n_layer()
        )));
    }
    let all: Vec<RequestPrompts> = requests
        .iter()
        .map(|r| request_prompts(tokenizer, r, templates, model.n_positions()))
        .collect::<Result<_>>()?;
    // The group size the memory budget allows, estimated for the longest prompt.
    let seq = all
        .iter()
        .flat_map(|r| r.prompts.iter().map(|p| p.ids.len()))
        .max()
        .unwrap_or(1);
    let one = all.iter().map(|r| r.prompts.len()).max().unwrap_or(1) * seq;
    let batch_tokens = value_group_positions(
        super::memory::ModelShape::of(model),
        layer,
        seq,
        one,
        batch_tokens,
        hp.memory_budget,
    )?;
    let mut values = Vec::with_capacity(requests.len());
    let mut start = 0;
    while start < all.len() {
        // Grow the group while its padded size stays within the budget (at least one request).
        let (mut end, mut rows, mut longest) = (start, 0, 0);
        while end < all.len() {
            let r = &all[end];
            let l = longest.max(r.prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0));
            let n = rows + r.prompts.len();
            if end > start && n * l > batch_tokens {
                break;
            }
            (rows, longest, end) = (n, l, end + 1);
        }
        let group = optimise_group(model, &all[start..end], layer, site, hp, |r, loss| {
            on_step(start + r, loss)
        })
        .await?;
        values.extend(group);
        start = end;
    }
    Ok(values)
}

/// One group of [`compute_values`].
async fn optimise_group(
    model: &impl EditableModel,
    group: &[RequestPrompts],
    layer: usize,
    site: Site,
    hp: &ValueHparams,
    mut on_step: impl FnMut(usize, &StepLoss),
) -> Result<Vec<Value>> {
    let device = model.device();
    let n_req = group.len();
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    let mut owner = Vec::new(); // request of each prompt
    let mut first = Vec::new(); // index of each request's first (bare-template) prompt
    let mut kl_prompt = Vec::new(); // index of each request's KL prompt
    for (r, g) in group.iter().enumerate() {
        first.push(seqs.len());
        for p in &g.prompts {
            seqs.push(p.ids.clone());
            owner.push(r as i64);
        }
        kl_prompt.push(seqs.len() - 1);
    }
    let tokens = padded_batch(&seqs, &device);
    let [batch, seq] = tokens.dims();
    let subject_pos: Vec<usize> = group
        .iter()
        .flat_map(|g| g.prompts.iter().map(|p| p.subject_last))
        .collect();

    // Where δ goes: the subject's last token of every prompt, row `owner` of δ.
    let mut mask = vec![0f32; batch * seq];
    for (b, &p) in subject_pos.iter().enumerate() {
        mask[b * seq + p] = 1.0;
    }
    let mask = Tensor::<3>::from_data(TensorData::new(mask, [batch, seq, 1]), &device);
    let owner = Tensor::<1, Int>::from_data(TensorData::new(owner, [batch]), &device);

    // Positions scored: every target token of every rewriting prompt, then the KL positions.
    // `weights[r, i]` averages request r's scored tokens (mean per-token NLL per prompt, then the
    // mean over prompts = sum / (T · prompts)).
    let mut rows = Vec::new();
    let mut cols = Vec::new();
    let mut weight_entries = Vec::new();
    for (r, g) in group.iter().enumerate() {
        let count = g.prompt_lens.len() * g.target.len();
        for (k, &len) in g.prompt_lens.iter().enumerate() {
            let b = first[r] + k;
            for (j, &tok) in g.target.iter().enumerate() {
                weight_entries.push((r, rows.len(), 1.0 / count as f32));
                rows.push((b * seq + len - 1 + j) as i64);
                cols.push(tok as i64);
            }
        }
    }
    let n_scored = rows.len();
    let mut weights = vec![0f32; n_req * n_scored];
    for (r, i, w) in weight_entries {
        weights[r * n_scored + i] = w;
    }
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [n_req, n_scored]), &device);
    for (r, &b) in kl_prompt.iter().enumerate() {
        rows.push((b * seq + subject_pos[kl_prompt[r]]) as i64);
    }
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n_scored + n_req]), &device);
    let cols = Tensor::<2, Int>::from_data(TensorData::new(cols, [n_scored, 1]), &device);

    // Unedited pass: v_init (each request's bare prompt), the residual stream after the edited
    // layer (the steps restart from it) and the KL reference distributions.
    let probe = Hooks {
        probes: vec![(layer, site), (layer, Site::BlockOut)],
        ..Default::default()
    };
    let (hidden, mut probes) = model.forward_final_hidden(tokens, &probe);
    let width = hidden.dims()[2];
    let residual = probes.pop().expect("two probes");
    let first_pos: Vec<usize> = first.iter().map(|&b| subject_pos[b]).collect();
    let first_idx = Tensor::<1, Int>::from_data(
        TensorData::new(first.iter().map(|&b| b as i64).collect::<Vec<_>>(), [n_req]),
        &device,
    );
    let at_site = probes.pop().expect("two probes").select(0, first_idx);
    let v_init = gather_positions(at_site, &first_pos); // [R, d]
    let kl_hidden = hidden
        .reshape([batch * seq, width])
        .select(0, rows.clone().narrow(0, n_scored, n_req));
    let log_p0 = log_softmax(
        model
            .lm_head(kl_hidden.unsqueeze_dim(0))
            .reshape([n_req, model.vocab_size()]),
        1,
    );
    let p0 = log_p0.clone().exp();

    let init_norms: Vec<f64> = read_vec::<f64, 2, Float>(v_init.clone().powi_scalar(2).sum_dim(1))
        .await?
        .into_iter()
        .map(f64::sqrt)
        .collect();
    if let Some(bad) = init_norms.iter().find(|n| !(**n > 0.0 && n.is_finite())) {
        return Err(EngineError::Numerical(format!(
            "the activation at layer {layer} has norm {bad}: cannot scale δ"
        )));
    }
    let column = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n_req, 1]), &device);
    let max_norm = column(init_norms.iter().map(|n| (hp.clamp_norm_factor * n) as f32).collect());
    let wd_scale = column(init_norms.iter().map(|n| (hp.weight_decay / (n * n)) as f32).collect());

    let ad = device.clone().autodiff();
    let mut delta = Tensor::<2>::zeros([n_req, width], &ad).require_grad();
    let (mut m, mut v) = (
        Tensor::<2>::zeros([n_req, width], &device),
        Tensor::<2>::zeros([n_req, width], &device),
    );
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut losses: Vec<Vec<StepLoss>> = vec![Vec::with_capacity(hp.steps); n_req];
    let mut active = vec![true; n_req];
    let start = layer + 1;
    for step in 0..hp.steps {
        // The last step only reads the losses, so it builds no autodiff graph: a graph that no
        // backward pass consumes stays in memory (with every activation of the group's forward
        // pass) until the next backward, which after the last group never comes.
        let last = step + 1 == hp.steps;
        let delta_now = if last {
            delta.clone().without_autodiff()
        } else {
            delta.clone()
        };
        let edit = mask.clone() * delta_now.clone().select(0, owner.clone()).reshape([batch, 1, width]);
        let hidden = model.forward_from(start, residual.clone() + edit);
        let picked = hidden.reshape([batch * seq, width]).select(0, rows.clone());
        let log_probs = log_softmax(model.lm_head(picked.unsqueeze_dim(0)).squeeze_dim::<2>(0), 1);
        let target_lp = log_probs.clone().narrow(0, 0, n_scored).gather(1, cols.clone()); // [N, 1]
        let nll = weights.clone().matmul(target_lp).neg(); // [R, 1]
        let log_pd = log_probs.clone().narrow(0, n_scored, n_req);
        let kl = (p0.clone() * (log_p0.clone() - log_pd)).sum_dim(1); // [R, 1]
        // Share of each request's target tokens that are the most probable token (1 = all).
        let top1 = if hp.stop_at_top1 {
            let hit = log_probs
                .clone()
                .narrow(0, 0, n_scored)
                .argmax(1)
                .equal(cols.clone())
                .float();
            let counts = weights.clone().greater_elem(0.0).float();
            (counts.clone().matmul(hit.clone()) / counts.sum_dim(1)).without_autodiff()
        } else {
            Tensor::<2>::zeros([n_req, 1], &device)
        };
        // ‖δ‖ with a 1e-30 floor under the root: the gradient at δ = 0 is then 0 (PyTorch's norm
        // subgradient) instead of 0·∞ = NaN.
        let wd = (delta_now.powi_scalar(2).sum_dim(1) + 1e-30).sqrt() * wd_scale.clone();
        let loss = nll.clone() + kl.clone() * hp.kl_factor + wd.clone(); // [R, 1]

        let scalars = read_vec::<f32, 2, Float>(Tensor::cat(
            vec![
                nll.without_autodiff(),
                kl.without_autodiff(),
                wd.without_autodiff(),
                loss.clone().without_autodiff(),
                top1,
            ],
            1,
        ))
        .await?;
        let mut update = vec![0f32; n_req];
        for r in 0..n_req {
            if !active[r] {
                continue;
            }
            let s = &scalars[r * 5..r * 5 + 5];
            let record = StepLoss {
                step,
                nll: s[0],
                kl: s[1],
                weight_decay: s[2],
                total: s[3],
            };
            on_step(r, &record);
            losses[r].push(record);
            if !record.total.is_finite() {
                return Err(EngineError::Numerical(format!(
                    "the value loss became {} at step {step}; lower v_lr",
                    record.total
                )));
            }
            let top1 = hp.stop_at_top1 && s[4] >= 1.0 - 1e-6;
            if record.total < EARLY_STOP || top1 || step + 1 == hp.steps {
                active[r] = false;
            } else {
                update[r] = 1.0;
            }
        }
        if active.iter().all(|a| !a) {
            if !last {
                // Every request stopped early: release this step's graph.
                let _ = loss.sum().backward();
            }
            break;
        }
        let grads = loss.sum().backward();
        let g = delta.grad(&grads).expect("δ requires grad").without_autodiff();
        // Adam (PyTorch defaults: β = (0.9, 0.999), ε = 1e-8), only for the requests still going.
        let t = (step + 1) as i32;
        m = m * beta1 + g.clone() * (1.0 - beta1);
        v = v * beta2 + g.powi_scalar(2) * (1.0 - beta2);
        let m_hat = m.clone() / (1.0 - beta1.powi(t));
        let v_hat = v.clone() / (1.0 - beta2.powi(t));
        let next = delta.without_autodiff() - m_hat / (v_hat.sqrt() + eps) * hp.lr * column(update);
        // ‖δ‖ ≤ max_norm row by row (a zero row has scale 1).
        let norm = next.clone().powi_scalar(2).sum_dim(1).sqrt();
        let scale = (max_norm.clone() / norm).clamp_max(1.0);
        delta = (next * scale).autodiff().require_grad();
    }
    let delta = delta.without_autodiff();
    Ok(losses
        .into_iter()
        .enumerate()
        .map(|(r, losses)| {
            let idx = Tensor::<1, Int>::from_data(TensorData::new(vec![r as i64], [1]), &device);
            let v_init_r = v_init.clone().select(0, idx.clone()).reshape([width]);
            let mut v = v_init_r.clone() + delta.clone().select(0, idx).reshape([width]);
            if hp.norm_anchor {
                let ratio =
                    (v_init_r.clone().powi_scalar(2).sum() / v.clone().powi_scalar(2).sum().clamp_min(1e-30)).sqrt();
                v = v * ratio;
            }
            Value {
                v_init: v_init_r,
                v,
                losses,
            }
        })
        .collect())
}
