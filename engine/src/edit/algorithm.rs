//! The four algorithms as (objective, distribution, key recipe) choices, their hyper-parameters,
//! and the driver that applies a batch of requests to a model.

use std::collections::HashMap;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::distribute::{LayerDelta, Preserved, Solver, bare_prompts, distribute};
use super::keys::KEY_BATCH;
use super::objective::Objective;
use super::prompts::activations_at;
use super::request::EditRequest;
use super::templates::{ContextTemplates, TemplateRecipe};
use super::values::{StepLoss, VALUE_BATCH_TOKENS, ValueHparams, compute_values};
use crate::error::{EngineError, Result};
use crate::model::{EditableModel, Site};
use crate::tokenizer::Gpt2Tokenizer;

/// The editing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// ROME (eq. 3), one request at a time.
    Rome,
    /// r-ROME: ROME with consistent keys.
    RRome,
    /// MEMIT (eq. 5).
    Memit,
    /// EMMET (eq. 9).
    Emmet,
    /// AlphaEdit (docs/MATH.md §11): least squares confined to C0's null space.
    AlphaEdit,
}

impl Algorithm {
    /// Parses `rome`, `r-rome`, `memit`, `emmet`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rome" => Ok(Self::Rome),
            "r-rome" | "rrome" => Ok(Self::RRome),
            "memit" => Ok(Self::Memit),
            "emmet" => Ok(Self::Emmet),
            "alphaedit" | "alpha-edit" => Ok(Self::AlphaEdit),
            other => Err(EngineError::Input(format!(
                "unknown algorithm `{other}` (rome, r-rome, memit, emmet, alphaedit)"
            ))),
        }
    }

    /// The name as written on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rome => "rome",
            Self::RRome => "r-rome",
            Self::Memit => "memit",
            Self::Emmet => "emmet",
            Self::AlphaEdit => "alphaedit",
        }
    }

    /// The name as the papers write it.
    pub fn display_name(&self) -> &'static str {
        match self {
            Self::Rome => "ROME",
            Self::RRome => "r-ROME",
            Self::Memit => "MEMIT",
            Self::Emmet => "EMMET",
            Self::AlphaEdit => "AlphaEdit",
        }
    }

    /// Whether λ changes the update: it weighs preservation for MEMIT and EMMET; ROME's rank-one
    /// update does not depend on C0's scale, and AlphaEdit's null-space projection uses no λ.
    pub fn uses_lambda(&self) -> bool {
        matches!(self, Self::Memit | Self::Emmet)
    }

    /// Where δ is added during value optimisation (only the norm of v_init differs).
    pub fn value_site(&self) -> Site {
        match self {
            Self::Rome | Self::RRome => Site::MlpOut,
            Self::Memit | Self::Emmet | Self::AlphaEdit => Site::BlockOut,
        }
    }

    /// Which context-template recipe it uses.
    pub fn template_recipe(&self) -> TemplateRecipe {
        match self {
            Self::Rome | Self::RRome => TemplateRecipe::Rome,
            Self::Memit | Self::Emmet | Self::AlphaEdit => TemplateRecipe::Memit,
        }
    }

    /// How each layer's Δ is solved.
    pub fn solver(&self, hp: &EditHparams) -> Solver {
        match self {
            Self::Rome => Solver::RankOne { consistent_keys: false },
            Self::RRome => Solver::RankOne { consistent_keys: true },
            Self::Memit => Solver::Batch(Objective::Memit),
            Self::Emmet => Solver::Batch(Objective::Emmet { alpha: hp.alpha }),
            Self::AlphaEdit => Solver::NullSpace { l2: hp.l2 },
        }
    }

    /// Whether the layer's preservation term is C0's null space (AlphaEdit) rather than λ·C0.
    pub fn uses_null_space(&self) -> bool {
        matches!(self, Self::AlphaEdit)
    }

    /// Every algorithm, in the order front ends list them.
    pub const ALL: [Algorithm; 5] = [Self::Rome, Self::RRome, Self::Memit, Self::Emmet, Self::AlphaEdit];
}

/// Hyper-parameters of one algorithm on one model (docs/MATH.md §10 for GPT2-XL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditHparams {
    /// Layers edited (the last one is where δ is optimised).
    pub layers: Vec<usize>,
    /// λ (`mom2_update_weight`).
    pub lambda: f64,
    /// α (EMMET's D regulariser).
    pub alpha: f64,
    /// AlphaEdit's ridge μ (`L2`, eq. A2).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// AlphaEdit's threshold on C0's eigenvalues (`nullspace_threshold`, eq. A1).
    #[serde(default = "default_nullspace_threshold")]
    pub nullspace_threshold: f64,
    /// Value optimisation.
    pub value: ValueHparams,
}

/// The AlphaEdit authors' `L2`.
pub fn default_l2() -> f64 {
    10.0
}

/// The AlphaEdit authors' `nullspace_threshold`.
pub fn default_nullspace_threshold() -> f64 {
    2e-2
}

/// Progress of an edit, for progress bars and the web page.
#[derive(Debug, Clone)]
pub enum EditEvent {
    /// Preparing the context templates (sampling them takes a moment the first time).
    Templates,
    /// Value optimisation of request `request` made a step.
    ValueStep {
        /// Index of the request.
        request: usize,
        /// The step's loss.
        loss: StepLoss,
    },
    /// A request's value is done.
    ValueDone {
        /// Index of the request.
        request: usize,
    },
    /// Solving and applying layer `layer`.
    Layer {
        /// The layer.
        layer: usize,
    },
}

/// What an edit did.
#[derive(Debug, Clone, Default)]
pub struct EditOutcome {
    /// Δ per layer (ROME: per request and layer, in order of application).
    pub deltas: Vec<LayerDelta>,
    /// Loss curve of each request's value optimisation.
    pub losses: Vec<Vec<StepLoss>>,
}

/// Applies `requests` to `model` in place: the algorithm itself, without the pipeline around it
/// (front ends edit through [`Editor`](super::Editor)).
#[allow(clippy::too_many_arguments)]
pub async fn apply_edits(
    model: &mut impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    requests: &[EditRequest],
    algorithm: Algorithm,
    hp: &EditHparams,
    templates: &ContextTemplates,
    stats: &HashMap<usize, Preserved>,
    mut on_event: impl FnMut(EditEvent),
) -> Result<EditOutcome> {
    if requests.is_empty() {
        return Err(EngineError::Input("no edit requests".into()));
    }
    let mut layers = hp.layers.clone();
    layers.sort_unstable();
    layers.dedup();
    let last = *layers
        .last()
        .ok_or_else(|| EngineError::Input("no layer to edit".into()))?;
    if last >= model.n_layer() {
        return Err(EngineError::Input(format!(
            "layer {last} does not exist (the model has {} layers)",
            model.n_layer()
        )));
    }
    let solver = algorithm.solver(hp);
    let site = algorithm.value_site();
    let mut outcome = EditOutcome::default();
    // ROME and r-ROME apply requests one after another; MEMIT and EMMET solve the batch jointly.
    let batches: Vec<&[EditRequest]> = match solver {
        Solver::RankOne { .. } => requests.chunks(1).collect(),
        Solver::Batch(_) | Solver::NullSpace { .. } => vec![requests],
    };
    let mut index = 0;
    for batch in batches {
        // All values of a batch are optimised on the same (unedited or previously edited) model,
        // many requests per forward/backward pass.
        let values = compute_values(
            model,
            tokenizer,
            batch,
            templates,
            last,
            site,
            &hp.value,
            VALUE_BATCH_TOKENS,
            |j, loss| {
                on_event(EditEvent::ValueStep {
                    request: index + j,
                    loss: *loss,
                })
            },
        )
        .await?;
        let mut deltas = Vec::with_capacity(batch.len());
        for (j, value) in values.into_iter().enumerate() {
            on_event(EditEvent::ValueDone { request: index + j });
            deltas.push((value.v - value.v_init).unsqueeze_dim::<2>(0));
            outcome.losses.push(value.losses);
        }
        // Targets at the last layer's block output (adding δ to the MLP output or to the block
        // output of layer L changes the block output identically).
        let bare = bare_prompts(tokenizer, batch)?;
        let z = activations_at(model, &bare, last, Site::BlockOut, KEY_BATCH)? + Tensor::cat(deltas, 0);
        let applied = distribute(model, tokenizer, batch, z, &layers, solver, templates, stats, |layer| {
            on_event(EditEvent::Layer { layer })
        })
        .await?;
        outcome.deltas.extend(applied);
        index += batch.len();
    }
    Ok(outcome)
}
