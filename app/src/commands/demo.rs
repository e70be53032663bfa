//! `pmedit demo`: the quick start. Loads the built-in demo model, shows what it believes about a
//! few facts, applies one ROME edit and one EMMET batch edit of held-out facts, and prints the
//! predictions before and after with the CounterFact metrics.

use pmedit_engine::block_on;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pmedit_engine::edit::{Algorithm, EditRequest, Editor, Overrides, TemplateChoice};
use pmedit_engine::eval::dataset::{Benchmark, Record, read_records};
use pmedit_engine::eval::records::{Summary, score_records, summarize};
use pmedit_engine::predict::{TokenLogProb, top_k};
use serde_json::json;

use crate::device::Target;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The model directory (with stats.safetensors and heldout.json, as `train-demo` writes).
    #[arg(long, default_value = "public/models/demo")]
    pub model: PathBuf,
    /// Algorithm of the single-fact edit.
    #[arg(long, value_enum, default_value_t = super::edit::Algo::Rome)]
    pub algo: super::edit::Algo,
    /// Your own fact instead of a held-out one: `subject|prompt|target` (the prompt holds `{}` or
    /// the subject itself), e.g. `Danielle Darrieux|The mother tongue of {} is|English`.
    #[arg(long)]
    pub fact: Option<String>,
    /// Held-out facts in the batch edit (EMMET, or MEMIT with `--algo memit`).
    #[arg(long, default_value_t = 8, value_parser = crate::ranges::positive)]
    pub batch: usize,
    /// Seed for the choice of facts and the context templates.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn parse_fact(text: &str, m: &Editor) -> Result<Record> {
    let parts: Vec<&str> = text.split('|').map(str::trim).collect();
    let [subject, prompt, target] = parts[..] else {
        bail!("--fact must be `subject|prompt|target`, e.g. `Danielle Darrieux|The mother tongue of {{}} is|English`");
    };
    let mut request = EditRequest::new(prompt, subject, target)?;
    // The "true" object is what the model says now.
    let now = block_on(top_k(m.model(), m.tokenizer(), &request.filled_prompt(), 1))?;
    request.target_true = Some(now[0].token.trim().to_string());
    Ok(Record {
        case_id: 0,
        benchmark: Benchmark::CounterFact,
        request,
        paraphrase_prompts: Vec::new(),
        neighborhood: Vec::new(),
        generation_prompts: Vec::new(),
    })
}

fn top3(predictions: &[TokenLogProb]) -> String {
    predictions
        .iter()
        .map(|t| format!("{} {:.2}", t.token.trim(), t.logprob.exp()))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Before/after means of `records` and the edited model: one edit of all of them, scored on the
/// same prompts before and after.
struct Outcome {
    before: Summary,
    after: Summary,
    /// The layers edited.
    layers: Vec<usize>,
    /// Top-3 predictions of each probe prompt after the edit.
    probes_after: Vec<Vec<TokenLogProb>>,
}

/// Edits `records` into the model with `algorithm`'s presets, scores them and the `probes`, and
/// undoes the edit.
fn run_one(
    editor: &mut Editor,
    algorithm: Algorithm,
    records: &[Record],
    seed: u64,
    probes: &[String],
) -> Result<Outcome> {
    let overrides = Overrides {
        templates: Some(TemplateChoice::Sampled { seed }),
        report_targets: Some(0),
        ..Default::default()
    };
    let plan = editor.plan(algorithm, &overrides)?;
    let before = summarize(&block_on(score_records(
        editor.model(),
        editor.tokenizer(),
        records,
        None,
    ))?);
    let reqs: Vec<EditRequest> = records.iter().map(|r| r.request.clone()).collect();
    block_on(editor.edit(&reqs, &plan, |_| {}))?;
    let after = summarize(&block_on(score_records(
        editor.model(),
        editor.tokenizer(),
        records,
        None,
    ))?);
    let probes_after = probes
        .iter()
        .map(|p| Ok(block_on(top_k(editor.model(), editor.tokenizer(), p, 3))?))
        .collect::<Result<_>>()?;
    editor.undo();
    Ok(Outcome {
        before,
        after,
        layers: plan.hparams.layers,
        probes_after,
    })
}

fn row(name: &str, s: &Summary) -> String {
    let c = s.counterfact.unwrap_or_default();
    let f = |x: f64| {
        if x.is_finite() {
            format!("{x:6.1}")
        } else {
            "     –".into()
        }
    };
    format!(
        "  {name:24}{}{}{}{}{}{}",
        f(c.es),
        f(c.ps),
        f(c.ns),
        f(c.em),
        f(c.nm),
        f(c.s)
    )
}

/// The default model path, also found from outside the repository when `PMEDIT_ROOT` (set by
/// `scripts/pmedit`) names it.
fn resolve(model: PathBuf) -> PathBuf {
    if model.exists() || model.is_absolute() {
        return model;
    }
    match std::env::var_os("PMEDIT_ROOT") {
        Some(root) if Path::new(&root).join(&model).exists() => Path::new(&root).join(model),
        _ => model,
    }
}

pub fn run(mut args: DemoArgs, choice: Target) -> Result<()> {
    args.model = resolve(args.model);
    let algorithm: Algorithm = args.algo.into();
    let (m, sel) = super::load(&args.model, choice).with_context(|| {
        format!(
            "the demo model is missing: {} (run `pmedit train-demo` to rebuild it)",
            args.model.display()
        )
    })?;
    let (config, model_dir) = (m.config.clone(), m.dir.clone());
    let mut editor = super::editor(m);
    let layers = [algorithm, Algorithm::Emmet, Algorithm::Memit]
        .iter()
        .map(|&a| Ok(editor.plan(a, &Overrides::default())?.hparams.layers))
        .collect::<Result<Vec<_>>>()?
        .concat();
    super::add_statistics(&mut editor, &model_dir, None, &layers)?;
    let heldout_path = args.model.join("heldout.json");
    let text = std::fs::read_to_string(&heldout_path).with_context(|| format!("reading {}", heldout_path.display()))?;
    let (heldout, _) = read_records(&text, &heldout_path.display().to_string(), false)?;
    let start = (args.seed as usize * 7) % heldout.len();
    let single = match &args.fact {
        Some(f) => parse_fact(f, &editor)?,
        None => heldout[start].clone(),
    };
    let batch: Vec<Record> = (1..=args.batch.max(1))
        .map(|k| heldout[(start + k) % heldout.len()].clone())
        .collect();
    let batch_algo = if algorithm == Algorithm::Memit {
        Algorithm::Memit
    } else {
        Algorithm::Emmet
    };

    if !args.json {
        println!(
            "pmedit demo — {} ({} layers, d = {}, {:.1} M parameters) on {}\n",
            args.model.display(),
            config.n_layer(),
            config.d_model(),
            config.num_params() as f64 / 1e6,
            sel.description
        );
        println!("What the model believes (top-3 next tokens):");
        for r in std::iter::once(&single).chain(batch.iter().take(3)) {
            let p = r.request.filled_prompt();
            println!(
                "  {p:58} → {}",
                top3(&block_on(top_k(editor.model(), editor.tokenizer(), &p, 3))?)
            );
        }
        println!();
    }
    let r = &single.request;
    let mut probes = vec![("rewrite", r.filled_prompt())];
    if let Some(p) = single.paraphrase_prompts.first() {
        probes.push(("paraphrase", p.clone()));
    }
    if let Some(n) = single.neighborhood.first() {
        probes.push(("neighbour", n.prompt.clone()));
    }
    let prompts: Vec<String> = probes.iter().map(|(_, p)| p.clone()).collect();
    let probes_before = prompts
        .iter()
        .map(|p| Ok(block_on(top_k(editor.model(), editor.tokenizer(), p, 3))?))
        .collect::<Result<Vec<_>>>()?;
    let t0 = std::time::Instant::now();
    let one = run_one(
        &mut editor,
        algorithm,
        std::slice::from_ref(&single),
        args.seed,
        &prompts,
    )?;
    let one_secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let many = run_one(&mut editor, batch_algo, &batch, args.seed, &[])?;
    let many_secs = t1.elapsed().as_secs_f64();

    if args.json {
        let preds: Vec<_> = probes
            .iter()
            .zip(probes_before.iter().zip(&one.probes_after))
            .map(|((k, p), (before, after))| json!({"kind": k, "prompt": p, "before": before, "after": after}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": args.model, "device": sel.description,
                "single": {"algorithm": algorithm.name(), "request": r, "predictions": preds,
                           "before": one.before, "after": one.after, "seconds": one_secs},
                "batch": {"algorithm": batch_algo.name(), "requests": batch.iter().map(|b| &b.request).collect::<Vec<_>>(),
                          "before": many.before, "after": many.after, "seconds": many_secs},
            }))?
        );
        return Ok(());
    }
    println!(
        "{} edit: \"{}\" → {} (was {}), layers {:?}, {one_secs:.1} s",
        algorithm.name().to_uppercase(),
        r.filled_prompt(),
        r.target_new,
        r.target_true.as_deref().unwrap_or("?"),
        one.layers
    );
    for ((kind, p), (before, after)) in probes.iter().zip(probes_before.iter().zip(&one.probes_after)) {
        println!("  {kind:10} {p}");
        println!("    before: {}", top3(before));
        println!("    after:  {}", top3(after));
    }
    println!(
        "\n{} batch edit of {} held-out facts, layers {:?}, {many_secs:.1} s",
        batch_algo.name().to_uppercase(),
        batch.len(),
        many.layers
    );
    for b in &batch {
        println!(
            "  {:58} → {} (was {})",
            b.request.filled_prompt(),
            b.request.target_new,
            b.request.target_true.as_deref().unwrap_or("?")
        );
    }
    println!("\nCounterFact metrics (×100)    ES    PS    NS    EM    NM     S");
    let n1 = format!("{} (1 fact)", algorithm.name());
    println!("{}", row(&format!("{n1} before"), &one.before));
    println!("{}", row(&format!("{n1} after"), &one.after));
    let n2 = format!("{} ({} facts)", batch_algo.name(), batch.len());
    println!("{}", row(&format!("{n2} before"), &many.before));
    println!("{}", row(&format!("{n2} after"), &many.after));
    println!("\nES/PS: the new object beats the true one after the rewrite prompt / its paraphrases;");
    println!(
        "NS: neighbouring subjects still prefer the true object. Try `--fact \"subject|prompt with {{}}|target\"`."
    );
    Ok(())
}
