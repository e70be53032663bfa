//! `pmedit edit`: apply ROME / r-ROME / MEMIT / EMMET / AlphaEdit to a model and write the edited copy. The
//! edit itself is the engine's pipeline ([`Editor`]); this file reads the inputs, shows progress
//! and writes the outputs.

use pmedit_engine::block_on;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::edit::{EditEvent, EditReport, EditRequest, Overrides};
use serde_json::json;

use crate::destination::{Destination, Kind};
use crate::device::Target;

/// The algorithms, as `--algo` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algo {
    /// ROME (rank-one, one request at a time).
    Rome,
    /// r-ROME (ROME with consistent keys).
    RRome,
    /// MEMIT (least-squares batch edits).
    Memit,
    /// EMMET (equality-constrained batch edits).
    Emmet,
    /// AlphaEdit (least squares in the null space of the preserved keys).
    #[value(name = "alphaedit", alias = "alpha-edit")]
    AlphaEdit,
}

impl From<Algo> for pmedit_engine::edit::Algorithm {
    fn from(a: Algo) -> Self {
        use pmedit_engine::edit::Algorithm;
        match a {
            Algo::Rome => Algorithm::Rome,
            Algo::RRome => Algorithm::RRome,
            Algo::Memit => Algorithm::Memit,
            Algo::Emmet => Algorithm::Emmet,
            Algo::AlphaEdit => Algorithm::AlphaEdit,
        }
    }
}

#[derive(clap::Args)]
pub struct EditArgs {
    /// Hugging Face GPT-2 model directory (never modified).
    #[arg(long)]
    pub model: PathBuf,
    /// Requests: JSON array/object/lines; pmedit, ROME/MEMIT CounterFact or EasyEdit shape.
    #[arg(long)]
    pub requests: PathBuf,
    /// The algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Emmet)]
    pub algo: Algo,
    /// Layers to edit (`17`, `13-17`); default from the presets.
    #[arg(long)]
    pub layers: Option<String>,
    /// C0 statistics file (default: <model>/stats.safetensors).
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// λ (mom2_update_weight, > 0).
    #[arg(long, value_parser = crate::ranges::positive_real)]
    pub lambda: Option<f64>,
    /// α (EMMET's regulariser, ≥ 0).
    #[arg(long, value_parser = crate::ranges::non_negative_real)]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub value: super::ValueOverrides,
    #[command(flatten)]
    pub objective: super::ObjectiveOverrides,
    /// Context templates: a JSON file, or `none` for the bare prompt (default: sampled).
    #[arg(long)]
    pub templates: Option<String>,
    /// Seed for template sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N requests.
    #[arg(long, value_parser = crate::ranges::positive)]
    pub limit: Option<usize>,
    /// Leave out requests whose key duplicates an earlier one's (the same subject twice), with a
    /// report, instead of refusing the batch.
    #[arg(long)]
    pub drop_dependent: bool,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write Δ per layer as safetensors.
    #[arg(long)]
    pub save_delta: Option<PathBuf>,
    /// Replace `--out` if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Reads requests (any accepted shape) from a file.
pub fn read_requests(path: &Path, limit: Option<usize>) -> Result<Vec<EditRequest>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading requests {}", path.display()))?;
    let mut reqs = EditRequest::parse_many(&text, &path.display().to_string())?;
    if let Some(n) = limit {
        reqs.truncate(n);
    }
    Ok(reqs)
}

pub fn run(args: EditArgs, choice: Target) -> Result<()> {
    // Checked before anything is loaded: no input is ever written over (docs in destination.rs).
    let mut owned = super::edit_inputs(&args.model, args.stats.as_deref(), args.templates.as_deref());
    owned.push(args.requests.clone());
    let inputs: Vec<&Path> = owned.iter().map(|p| p.as_path()).collect();
    let dest = Destination::new(&args.out, &inputs, Kind::EditedModel, args.overwrite)?;
    let delta_dest = args
        .save_delta
        .as_deref()
        .map(|p| Destination::new(p, &inputs, Kind::Delta, false))
        .transpose()?;
    let layers = args.layers.as_deref().map(super::parse_layers).transpose()?;
    let requests = read_requests(&args.requests, args.limit)?;
    let (m, sel) = super::load(&args.model, choice)?;
    if let Some(l) = &layers {
        super::check_layers(l, m.config.n_layer())?;
    }
    let model_dir = m.dir.clone();
    let out_dtype = super::file_dtype(&m);
    let mut editor = super::editor(m);
    let overrides = Overrides {
        layers,
        lambda: args.lambda,
        alpha: args.alpha,
        value: args.value.to_engine(),
        templates: Some(super::templates(args.templates.as_deref(), args.seed)?),
        drop_dependent: args.drop_dependent,
        report_targets: None,
        l2: args.objective.l2,
        nullspace_threshold: args.objective.nullspace_threshold,
        preserve_edits: args.objective.preserve_edits,
    };
    let algorithm = args.algo.into();
    let plan = editor.plan(algorithm, &overrides)?;
    super::add_statistics(&mut editor, &model_dir, args.stats.as_deref(), &plan.hparams.layers)?;

    let steps = plan.hparams.value.steps;
    let bar = ProgressBar::new((requests.len() * steps) as u64);
    bar.set_style(ProgressStyle::with_template("{msg:30} {bar:30} {pos}/{len} eta {eta}")?);
    let start = std::time::Instant::now();
    let report = block_on(editor.edit(&requests, &plan, |e| match e {
        EditEvent::Templates => bar.set_message(format!("context templates (seed {})", args.seed)),
        EditEvent::ValueStep { request, loss } => {
            bar.set_message(format!("value {request}: loss {:.3}", loss.total));
            bar.inc(1);
        }
        EditEvent::ValueDone { request } => bar.set_position(((request + 1) * steps) as u64),
        EditEvent::Layer { layer } => bar.set_message(format!("solving layer {layer}")),
    }))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    for d in &report.dropped {
        let r = &requests[d.index];
        eprintln!(
            "dropped request {} ({} → {}): its key at layer {} is that of request {} (cosine {:.6})",
            d.index, r.subject, r.target_new, d.layer, d.duplicate_of, d.cosine
        );
    }

    let record = record(&report, secs, &sel.description);
    super::write_edited_model(&dest, &editor, &model_dir, &record, out_dtype)?;
    if let Some(delta) = &delta_dest {
        delta.write(&pmedit_engine::save::delta_file::delta_to_bytes(
            report.deltas.iter().map(|d| (d.layer, d.delta.clone())).collect(),
        )?)?;
    }
    print_summary(&args, &report, record, secs, &sel.description)
}

/// What `pmedit-edit.json` records of an edit (and `--json` prints as `edit`).
fn record(report: &EditReport, secs: f64, device: &str) -> serde_json::Value {
    json!({
        "algorithm": report.plan.algorithm.name(),
        "hparams": report.plan.hparams,
        "templates": report.templates,
        "requests": report.requests,
        "dropped": report.dropped,
        "seconds": secs,
        "device": device,
        "peak_memory_bytes": crate::memory::peak_rss_bytes(),
        "value_losses": report.losses,
        // (max Lᵢᵢ / min Lᵢᵢ)² of λ·C0's Cholesky factor: a lower bound of its condition number.
        "c0_condition_lower_bound": report.condition.iter().map(|(l, c)| (l.to_string(), c)).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// The target probabilities before and after, as text or JSON.
fn print_summary(
    args: &EditArgs,
    report: &EditReport,
    record: serde_json::Value,
    secs: f64,
    device: &str,
) -> Result<()> {
    if args.json {
        let rows: Vec<_> = report
            .targets
            .iter()
            .map(|t| json!({"prompt": t.prompt, "target_new": t.target_new, "p_before": t.before, "p_after": t.after}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"edit": record, "targets": rows, "out": args.out}))?
        );
        return Ok(());
    }
    println!(
        "{} edited {} request(s) at layers {:?} in {secs:.1} s on {device}",
        report.plan.algorithm.name(),
        report.requests.len(),
        report.plan.hparams.layers,
    );
    for t in &report.targets {
        println!(
            "  {:50} → {:15} p {:.4} → {:.4}",
            t.prompt, t.target_new, t.before, t.after
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
