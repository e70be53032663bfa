//! `pmedit edit`: apply ROME / r-ROME / MEMIT / EMMET to a model and write the edited copy.

use pmedit_engine::block_on;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::edit::values::target_ids;
use pmedit_engine::edit::{Algorithm, EditEvent, EditRequest, apply_edits, drop_dependent_keys, presets::preset};
use pmedit_engine::predict::{encode_prompt, next_token_logprobs};
use serde_json::json;

use crate::destination::{Destination, Kind};
use crate::device::Target;
use pmedit_engine::save::WeightDtype;

pub struct EditArgs {
    pub model: PathBuf,
    pub requests: PathBuf,
    pub algo: String,
    pub layers: Option<Vec<usize>>,
    pub stats: Option<PathBuf>,
    pub lambda: Option<f64>,
    pub alpha: Option<f64>,
    pub value: super::ValueOverrides,
    pub templates: Option<String>,
    pub seed: u64,
    pub limit: Option<usize>,
    pub drop_dependent: bool,
    pub out: PathBuf,
    pub save_delta: Option<PathBuf>,
    pub overwrite: bool,
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

/// P(first target token | filled prompt).
fn target_prob(m: &pmedit_engine::load::LoadedModel, r: &EditRequest) -> Result<f32> {
    let ids = encode_prompt(&m.model, &m.tokenizer, &r.filled_prompt())?;
    let t = target_ids(&m.tokenizer, r)?[0] as usize;
    Ok(block_on(next_token_logprobs(&m.model, &ids))?[t].exp())
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
    let algorithm = Algorithm::parse(&args.algo)?;
    let requests = read_requests(&args.requests, args.limit)?;
    let (mut m, sel) = super::load(&args.model, choice)?;

    let mut hp = preset(algorithm, &m.config);
    hp.value.memory_budget = super::memory_budget(&sel);
    if let Some(l) = args.layers {
        super::check_layers(&l, m.config.n_layer)?;
        hp.layers = l;
    }
    if let Some(x) = args.lambda {
        hp.lambda = x;
    }
    if let Some(x) = args.alpha {
        hp.alpha = x;
    }
    args.value.apply(&mut hp.value);

    // C0 for every edited layer.
    let stats = super::load_preservation(&m, args.stats.as_deref(), &hp.layers, hp.lambda)?;

    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("context templates (seed {})", args.seed));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let templates = super::context_templates(args.templates.as_deref(), &m, algorithm, args.seed)?;
    spinner.finish_and_clear();
    let requests = if args.drop_dependent {
        let (kept, dropped) = block_on(drop_dependent_keys(
            &m.model,
            &m.tokenizer,
            &requests,
            &hp.layers,
            &templates,
        ))?;
        for d in &dropped {
            let r = &requests[d.index];
            eprintln!(
                "dropped request {} ({} → {}): its key at layer {} is that of request {} (cosine {:.6})",
                d.index, r.subject, r.target_new, d.layer, d.duplicate_of, d.cosine
            );
        }
        anyhow::ensure!(!kept.is_empty(), "every request was dropped");
        kept
    } else {
        requests
    };

    let before: Vec<f32> = requests
        .iter()
        .take(16)
        .map(|r| target_prob(&m, r))
        .collect::<Result<_>>()?;
    let bar = ProgressBar::new((requests.len() * hp.value.steps) as u64);
    bar.set_style(ProgressStyle::with_template("{msg:30} {bar:30} {pos}/{len} eta {eta}")?);
    let start = std::time::Instant::now();
    let outcome = block_on(apply_edits(
        &mut m.model,
        &m.tokenizer,
        &requests,
        algorithm,
        &hp,
        &templates,
        &stats,
        |e| match e {
            EditEvent::ValueStep { request, loss } => {
                bar.set_message(format!("value {request}: loss {:.3}", loss.total));
                bar.inc(1);
            }
            EditEvent::ValueDone { request } => {
                bar.set_position(((request + 1) * hp.value.steps) as u64);
            }
            EditEvent::Layer { layer } => bar.set_message(format!("solving layer {layer}")),
        },
    ))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let after: Vec<f32> = requests
        .iter()
        .take(16)
        .map(|r| target_prob(&m, r))
        .collect::<Result<_>>()?;

    let record = json!({
        "algorithm": algorithm.name(),
        "hparams": hp,
        "templates": templates,
        "requests": requests,
        "seconds": secs,
        "device": sel.description,
        "value_losses": outcome.losses,
        // (max Lᵢᵢ / min Lᵢᵢ)² of λ·C0's Cholesky factor: a lower bound of its condition number.
        "c0_condition_lower_bound": stats.iter().map(|(l, p)| (l.to_string(), p.factor.condition_estimate())).collect::<std::collections::BTreeMap<_, _>>(),
    });
    let mut files = pmedit_engine::save::model_side_files(&args.model)?;
    files.retain(|(name, _)| name != Kind::EditedModel.marker());
    files.push((
        Kind::EditedModel.marker().to_string(),
        serde_json::to_vec_pretty(&record)?,
    ));
    dest.write_dir(|dir| {
        Ok(pmedit_engine::save::write_model_files(
            &m.model,
            dir,
            &files,
            WeightDtype::F32,
        )?)
    })?;
    if let Some(delta) = &delta_dest {
        delta.write(&delta_bytes(&outcome.deltas)?)?;
    }

    if args.json {
        let rows: Vec<_> = requests
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(r, (b, a))| json!({"prompt": r.filled_prompt(), "target_new": r.target_new, "p_before": b, "p_after": a}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"edit": record, "targets": rows, "out": args.out}))?
        );
    } else {
        println!(
            "{} edited {} request(s) at layers {:?} in {secs:.1} s on {}",
            algorithm.name(),
            requests.len(),
            hp.layers,
            sel.description
        );
        for (r, (b, a)) in requests.iter().zip(before.iter().zip(&after)) {
            println!("  {:50} → {:15} p {:.4} → {:.4}", r.filled_prompt(), r.target_new, b, a);
        }
        println!("wrote {}", args.out.display());
    }
    Ok(())
}

/// Δ per layer (summed over sequential requests) as safetensors.
fn delta_bytes(deltas: &[pmedit_engine::edit::LayerDelta]) -> Result<Vec<u8>> {
    let mut per_layer: std::collections::BTreeMap<usize, burn::prelude::Tensor<2>> = Default::default();
    for d in deltas {
        let sum = match per_layer.remove(&d.layer) {
            Some(t) => t + d.delta.clone(),
            None => d.delta.clone(),
        };
        per_layer.insert(d.layer, sum);
    }
    let named = per_layer
        .into_iter()
        .map(|(l, t)| (format!("layer.{l}.delta"), t))
        .collect();
    let meta = HashMap::from([("format".to_string(), "pmedit-delta-1".to_string())]);
    Ok(pmedit_engine::save::tensors_to_bytes(named, meta)?)
}
