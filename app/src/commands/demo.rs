//! `pmedit demo`: the quick start. Loads the built-in demo model, shows what it believes about a
//! few facts, applies one ROME edit and one EMMET batch edit of held-out facts, and prints the
//! predictions before and after with the CounterFact metrics.

use pmedit_engine::block_on;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pmedit_engine::edit::{Algorithm, EditRequest, apply_edits, presets::preset};
use pmedit_engine::eval::dataset::{Benchmark, Record, read_records};
use pmedit_engine::eval::records::{Summary, score_records, summarize};
use pmedit_engine::load::LoadedModel;
use pmedit_engine::predict::top_k;
use serde_json::json;

use crate::device::Target;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The model directory (with stats.safetensors and heldout.json, as `train-demo` writes).
    #[arg(long, default_value = "public/models/demo")]
    pub model: PathBuf,
    /// Algorithm of the single-fact edit: rome, r-rome, memit or emmet.
    #[arg(long, default_value = "rome")]
    pub algo: String,
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

fn parse_fact(text: &str, m: &LoadedModel) -> Result<Record> {
    let parts: Vec<&str> = text.split('|').map(str::trim).collect();
    let [subject, prompt, target] = parts[..] else {
        bail!("--fact must be `subject|prompt|target`, e.g. `Danielle Darrieux|The mother tongue of {{}} is|English`");
    };
    let mut request = EditRequest::new(prompt, subject, target)?;
    // The "true" object is what the model says now.
    let now = block_on(top_k(&m.model, &m.tokenizer, &request.filled_prompt(), 1))?;
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

fn top3(model: &pmedit_engine::Gpt2, tokenizer: &pmedit_engine::Gpt2Tokenizer, prompt: &str) -> Result<String> {
    Ok(block_on(top_k(model, tokenizer, prompt, 3))?
        .iter()
        .map(|t| format!("{} {:.2}", t.token.trim(), t.logprob.exp()))
        .collect::<Vec<_>>()
        .join(" | "))
}

/// Before/after means of `records` and the edited model: one edit of all of them, scored on the
/// same prompts before and after.
struct Outcome {
    before: Summary,
    after: Summary,
}

fn run_one(
    m: &LoadedModel,
    algorithm: Algorithm,
    records: &[Record],
    seed: u64,
) -> Result<(Outcome, pmedit_engine::Gpt2)> {
    let hp = preset(algorithm, &m.config);
    let stats = super::load_preservation(m, None, &hp.layers, hp.lambda)?;
    let templates = super::context_templates(None, m, algorithm, seed)?;
    let before = summarize(&block_on(score_records(&m.model, &m.tokenizer, records, None))?);
    let mut edited = m.model.clone();
    let reqs: Vec<EditRequest> = records.iter().map(|r| r.request.clone()).collect();
    block_on(apply_edits(
        &mut edited,
        &m.tokenizer,
        &reqs,
        algorithm,
        &hp,
        &templates,
        &stats,
        |_| {},
    ))?;
    let after = summarize(&block_on(score_records(&edited, &m.tokenizer, records, None))?);
    Ok((Outcome { before, after }, edited))
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
    let algorithm = Algorithm::parse(&args.algo)?;
    let (m, sel) = super::load(&args.model, choice).with_context(|| {
        format!(
            "the demo model is missing: {} (run `pmedit train-demo` to rebuild it)",
            args.model.display()
        )
    })?;
    let heldout_path = args.model.join("heldout.json");
    let text = std::fs::read_to_string(&heldout_path).with_context(|| format!("reading {}", heldout_path.display()))?;
    let (heldout, _) = read_records(&text, &heldout_path.display().to_string(), false)?;
    let start = (args.seed as usize * 7) % heldout.len();
    let single = match &args.fact {
        Some(f) => parse_fact(f, &m)?,
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
            m.config.n_layer,
            m.config.n_embd,
            m.config.num_params() as f64 / 1e6,
            sel.description
        );
        println!("What the model believes (top-3 next tokens):");
        for r in std::iter::once(&single).chain(batch.iter().take(3)) {
            let p = r.request.filled_prompt();
            println!("  {p:58} → {}", top3(&m.model, &m.tokenizer, &p)?);
        }
        println!();
    }
    let t0 = std::time::Instant::now();
    let (one, edited) = run_one(&m, algorithm, std::slice::from_ref(&single), args.seed)?;
    let one_secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let (many, _) = run_one(&m, batch_algo, &batch, args.seed)?;
    let many_secs = t1.elapsed().as_secs_f64();

    let r = &single.request;
    let mut probes = vec![("rewrite", r.filled_prompt())];
    if let Some(p) = single.paraphrase_prompts.first() {
        probes.push(("paraphrase", p.clone()));
    }
    if let Some(n) = single.neighborhood.first() {
        probes.push(("neighbour", n.prompt.clone()));
    }
    if args.json {
        let preds: Vec<_> = probes
            .iter()
            .map(|(k, p)| Ok(json!({"kind": k, "prompt": p, "before": block_on(top_k(&m.model, &m.tokenizer, p, 3))?, "after": block_on(top_k(&edited, &m.tokenizer, p, 3))?})))
            .collect::<Result<_>>()?;
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
        preset(algorithm, &m.config).layers
    );
    for (kind, p) in &probes {
        println!("  {kind:10} {p}");
        println!("    before: {}", top3(&m.model, &m.tokenizer, p)?);
        println!("    after:  {}", top3(&edited, &m.tokenizer, p)?);
    }
    println!(
        "\n{} batch edit of {} held-out facts, layers {:?}, {many_secs:.1} s",
        batch_algo.name().to_uppercase(),
        batch.len(),
        preset(batch_algo, &m.config).layers
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
