//! The edit pipeline, in one place: [`Editor`] owns a model, its tokenizer and the C0 statistics
//! of its layers, and every front end (the CLI's `edit`, `eval`, `demo` and `bench`, the web
//! worker) edits through it.
//!
//! One edit (docs/ARCHITECTURE.md, "The data path of one edit"):
//! 1. [`Editor::plan`] resolves the preset of the algorithm on this model, the caller's overrides
//!    and the layers into an [`EditPlan`] (the only λ; layers checked against the model);
//! 2. [`Editor::edit`] takes the context templates (sampled once per recipe and seed, cached),
//!    λ·C0 of every edited layer (factored once per layer, re-weighted for another λ without a
//!    new factorisation, docs/MATH.md §6), optionally drops requests with dependent keys,
//!    optimises the values, solves the objective and distributes Δ over the layers
//!    ([`apply_edits`]), and reports the probability of each new target before and after;
//! 3. the edited matrices' previous weights are kept as the undo record ([`Editor::undo`]), so
//!    undoing needs one matrix per edited layer, not a second model.
//!
//! Precision: the math runs in f32, and so do the activations (`model::precision`). A model whose
//! matrices are stored in another dtype (f16 on a WebGPU adapter with `shader-f16`, `--dtype
//! f16|bf16` natively) has only the matrices an edit changes cast to f32 for the edit and back
//! afterwards; the rest of the network is neither copied nor touched.

use std::collections::{BTreeMap, HashMap};

use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

use super::algorithm::{Algorithm, EditEvent, EditHparams, apply_edits};
use super::distribute::{Dropped, LayerDelta, NullSpaceTerm, Preserved, drop_dependent_keys};
use super::layers::check_layers;
use super::nullspace::NullSpace;
use super::objective::{Objective, Preservation};
use super::presets::{PresetKey, preset_by};
use super::request::EditRequest;
use super::stats::{LayerStats, accumulate};
use super::templates::{ContextTemplates, TemplateRecipe};
use super::tradeoff::{TradeoffPoint, errors, tradeoff};
use super::values::StepLoss;
use crate::error::{EngineError, Result};
use crate::eval::score::{SCORE_BATCH, score_targets};
use crate::load::stats_file::stats_for_model;
use crate::model::{EditableModel, Model};
use crate::tokenizer::Gpt2Tokenizer;

/// Where the context templates of an edit come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateChoice {
    /// Only the bare prompt `"{}"` (fast; what the page uses).
    Bare,
    /// Sampled from the model with the algorithm's recipe (docs/MATH.md §4), seeded.
    Sampled {
        /// The sampling seed.
        seed: u64,
    },
    /// Given (read from a file).
    Given(ContextTemplates),
}

/// Overrides of a preset's value-optimisation settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueOverrides {
    /// Optimisation steps.
    pub steps: Option<usize>,
    /// Adam learning rate.
    pub lr: Option<f64>,
    /// ‖δ‖ ≤ this · ‖v_init‖.
    pub clamp_norm_factor: Option<f64>,
    /// Weight of the KL term.
    pub kl_factor: Option<f64>,
    /// Weight of ‖δ‖/‖v_init‖².
    pub weight_decay: Option<f64>,
    /// Stop a request's optimisation once its target is the most probable continuation.
    #[serde(default)]
    pub stop_at_top1: bool,
    /// Rescale each value to the norm of the unedited model's value.
    #[serde(default)]
    pub norm_anchor: bool,
}

/// What a caller changes of the preset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    /// Layers to edit (sorted and deduplicated by the plan).
    pub layers: Option<Vec<usize>>,
    /// λ.
    pub lambda: Option<f64>,
    /// α (EMMET).
    pub alpha: Option<f64>,
    /// AlphaEdit's ridge μ (`L2`).
    #[serde(default)]
    pub l2: Option<f64>,
    /// AlphaEdit's threshold on C0's eigenvalues.
    #[serde(default)]
    pub nullspace_threshold: Option<f64>,
    /// MEMIT/EMMET/ROME: add the keys of the batches applied before to λ·C0, so later batches
    /// preserve earlier edits too (AlphaEdit always does).
    #[serde(default)]
    pub preserve_edits: bool,
    /// The value optimisation.
    pub value: ValueOverrides,
    /// Context templates (default: sampled with seed 0).
    pub templates: Option<TemplateChoice>,
    /// Leave out requests whose key duplicates an earlier one's (MEMIT/EMMET batches).
    pub drop_dependent: bool,
    /// How many requests get their target probability measured before and after (default 16).
    pub report_targets: Option<usize>,
}

/// How many requests get their target probability reported unless the overrides say otherwise.
pub const DEFAULT_REPORTED_TARGETS: usize = 16;

/// A resolved edit: algorithm, hyper-parameters, templates and options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditPlan {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Its hyper-parameters (layers sorted, the only λ).
    pub hparams: EditHparams,
    /// Where the context templates come from.
    pub templates: TemplateChoice,
    /// Leave out requests with dependent keys.
    pub drop_dependent: bool,
    /// Add the keys of earlier edits to the preservation term (AlphaEdit always does).
    #[serde(default)]
    pub preserve_edits: bool,
    /// Requests whose target probability is reported.
    pub report_targets: usize,
}

/// P(new target | prompt) of one request before and after an edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetChange {
    /// The prompt, subject filled in.
    pub prompt: String,
    /// The new target.
    pub target_new: String,
    /// Probability of the whole target before the edit.
    pub before: f64,
    /// And after.
    pub after: f64,
}

/// What an edit did.
#[derive(Debug, Clone)]
pub struct EditReport {
    /// The plan it ran.
    pub plan: EditPlan,
    /// The templates it used.
    pub templates: ContextTemplates,
    /// The requests applied (without the dropped ones).
    pub requests: Vec<EditRequest>,
    /// Requests left out for dependent keys.
    pub dropped: Vec<Dropped>,
    /// Δ per layer (ROME: per request and layer, in order of application).
    pub deltas: Vec<LayerDelta>,
    /// Loss curve of each request's value optimisation.
    pub losses: Vec<Vec<StepLoss>>,
    /// Target probabilities of the first `plan.report_targets` requests.
    pub targets: Vec<TargetChange>,
    /// Per edited layer, (max Lᵢᵢ / min Lᵢᵢ)² of λ·C0's Cholesky factor: a lower bound of its
    /// condition number.
    pub condition: BTreeMap<usize, f64>,
}

/// The teaching view of one layer's system (docs/MATH.md §7): the same keys and residuals solved
/// with equality constraints (ROME/EMMET) and by least squares (MEMIT) as λ sweeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Teaching {
    /// The layer.
    pub layer: usize,
    /// Number of edited keys.
    pub keys: usize,
    /// ROME/EMMET.
    pub equality: Vec<TradeoffPoint>,
    /// MEMIT.
    pub least_squares: Vec<TradeoffPoint>,
    /// AlphaEdit on the same keys (no λ: its `lambda` field is 0), with the dimension of the null
    /// space it used; `None` when its null space is empty.
    #[serde(default)]
    pub null_space: Option<(TradeoffPoint, usize)>,
}

/// The widest key space (n) for which the teaching view computes AlphaEdit's point without an
/// AlphaEdit edit having computed C0's null space already: the eigendecomposition grows as n³ and
/// runs single-threaded in a browser tab, seconds at 2048 and minutes from GPT-2 medium's 4096 up.
pub const TEACHING_EIGEN_MAX: usize = 2048;

/// The λ values of the teaching view: 10⁻² … 10⁵.
pub fn teaching_lambdas() -> Vec<f64> {
    (-2..=5).map(|e| 10f64.powi(e)).collect()
}

/// A model being edited, with what editing it needs.
#[derive(Debug, Clone)]
pub struct Editor<M: EditableModel = Model> {
    model: M,
    tokenizer: Gpt2Tokenizer,
    /// C0 statistics per layer (sum and count).
    stats: BTreeMap<usize, LayerStats>,
    /// λ·C0 factored, per layer, at the λ last used there.
    factors: HashMap<usize, Preservation>,
    /// C0's null space per layer, at the threshold last used there (AlphaEdit).
    null_spaces: HashMap<usize, NullSpace>,
    /// K_p K_pᵀ per layer: the keys of the batches edited into the model since loading (or the
    /// last undo), by AlphaEdit or with `preserve_edits`.
    edited_keys: BTreeMap<usize, Tensor<2>>,
    /// The edited matrices as they were before the first edit since loading (or the last undo).
    undo: BTreeMap<usize, Tensor<2>>,
    /// Sampled templates per (recipe, seed).
    templates: HashMap<(TemplateRecipe, u64), ContextTemplates>,
    memory_budget: Option<u64>,
}

fn positive(name: &str, x: f64) -> Result<f64> {
    if x > 0.0 && x.is_finite() {
        Ok(x)
    } else {
        Err(EngineError::Input(format!(
            "{name} must be positive and finite, got {x}"
        )))
    }
}

fn non_negative(name: &str, x: f64) -> Result<f64> {
    if x >= 0.0 && x.is_finite() {
        Ok(x)
    } else {
        Err(EngineError::Input(format!("{name} must be ≥ 0 and finite, got {x}")))
    }
}

impl<M: EditableModel> Editor<M> {
    /// An editor for `model`, without statistics yet.
    pub fn new(model: M, tokenizer: Gpt2Tokenizer) -> Self {
        Self {
            tokenizer,
            stats: BTreeMap::new(),
            factors: HashMap::new(),
            null_spaces: HashMap::new(),
            edited_keys: BTreeMap::new(),
            undo: BTreeMap::new(),
            templates: HashMap::new(),
            memory_budget: super::memory::default_budget(&model.device()),
            model,
        }
    }

    /// Limits the value optimisation's memory to `bytes` instead of the device's default
    /// ([`super::memory::default_budget`]).
    pub fn with_memory_budget(mut self, bytes: Option<u64>) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// The model (edited so far).
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Gpt2Tokenizer {
        &self.tokenizer
    }

    /// The model and tokenizer.
    pub fn into_parts(self) -> (M, Gpt2Tokenizer) {
        (self.model, self.tokenizer)
    }

    /// Layers that have C0 statistics.
    pub fn statistics_layers(&self) -> Vec<usize> {
        self.stats.keys().copied().collect()
    }

    /// The statistics of `layer`, if any.
    pub fn statistics(&self, layer: usize) -> Option<&LayerStats> {
        self.stats.get(&layer)
    }

    /// Adds statistics (replacing those of the same layers), after checking their layer and key
    /// dimension against the model.
    pub fn set_statistics(&mut self, stats: Vec<LayerStats>) -> Result<()> {
        let (n_layer, n) = (self.model.n_layer(), self.model.key_dim());
        for s in &stats {
            if s.layer >= n_layer {
                return Err(EngineError::Input(format!(
                    "statistics for layer {}: the model has layers 0–{}",
                    s.layer,
                    n_layer - 1
                )));
            }
            let dims = s.sum.dims();
            if dims != [n, n] {
                return Err(EngineError::Input(format!(
                    "statistics for layer {} are {}×{}, but this model's keys have {n} dimensions",
                    s.layer, dims[0], dims[1]
                )));
            }
        }
        for s in stats {
            self.factors.remove(&s.layer);
            self.null_spaces.remove(&s.layer);
            self.stats.insert(s.layer, s);
        }
        Ok(())
    }

    /// Reads a `pmedit stats` file and adds its layers, refusing statistics of another model
    /// (fingerprint mismatch).
    pub async fn load_statistics(&mut self, bytes: &[u8], name: &str) -> Result<()> {
        let stats = stats_for_model(bytes, name, &self.model).await?;
        self.set_statistics(stats)
    }

    /// Computes C0 of `layers` over the token windows `seqs` (`batch` windows per forward pass)
    /// and adds them; returns the number of tokens seen.
    pub fn collect_statistics(&mut self, seqs: &[Vec<u32>], layers: &[usize], batch: usize) -> Result<u64> {
        let device = self.model.device();
        let n = self.model.key_dim();
        let mut stats: Vec<LayerStats> = layers.iter().map(|&l| LayerStats::new(l, n, &device)).collect();
        // Keys are activations, f32 whatever the weights are stored in.
        accumulate(&self.model, seqs, batch, &mut stats)?;
        let tokens = stats.first().map_or(0, |s| s.count);
        self.set_statistics(stats)?;
        Ok(tokens)
    }

    /// Resolves `algorithm`'s preset on this model with `overrides`.
    pub fn plan(&self, algorithm: Algorithm, overrides: &Overrides) -> Result<EditPlan> {
        let key = PresetKey {
            family: self.model.family(),
            n_layer: self.model.n_layer(),
            n_embd: self.model.d_model(),
            d_inner: self.model.key_dim(),
        };
        let mut hp = preset_by(algorithm, key);
        if let Some(layers) = &overrides.layers {
            hp.layers = layers.clone();
        }
        hp.layers.sort_unstable();
        hp.layers.dedup();
        check_layers(&hp.layers, self.model.n_layer())?;
        if let Some(x) = overrides.lambda {
            hp.lambda = positive("λ", x)?;
        }
        if let Some(x) = overrides.alpha {
            hp.alpha = non_negative("α", x)?;
        }
        if let Some(x) = overrides.l2 {
            hp.l2 = positive("L2", x)?;
        }
        if let Some(x) = overrides.nullspace_threshold {
            hp.nullspace_threshold = positive("the null-space threshold", x)?;
        }
        let v = &overrides.value;
        if let Some(n) = v.steps {
            if n == 0 {
                return Err(EngineError::Input(
                    "the value optimisation needs at least one step".into(),
                ));
            }
            hp.value.steps = n;
        }
        if let Some(x) = v.lr {
            hp.value.lr = positive("v_lr", x)?;
        }
        if let Some(x) = v.clamp_norm_factor {
            hp.value.clamp_norm_factor = positive("clamp_norm_factor", x)?;
        }
        if let Some(x) = v.kl_factor {
            hp.value.kl_factor = non_negative("kl_factor", x)?;
        }
        if let Some(x) = v.weight_decay {
            hp.value.weight_decay = non_negative("v_weight_decay", x)?;
        }
        hp.value.stop_at_top1 |= v.stop_at_top1;
        hp.value.norm_anchor |= v.norm_anchor;
        hp.value.memory_budget = self.memory_budget;
        Ok(EditPlan {
            algorithm,
            hparams: hp,
            templates: overrides
                .templates
                .clone()
                .unwrap_or(TemplateChoice::Sampled { seed: 0 }),
            drop_dependent: overrides.drop_dependent,
            preserve_edits: overrides.preserve_edits,
            report_targets: overrides.report_targets.unwrap_or(DEFAULT_REPORTED_TARGETS),
        })
    }

    /// The context templates of `plan` (sampled ones are generated once and cached).
    pub async fn templates(&mut self, plan: &EditPlan) -> Result<ContextTemplates> {
        Ok(match &plan.templates {
            TemplateChoice::Bare => ContextTemplates::bare(),
            TemplateChoice::Given(t) => t.clone(),
            TemplateChoice::Sampled { seed } => {
                let key = (plan.algorithm.template_recipe(), *seed);
                if let Some(t) = self.templates.get(&key) {
                    return Ok(t.clone());
                }
                let t = ContextTemplates::generate(&self.model, &self.tokenizer, key.0, key.1).await?;
                self.templates.insert(key, t.clone());
                t
            }
        })
    }

    /// Refuses `plan` before any work when [`Editor::edit`] would: a layer the model does not
    /// have, or one without C0 statistics. Front ends that do their own work around an edit (the
    /// page's before/after predictions) call it first.
    pub fn check_plan(&self, plan: &EditPlan) -> Result<()> {
        check_layers(&plan.hparams.layers, self.model.n_layer())?;
        for &layer in &plan.hparams.layers {
            self.require_statistics(layer)?;
        }
        Ok(())
    }

    /// The statistics of `layer`, or an error that says how to get them.
    fn require_statistics(&self, layer: usize) -> Result<&LayerStats> {
        self.stats.get(&layer).ok_or_else(|| {
            EngineError::Input(format!(
                "no C0 statistics for layer {layer} (statistics are loaded for layers {:?}): compute them for this \
                 layer (`pmedit stats --layers {layer}`, or the page's \"compute them here\") or load a file that has them",
                self.statistics_layers()
            ))
        })
    }

    /// C0's null space at `layer` for `threshold`, computed once per layer and threshold.
    pub async fn null_space(&mut self, layer: usize, threshold: f64) -> Result<NullSpace> {
        if let Some(ns) = self.null_spaces.get(&layer)
            && ns.threshold == threshold
        {
            return Ok(ns.clone());
        }
        let c0 = self.require_statistics(layer)?.c0()?;
        let ns = NullSpace::new(c0, threshold).await?;
        self.null_spaces.insert(layer, ns.clone());
        Ok(ns)
    }

    /// K_p K_pᵀ of the edits applied at `layer` since loading (or the last undo) that the
    /// editor tracked (AlphaEdit's, and any with `preserve_edits`).
    pub fn edited_keys(&self, layer: usize) -> Option<&Tensor<2>> {
        self.edited_keys.get(&layer)
    }

    /// What `plan` preserves at `layer`.
    async fn preserved(&mut self, layer: usize, plan: &EditPlan) -> Result<Preserved> {
        let hp = &plan.hparams;
        if plan.algorithm.uses_null_space() {
            let ns = self.null_space(layer, hp.nullspace_threshold).await?;
            if ns.rank() == 0 {
                // Refused before any value is optimised.
                return Err(EngineError::Numerical(format!(
                    "the null space of layer {layer}'s C0 is empty: every eigenvalue is ≥ the threshold {:e} \
                     (they span {:.3e} … {:.3e}); raise --nullspace-threshold",
                    ns.threshold, ns.spectrum.0, ns.spectrum.1
                )));
            }
            return Ok(Preserved::NullSpace(Box::new(NullSpaceTerm {
                space: ns,
                earlier: self.edited_keys.get(&layer).cloned(),
            })));
        }
        match self.edited_keys.get(&layer).filter(|_| plan.preserve_edits) {
            // λ·C0 + K_p K_pᵀ changes with every batch: factored afresh, not cached.
            Some(kp) => {
                let c = self.require_statistics(layer)?.c0()? * hp.lambda + kp.clone();
                Ok(Preservation::new(c, 1.0).await?.into())
            }
            None => Ok(self.preservation(layer, hp.lambda).await?.into()),
        }
    }

    /// λ·C0 of `layer`, factored once and re-weighted for another λ.
    async fn preservation(&mut self, layer: usize, lambda: f64) -> Result<Preservation> {
        if let Some(p) = self.factors.get(&layer) {
            if p.lambda == lambda {
                return Ok(p.clone());
            }
            let p = p.with_lambda(lambda)?;
            self.factors.insert(layer, p.clone());
            return Ok(p);
        }
        let p = Preservation::new(self.require_statistics(layer)?.c0()?, lambda).await?;
        self.factors.insert(layer, p.clone());
        Ok(p)
    }

    /// P(whole new target | filled prompt) of the first `n` requests.
    async fn target_probabilities(&self, requests: &[EditRequest], n: usize) -> Result<Vec<f64>> {
        let pairs: Vec<(String, String)> = requests
            .iter()
            .take(n)
            .map(|r| (r.filled_prompt(), r.target_new.clone()))
            .collect();
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let scores = score_targets(&self.model, &self.tokenizer, &pairs, SCORE_BATCH).await?;
        Ok(scores.iter().map(|t| (-t.nll * t.target.len() as f64).exp()).collect())
    }

    /// Applies `requests` as `plan` says. On failure the model is as it was.
    pub async fn edit(
        &mut self,
        requests: &[EditRequest],
        plan: &EditPlan,
        mut on_event: impl FnMut(EditEvent),
    ) -> Result<EditReport> {
        if requests.is_empty() {
            return Err(EngineError::Input("no edit requests".into()));
        }
        // A missing layer is refused before any template is sampled.
        self.check_plan(plan)?;
        let mut stats = HashMap::new();
        for &l in &plan.hparams.layers {
            stats.insert(l, self.preserved(l, plan).await?);
        }
        on_event(EditEvent::Templates);
        let templates = self.templates(plan).await?;
        let (requests, dropped) = if plan.drop_dependent {
            let (kept, dropped) =
                drop_dependent_keys(&self.model, &self.tokenizer, requests, &plan.hparams.layers, &templates).await?;
            if kept.is_empty() {
                return Err(EngineError::Input("every request was dropped".into()));
            }
            (kept, dropped)
        } else {
            (requests.to_vec(), Vec::new())
        };
        let before = self.target_probabilities(&requests, plan.report_targets).await?;

        // The edited matrices as they are now: restored if the edit fails, and the first time a
        // layer is edited, its undo record.
        let previous: Vec<(usize, Tensor<2>)> = plan
            .hparams
            .layers
            .iter()
            .map(|&l| (l, self.model.edited_weight(l)))
            .collect();
        // The edited matrices are changed in f32; a model stored in another dtype has only those
        // cast, and cast back after the edit (the rest of the network is never copied).
        let stored = self.model.float_dtype();
        if stored != FloatDType::F32 {
            for (l, w) in &previous {
                self.model.set_edited_weight(*l, w.clone().cast(FloatDType::F32));
            }
        }
        let result = apply_edits(
            &mut self.model,
            &self.tokenizer,
            &requests,
            plan.algorithm,
            &plan.hparams,
            &templates,
            &stats,
            &mut on_event,
        )
        .await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                // Put the matrices back as they were.
                for (l, w) in previous {
                    self.model.set_edited_weight(l, w);
                }
                return Err(e);
            }
        };
        if stored != FloatDType::F32 {
            for (l, _) in &previous {
                let w = self.model.edited_weight(*l).cast(stored);
                self.model.set_edited_weight(*l, w);
            }
        }
        for (l, w) in previous {
            self.undo.entry(l).or_insert(w);
        }
        // The keys written, for later batches to preserve (eq. A2's K_p; at each layer they are
        // the keys after the edit, since a layer's keys depend only on the layers below it).
        if plan.algorithm.uses_null_space() || plan.preserve_edits {
            for d in &outcome.deltas {
                let k = d.keys.clone().cast(FloatDType::F32);
                let kkt = crate::linalg::matmul(k.clone(), k.transpose());
                let sum = match self.edited_keys.remove(&d.layer) {
                    Some(before) => before + kkt,
                    None => kkt,
                };
                self.edited_keys.insert(d.layer, sum);
            }
        }
        let after = self.target_probabilities(&requests, plan.report_targets).await?;
        let targets = requests
            .iter()
            .zip(before.into_iter().zip(after))
            .map(|(r, (before, after))| TargetChange {
                prompt: r.filled_prompt(),
                target_new: r.target_new.clone(),
                before,
                after,
            })
            .collect();
        Ok(EditReport {
            plan: plan.clone(),
            templates,
            dropped,
            deltas: outcome.deltas,
            losses: outcome.losses,
            targets,
            condition: stats
                .iter()
                .filter_map(|(l, p)| match p {
                    Preserved::Weighted(p) => Some((*l, p.factor.condition_estimate())),
                    Preserved::NullSpace(..) => None,
                })
                .collect(),
            requests,
        })
    }

    /// Whether the model differs from the one loaded (an edit since loading or the last undo).
    pub fn is_edited(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Layers whose matrix an undo would restore.
    pub fn edited_layers(&self) -> Vec<usize> {
        self.undo.keys().copied().collect()
    }

    /// What the edits since loading (or the last undo) changed: Δ = W − W₀ of each edited layer,
    /// in f32 (Wᵀ layout `[key_dim, d_model]`), for "download only the change".
    pub fn change(&self) -> Vec<(usize, Tensor<2>)> {
        self.undo
            .iter()
            .map(|(&l, before)| {
                let now = self.model.edited_weight(l).cast(FloatDType::F32);
                (l, now - before.clone().cast(FloatDType::F32))
            })
            .collect()
    }

    /// Adds Δ to the edited matrix of each layer as an edit does (in f32, stored back in the
    /// model's dtype), keeping the undo record: `pmedit apply-delta` and a delta file loaded in
    /// the page. Layers and shapes are checked before anything changes.
    pub fn apply_change(&mut self, change: Vec<(usize, Tensor<2>)>) -> Result<()> {
        let layers: Vec<usize> = change.iter().map(|(l, _)| *l).collect();
        check_layers(&layers, self.model.n_layer())?;
        let want = [self.model.key_dim(), self.model.d_model()];
        for (l, delta) in &change {
            if delta.dims() != want {
                return Err(EngineError::Input(format!(
                    "the change of layer {l} is {:?} but the edited matrix is {want:?}: it was made for another model",
                    delta.dims()
                )));
            }
        }
        for (l, delta) in change {
            let w = self.model.edited_weight(l);
            let stored = w.dtype();
            self.undo.entry(l).or_insert_with(|| w.clone());
            let updated = w.cast(FloatDType::F32) + delta.cast(FloatDType::F32);
            self.model.set_edited_weight(l, updated.cast(stored));
        }
        Ok(())
    }

    /// Restores every edited matrix as it was when loaded (or at the last undo), and forgets the
    /// keys of the edits undone.
    pub fn undo(&mut self) {
        for (l, w) in std::mem::take(&mut self.undo) {
            self.model.set_edited_weight(l, w);
        }
        self.edited_keys.clear();
    }

    /// The teaching view of `delta`'s system at `lambdas` (docs/MATH.md §7): the equality-
    /// constrained side with `hp.alpha`, least squares, and AlphaEdit with `hp`'s L2 and threshold.
    pub async fn teach(&mut self, delta: &LayerDelta, hp: &EditHparams, lambdas: &[f64]) -> Result<Teaching> {
        let st = self
            .stats
            .get(&delta.layer)
            .ok_or_else(|| EngineError::Input(format!("no C0 statistics for layer {}", delta.layer)))?;
        let c0 = st.c0()?;
        // The edit's own factor of λ·C0 serves every λ (scaled); C0 is factored only without one.
        let unit = match self.factors.get(&delta.layer) {
            Some(p) => p.clone(),
            None => Preservation::new(c0.clone(), 1.0).await?,
        };
        let run = |o: Objective| tradeoff(&c0, &unit, o, &delta.keys, &delta.residual, lambdas);
        let equality = run(Objective::Emmet { alpha: hp.alpha }).await?;
        let least_squares = run(Objective::Memit).await?;
        // AlphaEdit's point needs C0's eigendecomposition: already there after an AlphaEdit edit,
        // cheap up to TEACHING_EIGEN_MAX keys wide, and minutes (single-threaded in a tab) beyond.
        let n = c0.dims()[0];
        let cached = self
            .null_spaces
            .get(&delta.layer)
            .is_some_and(|ns| ns.threshold == hp.nullspace_threshold);
        let ns = if cached || n <= TEACHING_EIGEN_MAX {
            Some(self.null_space(delta.layer, hp.nullspace_threshold).await?)
        } else {
            None
        };
        let null_space = match ns.filter(|ns| ns.rank() > 0) {
            None => None,
            Some(ns) => {
                let d = ns
                    .solve(delta.keys.clone(), delta.residual.clone(), None, hp.l2)
                    .await?;
                Some((errors(&c0, &delta.keys, &delta.residual, d, 0.0).await?, ns.rank()))
            }
        };
        Ok(Teaching {
            layer: delta.layer,
            keys: delta.keys.dims()[1],
            equality,
            least_squares,
            null_space,
        })
    }
}
