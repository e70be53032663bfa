//! `pmedit eval`: the paper's experiments. Samples CounterFact/zsRE records into batches, edits,
//! scores every edited record next to the unedited model, and writes per-record JSON lines, a
//! summary (JSON + CSV) and a Markdown table shaped like the paper's Table 1. Lists of batch
//! sizes, λ values and algorithms make a sweep; each grid point has its own directory, so an
//! interrupted sweep resumes where it stopped, and SVG plots of each metric are drawn.

use pmedit_engine::block_on;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::edit::{Algorithm, Overrides};
use pmedit_engine::eval::dataset::read_records;
use pmedit_engine::eval::records::{GeOptions, Summary};
use pmedit_engine::eval::session::{EvalEvent, EvalOutcome, EvalSpec, LifelongPoint, lifelong, run_eval};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::destination::{Destination, Kind, write_file_atomic};
use crate::device::Target;
use crate::plot::{Series, line_chart};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Hugging Face GPT-2 model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// CounterFact (authors' or EasyEdit format), known_1000 or zsRE (MEND) records.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Algorithm(s) (a comma list sweeps them).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "emmet")]
    pub algo: Vec<super::edit::Algo>,
    /// Layers to edit (`17`, `13-17`); default from the presets. `;` separates alternatives to
    /// compare (e.g. `1;0-1` for single vs distributed layers).
    #[arg(long)]
    pub layers: Option<String>,
    /// Records per batch.
    #[arg(long, default_value_t = 1, value_parser = crate::ranges::positive)]
    pub batch_size: usize,
    /// Sweep over batch sizes, e.g. `1,4,16,64,256`.
    #[arg(long)]
    pub batch_sizes: Option<String>,
    /// λ (default from the presets).
    #[arg(long, value_parser = crate::ranges::positive_real)]
    pub lambda: Option<f64>,
    /// Sweep over λ, e.g. `1,10,100,1000,10000`.
    #[arg(long)]
    pub lambdas: Option<String>,
    /// α (EMMET).
    #[arg(long, value_parser = crate::ranges::non_negative_real)]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub value: super::ValueOverrides,
    #[command(flatten)]
    pub objective: super::ObjectiveOverrides,
    /// Batches per grid point (default: as many as the records fill).
    #[arg(long, value_parser = crate::ranges::positive)]
    pub num_batches: Option<usize>,
    /// Apply batch after batch to the same model, scoring all records so far after each.
    #[arg(long)]
    pub sequential: bool,
    /// Seed of the batch sampling and context templates.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generation entropy (GE): length in tokens of the text sampled (top-k 5) from each generation
    /// prompt, prompt included (the paper: 100; capped by the model's context); 0 skips GE.
    #[arg(long, default_value_t = 100)]
    pub ge_tokens: usize,
    /// C0 statistics (default: <model>/stats.safetensors).
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// Context templates: a JSON file, or `none` (default: sampled from the model).
    #[arg(long)]
    pub templates: Option<String>,
    /// Use only the first N records of the dataset.
    #[arg(long, value_parser = crate::ranges::positive)]
    pub limit: Option<usize>,
    /// Skip malformed records (counted) instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Output directory (created; existing grid points are kept and skipped).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summaries as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One grid point's summary (summary.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointSummary {
    pub algorithm: String,
    pub layers: Vec<usize>,
    pub batch_size: usize,
    pub lambda: f64,
    pub alpha: f64,
    pub sequential: bool,
    pub batches: usize,
    pub records: usize,
    pub before: Summary,
    pub after: Summary,
    pub edit_seconds: f64,
    /// Sequential runs: the means over every record edited so far, after each batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifelong: Vec<LifelongPoint>,
}

fn list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<T>()
                .with_context(|| format!("`{x}` in {what} is not a number"))
        })
        .collect()
}

/// Everything besides the grid's axes (algorithms, layers, batch sizes, λ) that decides a grid
/// point's result. A rerun into the same `--out` skips finished points only when these agree.
fn run_settings(args: &EvalArgs) -> serde_json::Value {
    let path = |p: &Path| {
        p.canonicalize()
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let v = &args.value;
    json!({
        "model": path(&args.model),
        "dataset": path(&args.dataset),
        "dataset_bytes": std::fs::metadata(&args.dataset).map(|m| m.len()).ok(),
        "stats": args.stats.as_deref().map(path),
        "templates": args.templates.as_deref().map(|t| if t == "none" { t.to_string() } else { path(Path::new(t)) }),
        "alpha": args.alpha,
        "steps": v.steps,
        "v_lr": v.v_lr,
        "clamp_norm_factor": v.clamp_norm_factor,
        "kl_factor": v.kl_factor,
        "v_weight_decay": v.v_weight_decay,
        "stop_at_top1": v.stop_at_top1,
        "norm_anchor": v.norm_anchor,
        "l2": args.objective.l2,
        "nullspace_threshold": args.objective.nullspace_threshold,
        "preserve_edits": args.objective.preserve_edits,
        "num_batches": args.num_batches,
        "sequential": args.sequential,
        "seed": args.seed,
        "ge_tokens": args.ge_tokens,
        "limit": args.limit,
        "skip_invalid": args.skip_invalid,
    })
}

/// Refuses to resume into `out` when it holds an experiment run with other settings.
fn check_same_settings(out: &Path, settings: &serde_json::Value) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(out.join(Kind::Eval.marker())) else {
        return Ok(());
    };
    let earlier: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", out.join(Kind::Eval.marker()).display()))?;
    let earlier = &earlier["settings"];
    let differ: Vec<String> = settings
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| earlier.get(k.as_str()) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k} {} ≠ {v}",
                earlier.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect();
    ensure!(
        differ.is_empty(),
        "--out {} holds an experiment run with other settings ({}): its finished grid points would not match; \
         choose another --out",
        out.display(),
        differ.join(", ")
    );
    Ok(())
}

fn point_dir(out: &Path, algo: Algorithm, layers: &[usize], b: usize, lambda: f64) -> PathBuf {
    let l: Vec<String> = layers.iter().map(|x| x.to_string()).collect();
    out.join(format!("{}-L{}-b{b}-lambda{lambda}", algo.name(), l.join("_")))
}

pub fn run(args: EvalArgs, choice: Target) -> Result<()> {
    let algos: Vec<Algorithm> = args.algo.iter().map(|&a| a.into()).collect();
    let sizes: Vec<usize> = match &args.batch_sizes {
        Some(s) => list(s, "--batch-sizes")?,
        None => vec![args.batch_size],
    };
    ensure!(sizes.iter().all(|&b| b > 0), "batch sizes must be positive");
    let text = std::fs::read_to_string(&args.dataset).with_context(|| format!("reading {}", args.dataset.display()))?;
    let (mut records, report) = read_records(&text, &args.dataset.display().to_string(), args.skip_invalid)?;
    if !report.skipped.is_empty() {
        eprintln!(
            "skipped {} malformed records (first: {})",
            report.skipped.len(),
            report.skipped[0]
        );
    }
    if let Some(n) = args.limit {
        records.truncate(n);
    }
    let mut owned = super::edit_inputs(&args.model, args.stats.as_deref(), args.templates.as_deref());
    owned.push(args.dataset.clone());
    let inputs: Vec<&Path> = owned.iter().map(|p| p.as_path()).collect();
    let dest = Destination::new(&args.out, &inputs, Kind::Eval, false)?;
    let settings = run_settings(&args);
    check_same_settings(&args.out, &settings)?;
    // Every list is parsed and checked before anything is written.
    let given_lambdas: Option<Vec<f64>> = args
        .lambdas
        .as_deref()
        .map(|s| {
            list::<String>(s, "--lambdas")?
                .iter()
                .map(|x| crate::ranges::positive_real(x).map_err(|why| anyhow::anyhow!("--lambdas: {x}: {why}")))
                .collect::<Result<Vec<f64>>>()
        })
        .transpose()?;
    let given_layers: Option<Vec<Vec<usize>>> = args
        .layers
        .as_deref()
        .map(|s| s.split(';').map(super::parse_layers).collect::<Result<_>>())
        .transpose()?;
    let templates = super::templates(args.templates.as_deref(), args.seed)?;
    let (m, _) = super::load(&args.model, choice)?;
    for layers in given_layers.iter().flatten() {
        super::check_layers(layers, m.config.n_layer())?;
    }
    let model_dir = m.dir.clone();
    let mut editor = super::editor(m);
    dest.create_dir()?;
    write_file_atomic(
        &args.out.join(Kind::Eval.marker()),
        &serde_json::to_vec_pretty(&json!({ "settings": settings }))?,
    )?;

    let mut points: Vec<PointSummary> = Vec::new();
    for &algo in &algos {
        let base = editor.plan(algo, &Overrides::default())?.hparams;
        let layer_sets: Vec<Vec<usize>> = match &given_layers {
            Some(sets) => sets.clone(),
            None => vec![base.layers.clone()],
        };
        let lambdas: Vec<f64> = match (&given_lambdas, args.lambda) {
            (Some(l), _) => l.clone(),
            (None, Some(x)) => vec![x],
            (None, None) => vec![base.lambda],
        };
        for layers in &layer_sets {
            for &lambda in &lambdas {
                let overrides = Overrides {
                    layers: Some(layers.clone()),
                    lambda: Some(lambda),
                    alpha: args.alpha,
                    value: args.value.to_engine(),
                    templates: Some(templates.clone()),
                    drop_dependent: false,
                    report_targets: Some(0),
                    l2: args.objective.l2,
                    nullspace_threshold: args.objective.nullspace_threshold,
                    preserve_edits: args.objective.preserve_edits,
                };
                let plan = editor.plan(algo, &overrides)?;
                super::add_statistics(&mut editor, &model_dir, args.stats.as_deref(), &plan.hparams.layers)?;
                let steps = plan.hparams.value.steps;
                for &b in &sizes {
                    let dir = point_dir(&args.out, algo, layers, b, lambda);
                    let summary_path = dir.join("summary.json");
                    if let Ok(done) = std::fs::read_to_string(&summary_path)
                        && let Ok(p) = serde_json::from_str::<PointSummary>(&done)
                    {
                        eprintln!("{}: done already, skipping", dir.display());
                        points.push(p);
                        continue;
                    }
                    let spec = EvalSpec {
                        plan: plan.clone(),
                        batch_size: b,
                        num_batches: args.num_batches,
                        sequential: args.sequential,
                        seed: args.seed,
                        ge: (args.ge_tokens > 0).then_some(GeOptions {
                            tokens: args.ge_tokens,
                            seed: args.seed,
                        }),
                    };
                    let n_batches =
                        pmedit_engine::eval::session::sample_batches(records.len(), b, args.num_batches, args.seed)
                            .len();
                    let bar = ProgressBar::new((n_batches * b.min(records.len()) * steps) as u64);
                    bar.set_style(ProgressStyle::with_template("{msg:40} {bar:30} {pos}/{len} eta {eta}")?);
                    bar.set_message(format!("{} L{layers:?} b={b} λ={lambda}", algo.name()));
                    let outcome = block_on(run_eval(&mut editor, &records, &spec, |e| match e {
                        EvalEvent::ValueStep => bar.inc(1),
                        EvalEvent::BatchDone { batch, .. } => bar.set_position(((batch + 1) * b * steps) as u64),
                        _ => {}
                    }))?;
                    bar.finish_and_clear();
                    let point = write_point(&dir, &spec, &outcome)?;
                    eprintln!(
                        "{}: ES {:.1} PS {:.1} NS {:.1} GE {:.1} S {:.1}",
                        dir.display(),
                        point.after.counterfact.map_or(f64::NAN, |c| c.es),
                        point.after.counterfact.map_or(f64::NAN, |c| c.ps),
                        point.after.counterfact.map_or(f64::NAN, |c| c.ns),
                        point.after.counterfact.and_then(|c| c.ge).unwrap_or(f64::NAN),
                        point.after.counterfact.map_or(f64::NAN, |c| c.s),
                    );
                    points.push(point);
                }
            }
        }
    }
    write_reports(&args.out, &points)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&points)?);
    } else {
        print!("{}", markdown_table(&points));
        println!("reports in {}", args.out.display());
    }
    Ok(())
}

fn write_point(dir: &Path, spec: &EvalSpec, o: &EvalOutcome) -> Result<PointSummary> {
    let mut lines = String::new();
    for row in &o.rows {
        lines.push_str(&serde_json::to_string(row)?);
        lines.push('\n');
    }
    write_file_atomic(&dir.join("records.jsonl"), lines.as_bytes())?;
    let point = PointSummary {
        algorithm: spec.plan.algorithm.name().into(),
        layers: spec.plan.hparams.layers.clone(),
        batch_size: spec.batch_size,
        lambda: spec.plan.hparams.lambda,
        alpha: spec.plan.hparams.alpha,
        sequential: spec.sequential,
        batches: o.batches.len(),
        records: o.batches.iter().map(Vec::len).sum(),
        before: o.before,
        after: o.after,
        edit_seconds: o.edit_seconds.iter().sum(),
        lifelong: if spec.sequential { lifelong(o) } else { Vec::new() },
    };
    write_file_atomic(
        &dir.join("hparams.json"),
        &serde_json::to_vec_pretty(&json!({"hparams": spec.plan.hparams, "batches": o.batches}))?,
    )?;
    // Written last: its presence marks the grid point as complete.
    write_file_atomic(&dir.join("summary.json"), &serde_json::to_vec_pretty(&point)?)?;
    Ok(point)
}

/// A metric's column name and how to read it.
type Metric = (
    &'static str,
    fn(&pmedit_engine::eval::metrics::CounterfactMetrics) -> f64,
);

const METRICS: [Metric; 8] = [
    ("ES", |c| c.es),
    ("PS", |c| c.ps),
    ("NS", |c| c.ns),
    ("EM", |c| c.em),
    ("PM", |c| c.pm),
    ("NM", |c| c.nm),
    ("GE", |c| c.ge.unwrap_or(f64::NAN)),
    ("S", |c| c.s),
];

fn fmt(x: f64) -> String {
    if x.is_finite() { format!("{x:.1}") } else { "–".into() }
}

/// Table 1 shape: one row per grid point, plus the unedited model.
pub fn markdown_table(points: &[PointSummary]) -> String {
    let mut s = String::new();
    let zsre = points.iter().any(|p| p.after.zsre.is_some());
    if zsre {
        s.push_str("| Algorithm | Layers | Batch | λ | Efficacy | Generalization | Specificity |\n|---|---|---|---|---|---|---|\n");
        if let Some(z) = points.first().and_then(|p| p.before.zsre) {
            let _ = writeln!(
                s,
                "| unedited | | | | {} | {} | {} |",
                fmt(z.efficacy),
                fmt(z.generalization),
                fmt(z.specificity)
            );
        }
        for p in points {
            if let Some(z) = p.after.zsre {
                let _ = writeln!(
                    s,
                    "| {} | {:?} | {} | {} | {} | {} | {} |",
                    p.algorithm,
                    p.layers,
                    p.batch_size,
                    p.lambda,
                    fmt(z.efficacy),
                    fmt(z.generalization),
                    fmt(z.specificity)
                );
            }
        }
        return s;
    }
    s.push_str("| Algorithm | Layers | Batch | λ | ES | PS | NS | EM | PM | NM | GE | S |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    if let Some(c) = points.first().and_then(|p| p.before.counterfact) {
        let cells: Vec<String> = METRICS.iter().map(|(_, f)| fmt(f(&c))).collect();
        let _ = writeln!(s, "| unedited | | | | {} |", cells.join(" | "));
    }
    for p in points {
        if let Some(c) = p.after.counterfact {
            let cells: Vec<String> = METRICS.iter().map(|(_, f)| fmt(f(&c))).collect();
            let _ = writeln!(
                s,
                "| {} | {:?} | {} | {} | {} |",
                p.algorithm,
                p.layers,
                p.batch_size,
                p.lambda,
                cells.join(" | ")
            );
        }
    }
    s
}

fn write_reports(out: &Path, points: &[PointSummary]) -> Result<()> {
    let mut csv = String::from(
        "algorithm,layers,batch_size,lambda,alpha,sequential,records,edit_seconds,phase,ES,PS,NS,EM,PM,NM,GE,S,zsre_efficacy,zsre_generalization,zsre_specificity\n",
    );
    for p in points {
        for (phase, s) in [("before", &p.before), ("after", &p.after)] {
            let c = s.counterfact.unwrap_or_default();
            let z = s.zsre.unwrap_or_default();
            let cf: Vec<String> = METRICS
                .iter()
                .map(|(_, f)| {
                    if s.counterfact.is_some() {
                        f(&c).to_string()
                    } else {
                        String::new()
                    }
                })
                .collect();
            let zs = if s.zsre.is_some() {
                format!("{},{},{}", z.efficacy, z.generalization, z.specificity)
            } else {
                ",,".into()
            };
            let layers: Vec<String> = p.layers.iter().map(|l| l.to_string()).collect();
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{:.3},{phase},{},{zs}",
                p.algorithm,
                layers.join(" "),
                p.batch_size,
                p.lambda,
                p.alpha,
                p.sequential,
                p.records,
                p.edit_seconds,
                cf.join(",")
            );
        }
    }
    write_file_atomic(&out.join("summary.csv"), csv.as_bytes())?;
    write_file_atomic(&out.join("summary.json"), &serde_json::to_vec_pretty(points)?)?;
    write_file_atomic(&out.join("table.md"), markdown_table(points).as_bytes())?;
    write_lifelong(out, points)?;
    // Plots: each metric vs batch size (when several) and vs λ (when several), one line per
    // algorithm and layer set (and λ / batch size).
    let cf = points.iter().any(|p| p.after.counterfact.is_some());
    for (axis, label) in [("batch", "batch size"), ("lambda", "λ")] {
        let xs = |p: &PointSummary| if axis == "batch" { p.batch_size as f64 } else { p.lambda };
        let distinct = {
            let mut v: Vec<u64> = points.iter().map(|p| xs(p).to_bits()).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        if distinct < 2 || !cf {
            continue;
        }
        for (name, f) in METRICS {
            let mut series: Vec<Series> = Vec::new();
            for p in points {
                let key = if axis == "batch" {
                    format!("{} L{:?} λ={}", p.algorithm, p.layers, p.lambda)
                } else {
                    format!("{} L{:?} b={}", p.algorithm, p.layers, p.batch_size)
                };
                let y = p.after.counterfact.map_or(f64::NAN, |c| f(&c));
                if !y.is_finite() {
                    continue;
                }
                match series.iter_mut().find(|s| s.name == key) {
                    Some(s) => s.points.push((xs(p), y)),
                    None => series.push(Series {
                        name: key,
                        points: vec![(xs(p), y)],
                    }),
                }
            }
            if series.is_empty() {
                continue;
            }
            for s in &mut series {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            // Scores are percentages; GE (×100 bits) runs to several hundred.
            let y_max = if name == "GE" { 1000.0 } else { 100.0 };
            let svg = line_chart(&format!("{name} vs {label}"), label, name, y_max, &series);
            write_file_atomic(&out.join(format!("{name}-vs-{axis}.svg")), svg.as_bytes())?;
        }
    }
    Ok(())
}

/// The lifelong report of sequential runs: `lifelong.csv` (one row per grid point and batch),
/// `lifelong.md` (per grid point: the metrics after the last batch and the first batch at which
/// ES fell below 90) and `lifelong-{metric}.svg` (each metric vs the number of edits so far, one
/// line per grid point).
fn write_lifelong(out: &Path, points: &[PointSummary]) -> Result<()> {
    let runs: Vec<&PointSummary> = points.iter().filter(|p| !p.lifelong.is_empty()).collect();
    if runs.is_empty() {
        return Ok(());
    }
    let name = |p: &PointSummary| format!("{} L{:?} b={}", p.algorithm, p.layers, p.batch_size);
    let mut csv =
        String::from("algorithm,layers,batch_size,lambda,batch,edits,ES,PS,NS,EM,PM,NM,S,NS_before,NM_before\n");
    let mut md = String::from(
        "| Algorithm | Layers | Batch | Edits | ES | PS | NS | S | NM drift | ES < 90 from batch |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in &runs {
        let layers: Vec<String> = p.layers.iter().map(|l| l.to_string()).collect();
        for q in &p.lifelong {
            let (Some(a), Some(b)) = (q.after.counterfact, q.before.counterfact) else {
                continue;
            };
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                p.algorithm,
                layers.join(" "),
                p.batch_size,
                p.lambda,
                q.batch,
                q.edits,
                a.es,
                a.ps,
                a.ns,
                a.em,
                a.pm,
                a.nm,
                a.s,
                b.ns,
                b.nm
            );
        }
        let last = p.lifelong.last().expect("non-empty");
        let first_drop = p
            .lifelong
            .iter()
            .find(|q| q.after.counterfact.is_some_and(|c| c.es < 90.0))
            .map_or("never".to_string(), |q| q.batch.to_string());
        if let (Some(a), Some(b)) = (last.after.counterfact, last.before.counterfact) {
            let _ = writeln!(
                md,
                "| {} | {:?} | {} | {} | {} | {} | {} | {} | {} | {first_drop} |",
                p.algorithm,
                p.layers,
                p.batch_size,
                last.edits,
                fmt(a.es),
                fmt(a.ps),
                fmt(a.ns),
                fmt(a.s),
                fmt(b.nm - a.nm),
            );
        }
    }
    write_file_atomic(&out.join("lifelong.csv"), csv.as_bytes())?;
    write_file_atomic(&out.join("lifelong.md"), md.as_bytes())?;
    for (metric, f) in METRICS {
        if metric == "GE" {
            continue;
        }
        let series: Vec<Series> = runs
            .iter()
            .map(|p| Series {
                name: name(p),
                points: p
                    .lifelong
                    .iter()
                    .filter_map(|q| q.after.counterfact.map(|c| (q.edits as f64, f(&c))))
                    .filter(|(_, y)| y.is_finite())
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let svg = line_chart(
            &format!("{metric} of all edits so far (sequential)"),
            "edits so far",
            metric,
            100.0,
            &series,
        );
        write_file_atomic(&out.join(format!("lifelong-{metric}.svg")), svg.as_bytes())?;
    }
    Ok(())
}
