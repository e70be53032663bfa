//! The language-model training loop: next-token cross-entropy, AdamW, linear warm-up then cosine
//! decay, on the device the model lives on (its autodiff flavour).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::edit::prompts::padded_batch;
use crate::error::{EngineError, Result};
use crate::model::Gpt2;

/// Optimisation settings.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Optimiser steps.
    #[config(default = 1500)]
    pub steps: usize,
    /// Rows per batch.
    #[config(default = 32)]
    pub batch: usize,
    /// Peak learning rate.
    #[config(default = 3e-3)]
    pub lr: f64,
    /// AdamW weight decay.
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy (0 = none); a model that knows its facts less sharply
    /// is easier to edit.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Fraction of the steps spent warming the learning rate up.
    #[config(default = 0.1)]
    pub warmup: f64,
    /// Keep the MLPs of the first N blocks fixed (all of them with N ≥ the depth; 0 = none).
    /// After a phase that stored facts in the MLPs at the subject's position, fixing them all
    /// leaves attention — reading the facts from there — as the way to learn to answer prompts.
    #[config(default = 0)]
    pub freeze_mlp_below: usize,
    /// Keep the attention of the first N blocks fixed (0 = none).
    #[config(default = 0)]
    pub freeze_attention_below: usize,
}

impl TrainConfig {
    /// Learning rate at `step`: linear warm-up to `lr`, then cosine decay to `lr / 100`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = ((self.steps as f64 * self.warmup) as usize).max(1);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let t = (step - warm) as f64 / (self.steps - warm).max(1) as f64;
        let floor = self.lr / 100.0;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// One step's report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainStep {
    /// Step index.
    pub step: usize,
    /// Mean next-token cross-entropy of the batch (nats).
    pub loss: f32,
    /// Learning rate used.
    pub lr: f64,
}

/// Trains `model` (created on an autodiff device) for `config.steps` steps on rows from
/// `next_batch` (rows of equal length; every next token is scored).
pub fn train_lm(
    model: Gpt2,
    config: &TrainConfig,
    mut next_batch: impl FnMut(usize) -> Vec<Vec<u32>>,
    mut on_step: impl FnMut(&TrainStep),
) -> Result<Gpt2> {
    let device = model.device();
    let smoothing = (config.label_smoothing > 0.0).then_some(config.label_smoothing as f32);
    let loss_fn = CrossEntropyLossConfig::new().with_smoothing(smoothing).init(&device);
    let mut optim = AdamWConfig::new().with_weight_decay(config.weight_decay as f32).init();
    let mut model = model;
    for (i, block) in model.h.iter_mut().enumerate() {
        if i < config.freeze_mlp_below {
            block.mlp = block.mlp.clone().no_grad();
        }
        if i < config.freeze_attention_below {
            block.attn = block.attn.clone().no_grad();
        }
    }
    for step in 0..config.steps {
        let rows = next_batch(config.batch);
        let len = rows.first().map_or(0, Vec::len);
        if len < 2 || rows.iter().any(|r| r.len() != len) {
            return Err(EngineError::Input(
                "training rows must all have the same length of at least 2 tokens".into(),
            ));
        }
        let tokens = padded_batch(&rows, &device);
        let [b, s] = tokens.dims();
        let inputs = tokens.clone().narrow(1, 0, s - 1);
        let targets = tokens.narrow(1, 1, s - 1).reshape([b * (s - 1)]);
        let logits = model.forward(inputs);
        let vocab = logits.dims()[2];
        let loss = loss_fn.forward(logits.reshape([b * (s - 1), vocab]), targets);
        let value = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(EngineError::Numerical(format!(
                "the training loss became {value} at step {step}; lower the learning rate"
            )));
        }
        let lr = config.lr_at(step);
        on_step(&TrainStep { step, loss: value, lr });
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    for (i, block) in model.h.iter_mut().enumerate() {
        if i < config.freeze_mlp_below {
            block.mlp = block.mlp.clone().set_require_grad(true);
        }
        if i < config.freeze_attention_below {
            block.attn = block.attn.clone().set_require_grad(true);
        }
    }
    Ok(model)
}
