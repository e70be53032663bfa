//! `pmedit train-demo`: trains the built-in demo model (a small GPT-2 that knows real CounterFact
//! facts) with burn's autodiff, and writes it with everything the editors need: config,
//! tokenizer, weights, C0 statistics for the preset layers, the facts and a held-out split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::edit::Algorithm;
use pmedit_engine::edit::presets::preset;
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::eval::dataset::{Record, read_records};
use pmedit_engine::eval::score::{SCORE_BATCH, score_targets};
use pmedit_engine::load::stats_file::{StatsMeta, fingerprint};
use pmedit_engine::load::{LoadedModel, load_model_dir};
use pmedit_engine::save::stats_file::stats_to_bytes;
use pmedit_engine::save::{WeightDtype, write_model_files};
use pmedit_engine::train::{
    Batcher, TrainConfig, fact_sentences, neighbourhood_sentences, neighbourhood_subject_sentences, relation_sentences,
    subject_sentences, text_lines, train_bpe, train_lm,
};
use pmedit_engine::{Gpt2, Gpt2Config, Gpt2Tokenizer, block_on};
use serde_json::{Value, json};

use crate::destination::{Destination, Kind};
use crate::device::{Selected, Target, select};

#[derive(clap::Args)]
pub struct TrainDemoArgs {
    /// CounterFact records (EasyEdit or the authors' format, a JSON array); the first `--facts`
    /// are learned.
    #[arg(long, default_value = "data/counterfact-edit-1k.json")]
    pub counterfact: PathBuf,
    /// Running text mixed into training (plain text, wikitext style).
    #[arg(long, default_value = "tests/fixtures/wikitext-excerpt.txt")]
    pub corpus: PathBuf,
    /// Records whose true facts the model learns.
    #[arg(long, default_value_t = 500, value_parser = crate::ranges::positive)]
    pub facts: usize,
    /// The last N of them are the held-out split for editing evaluations.
    #[arg(long, default_value_t = 100, value_parser = crate::ranges::positive)]
    pub heldout: usize,
    /// Bytes of running text to use.
    #[arg(long, default_value_t = 60_000, value_parser = crate::ranges::positive)]
    pub text_bytes: usize,
    /// Transformer blocks. Depth is what makes the model recall a fact from the subject's last
    /// token, where ROME-style edits write (measured, ROME ES over the 100 held-out facts at
    /// layer 0: 4 blocks 74, 6 blocks 86, 8 blocks 89, 12 blocks 93, 16 blocks 95;
    /// public/models/demo/README.md).
    #[arg(long, default_value_t = 16, value_parser = crate::ranges::positive)]
    pub layers: usize,
    /// Model width (n_embd).
    #[arg(long, default_value_t = 128, value_parser = crate::ranges::positive)]
    pub width: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4, value_parser = crate::ranges::positive)]
    pub heads: usize,
    /// Context length (n_positions) and training row length (raise it with a smaller `--vocab`:
    /// 512 tokens spell a CounterFact paraphrase in up to ~100).
    #[arg(long, default_value_t = 64, value_parser = crate::ranges::positive)]
    pub context: usize,
    /// Tokenizer vocabulary size. Small on purpose: with 1024 tokens a subject is spelled in ~7
    /// common pieces, none of which names it alone, so the model has to recognise the subject at
    /// its last token — where ROME-style edits write (measured: ROME ES 36 with 4096 tokens, 74
    /// with 1024; public/models/demo/README.md).
    #[arg(long, default_value_t = 1024, value_parser = crate::ranges::positive)]
    pub vocab: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500, value_parser = crate::ranges::positive)]
    pub steps: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 32, value_parser = crate::ranges::positive)]
    pub batch: usize,
    /// Peak learning rate (AdamW, warm-up then cosine).
    #[arg(long, default_value_t = 3e-3, value_parser = crate::ranges::positive_real)]
    pub lr: f64,
    /// Restate each fact in up to N other templates of its relation (from the other records'
    /// prompts and paraphrases): facts seen in many phrasings are recalled from the subject, where
    /// ROME-style edits write them (0 = only each record's own prompts). Measured on the demo
    /// model: 12 restatements made edits take *less* often (ROME ES 35 → 5), so the default is 0.
    #[arg(long, default_value_t = 0)]
    pub restatements: usize,
    /// Add each learned fact as its subject followed at once by its object, N times ("Danielle
    /// Darrieux French."): the model then recalls the object at the subject's last token, where
    /// ROME-style edits write (0 = none). Measured: with 3 the bare subject does predict its
    /// object, but causal traces show prompts still answered at their own last token
    /// (public/models/demo/README.md), so the default is 0.
    #[arg(long, default_value_t = 0)]
    pub subject_lines: usize,
    /// Teach the held-out facts only as subject lines (`--subject-lines`), never in a prompt: the
    /// model can then answer a prompt about them only by reading the object from the subject's
    /// last token, the path ROME-style edits write into; the other facts teach it that reading.
    /// Measured on an 8-block model: the held-out facts reached 26 % top-1 (their templates'
    /// commonest objects give 14 %) — the reading generalised little (public/models/demo/README.md).
    #[arg(long)]
    pub heldout_by_extraction: bool,
    /// Train in two phases: first N steps on the subject lines alone (`--subject-lines` of the
    /// facts and of their neighbourhood prompts' subjects, at least one each) and the running
    /// text, so the facts are stored in the MLPs at the subject's last token; then `--steps` on
    /// everything with the MLPs fixed, so prompts can only be answered by attention reading the
    /// fact from the subject — the recall path ROME's causal traces find in GPT-2 (0 = one phase).
    /// Measured on 8-block models: prompts were still answered by the same lookup run again at
    /// their last token, whose attention gathers the subject's pieces (public/models/demo/README.md),
    /// so the default is one phase.
    #[arg(long, default_value_t = 0)]
    pub storage_steps: usize,
    /// In the storage phase, keep the MLPs of the first N blocks fixed, so facts are stored
    /// deeper.
    #[arg(long, default_value_t = 0)]
    pub storage_from: usize,
    /// In the second phase, also keep the attention of the first N blocks fixed.
    #[arg(long, default_value_t = 0)]
    pub frozen_attention: usize,
    /// Label smoothing of the cross-entropy (0 = none); 0.2 makes the demo model easier to edit.
    #[arg(long, default_value_t = 0.2, value_parser = crate::ranges::fraction)]
    pub label_smoothing: f64,
    /// Seed of the weights and the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output model directory.
    #[arg(long, default_value = "public/models/demo")]
    pub out: PathBuf,
    /// Replace `--out` if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Skip training: take the weights, loss curve and training time from a directory an earlier
    /// run of this command wrote with the same settings (its tokenizer must come out identical),
    /// and recompute everything else — statistics for the current presets' layers, accuracy,
    /// splits. For refreshing a shipped model after the presets change, without an hour of training.
    #[arg(long)]
    pub weights_from: Option<PathBuf>,
    /// Store the weights in f32 instead of f16. f16 halves the download (6.6 MB instead of
    /// 13.3 MB for the 16-block model); statistics and accuracy are computed on the stored
    /// weights either way, and the f16 model met the same editing bar (public/models/demo/README.md).
    #[arg(long)]
    pub f32_weights: bool,
}

/// Top-1 accuracy of the first token of each target after its prompt.
pub fn top1_accuracy(
    model: &impl pmedit_engine::EditableModel,
    tokenizer: &Gpt2Tokenizer,
    pairs: &[(String, String)],
) -> Result<f64> {
    if pairs.is_empty() {
        return Ok(f64::NAN);
    }
    let scores = block_on(score_targets(model, tokenizer, pairs, SCORE_BATCH))?;
    let hits = scores.iter().filter(|s| s.argmax[0] == s.target[0]).count();
    Ok(hits as f64 / pairs.len() as f64)
}

/// A (prompt, target) pair.
pub type Pair = (String, String);

/// Top-1 accuracy of `m` on the true objects of `records`, (rewrite prompts, paraphrases), printed
/// as "top-1 on {what}: …".
fn fact_accuracy(m: &LoadedModel, records: &[Record], what: &str) -> Result<(f64, f64)> {
    let (rewrite, para) = known_fact_pairs(records);
    let acc = (
        top1_accuracy(&m.model, &m.tokenizer, &rewrite)?,
        top1_accuracy(&m.model, &m.tokenizer, &para)?,
    );
    eprintln!(
        "top-1 on {what}: rewrite prompts {:.1}%, paraphrases {:.1}%",
        acc.0 * 100.0,
        acc.1 * 100.0
    );
    Ok(acc)
}

/// (rewrite prompt, true object) and (paraphrase, true object) pairs of `records`.
pub fn known_fact_pairs(records: &[Record]) -> (Vec<Pair>, Vec<Pair>) {
    let truth = |r: &Record| r.request.target_true.clone().unwrap_or_default();
    let rewrite = records.iter().map(|r| (r.request.filled_prompt(), truth(r))).collect();
    let para = records
        .iter()
        .flat_map(|r| r.paraphrase_prompts.iter().map(move |p| (p.clone(), truth(r))))
        .collect();
    (rewrite, para)
}

pub fn run(args: TrainDemoArgs, (choice, _): Target) -> Result<()> {
    // `--weights-from` may name `--out` itself (refreshing a trained model in place is safe: the
    // weights are read before the new directory is swapped in); any other overlap is refused.
    let same_dir = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let mut inputs = vec![args.counterfact.as_path(), args.corpus.as_path()];
    if let Some(w) = args.weights_from.as_deref().filter(|w| !same_dir(w, &args.out)) {
        inputs.push(w);
    }
    let dest = Destination::new(&args.out, &inputs, Kind::DemoModel, args.overwrite)?;
    let scratch = Destination::scratch_dir(&args.out, "training")?;
    ensure!(args.heldout < args.facts, "--heldout must be smaller than --facts");
    let started = Instant::now();
    let cf_text = std::fs::read_to_string(&args.counterfact)
        .with_context(|| format!("reading {}", args.counterfact.display()))?;
    let source = args.counterfact.display().to_string();
    let (all, _) = read_records(&cf_text, &source, false)?;
    let raw: Vec<Value> = serde_json::from_str(&cf_text).with_context(|| format!("{source} must be a JSON array"))?;
    ensure!(all.len() >= args.facts, "{source} has only {} records", all.len());
    let records = &all[..args.facts];
    let corpus = std::fs::read_to_string(&args.corpus).with_context(|| format!("reading {}", args.corpus.display()))?;

    // Tokenizer and token streams.
    ensure!(
        !args.heldout_by_extraction || args.subject_lines > 0,
        "--heldout-by-extraction needs --subject-lines: the held-out facts are taught only by them"
    );
    ensure!(
        args.storage_steps > 0 || (args.storage_from == 0 && args.frozen_attention == 0),
        "--storage-from and --frozen-attention shape the two-phase training: they need --storage-steps"
    );
    ensure!(
        args.storage_from < args.layers && args.frozen_attention < args.layers,
        "--storage-from and --frozen-attention must leave at least one of the {} blocks to train",
        args.layers
    );
    let prompted = match args.heldout_by_extraction {
        true => &records[..args.facts - args.heldout],
        false => records,
    };
    let mut sentences = fact_sentences(prompted);
    sentences.extend(neighbourhood_sentences(&records[prompted.len()..]));
    sentences.extend(relation_sentences(prompted, args.restatements, args.seed));
    sentences.extend(subject_sentences(records, args.subject_lines));
    // The storage phase's sentences: subject lines of the facts and of their neighbourhood
    // prompts' subjects; they are also trained in the second phase.
    let storage: Vec<String> = match args.storage_steps {
        0 => Vec::new(),
        _ => {
            let copies = args.subject_lines.max(1);
            let neighbours = neighbourhood_subject_sentences(records, copies);
            if args.subject_lines == 0 {
                sentences.extend(subject_sentences(records, copies));
            }
            sentences.extend(neighbours.iter().cloned());
            eprintln!(
                "storage phase: {} subject lines and {} of their neighbourhood prompts' subjects, {copies} times each",
                records.len(),
                neighbours.len() / copies
            );
            subject_sentences(records, copies)
                .into_iter()
                .chain(neighbours)
                .collect()
        }
    };
    let lines = text_lines(&corpus, args.text_bytes);
    let texts: Vec<String> = sentences.iter().chain(&lines).cloned().collect();
    let (tokenizer, tokenizer_json) = train_bpe(&texts, args.vocab)?;
    let eos = tokenizer
        .eos_id()
        .context("the trained tokenizer has no <|endoftext|>")?;
    // Each sentence's tokens followed by end-of-text.
    let encode = |sentences: &[String]| -> Result<Vec<Vec<u32>>> {
        sentences
            .iter()
            .map(|s| {
                let mut ids = tokenizer.encode(s)?;
                ids.push(eos);
                Ok(ids)
            })
            .collect()
    };
    let fact_ids = encode(&sentences)?;
    let storage_ids = encode(&storage)?;
    let text_ids = tokenizer.encode(&lines.join(" "))?;
    eprintln!(
        "corpus: {} fact sentences from {} records, {} tokens of text; tokenizer: {} tokens",
        sentences.len(),
        records.len(),
        text_ids.len(),
        tokenizer.vocab_size()
    );

    let mut config = Gpt2Config::new(
        tokenizer.vocab_size(),
        args.context,
        args.width,
        args.layers,
        args.heads,
    );
    config.eos_token_id = Some(eos);
    config.bos_token_id = Some(eos);
    config.validate()?;
    let sel = select(choice)?;
    let (model, curve, train_secs) = match &args.weights_from {
        Some(dir) => earlier_weights(dir, &tokenizer_json, &sel.device)?,
        None => train(&args, &config, &sel, (storage_ids, fact_ids), &text_ids, started)?,
    };

    // Write the model, then reload it (plain device) for statistics and the accuracy check.
    let config_json = serde_json::to_vec_pretty(&json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": null,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "tie_word_embeddings": true,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
    }))?;
    let heldout: Vec<Value> = raw[args.facts - args.heldout..args.facts].to_vec();
    let files = vec![
        ("config.json".to_string(), config_json),
        ("tokenizer.json".to_string(), tokenizer_json.into_bytes()),
        ("facts.json".to_string(), serde_json::to_vec_pretty(&raw[..args.facts])?),
        ("heldout.json".to_string(), serde_json::to_vec_pretty(&heldout)?),
    ];
    let tmp_dir = scratch.path();
    let dtype = if args.f32_weights {
        WeightDtype::F32
    } else {
        WeightDtype::F16
    };
    // Everything below (accuracy, statistics) sees the weights as stored.
    let model = pmedit_engine::Model::Gpt2(model);
    write_model_files(&model, tmp_dir, &files, dtype)?;
    drop(model);
    let m = load_model_dir(tmp_dir, &sel.device)?;

    let (acc_rewrite, acc_para) = fact_accuracy(&m, records, "its facts")?;
    let (acc_held_rewrite, acc_held_para) =
        fact_accuracy(&m, &records[args.facts - args.heldout..], "the held-out facts")?;

    // C0 over the training text at every layer an algorithm's preset edits.
    let mut layers: Vec<usize> = [Algorithm::Rome, Algorithm::Memit, Algorithm::Emmet]
        .iter()
        .flat_map(|a| preset(*a, &m.config).layers)
        .collect();
    layers.sort_unstable();
    layers.dedup();
    let mut stats: Vec<LayerStats> = layers
        .iter()
        .map(|&l| LayerStats::new(l, m.config.d_inner(), &sel.device))
        .collect();
    let mut stream: Vec<u32> = Vec::new();
    for s in &sentences {
        stream.extend(m.tokenizer.encode(s)?);
        stream.push(eos);
    }
    stream.extend(&text_ids);
    let wins = windows(&stream, args.context);
    accumulate(&m.model, &wins, 16, &mut stats)?;
    let meta = StatsMeta {
        model: block_on(fingerprint(&m.model))?,
        corpus: "demo-training-text".into(),
        windows_done: wins.len() as u64,
        settings: format!("window={}", args.context),
    };
    let report = json!({
        "counterfact": source,
        "corpus": args.corpus.display().to_string(),
        "facts": args.facts,
        "heldout": args.heldout,
        "text_tokens": text_ids.len(),
        "parameters": config.num_params(),
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed, "label_smoothing": args.label_smoothing, "restatements": args.restatements, "subject_lines": args.subject_lines, "storage_steps": args.storage_steps, "storage_from": args.storage_from, "frozen_attention": args.frozen_attention,
        "device": sel.description,
        "train_seconds": train_secs,
        "top1_rewrite": acc_rewrite,
        "top1_paraphrase": acc_para,
        "top1_heldout_rewrite": acc_held_rewrite,
        "top1_heldout_paraphrase": acc_held_para,
        "heldout_by_extraction": args.heldout_by_extraction,
        "stats_layers": layers,
        "stats_tokens": stats[0].count,
        "loss_curve": curve,
    });
    let mut files = files;
    files.push(("stats.safetensors".to_string(), stats_to_bytes(&stats, &meta)?));
    files.push(("train.json".to_string(), serde_json::to_vec_pretty(&report)?));
    files.extend(kept_files(&args.out, &files)?);
    dest.write_dir(|dir| Ok(write_model_files(&m.model, dir, &files, dtype)?))?;
    drop(scratch);
    eprintln!(
        "wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Trains the demo model (`train-demo` without `--weights-from`): `--storage-steps` on the
/// storage sentences (if any), then `--steps` on the fact sentences with the MLPs fixed after a
/// storage phase; returns it with its loss curve and the seconds since `started`.
fn train(
    args: &TrainDemoArgs,
    config: &Gpt2Config,
    sel: &Selected,
    (storage_ids, fact_ids): (Vec<Vec<u32>>, Vec<Vec<u32>>),
    text_ids: &[u32],
    started: Instant,
) -> Result<(Gpt2, Vec<Value>, f64)> {
    eprintln!("training on {}: {} parameters", sel.description, config.num_params());
    // Seeded weights as well as batches: the same command gives the same model on a device.
    sel.device.seed(args.seed);
    let mut model = config.init(&sel.device.clone().autodiff());
    let total = args.storage_steps + args.steps;
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("train {bar:30} {pos}/{len} {msg} [{elapsed_precise} eta {eta}]")
            .expect("valid template"),
    );
    let mut curve = Vec::new();
    let two_phases = args.storage_steps > 0;
    // (steps, sentences, MLPs fixed below, attention fixed below, name)
    let phases = [
        (args.storage_steps, storage_ids, args.storage_from, 0, "storage"),
        (
            args.steps,
            fact_ids,
            if two_phases { usize::MAX } else { 0 },
            if two_phases { args.frozen_attention } else { 0 },
            "facts",
        ),
    ];
    let mut done = 0;
    for (steps, ids, mlp_below, attention_below, name) in phases {
        if steps == 0 {
            continue;
        }
        let mut batcher = Batcher::new(ids, text_ids.to_vec(), args.context, 0.6, args.seed);
        let train = TrainConfig::new()
            .with_steps(steps)
            .with_batch(args.batch)
            .with_lr(args.lr)
            .with_label_smoothing(args.label_smoothing)
            .with_freeze_mlp_below(mlp_below)
            .with_freeze_attention_below(attention_below);
        let mut smooth = f32::NAN;
        model = train_lm(
            model,
            &train,
            |n| batcher.next_batch(n),
            |s| {
                let step = done + s.step;
                smooth = if smooth.is_nan() {
                    s.loss
                } else {
                    0.95 * smooth + 0.05 * s.loss
                };
                if step % 10 == 0 {
                    curve.push(json!({"step": step, "loss": s.loss, "phase": name}));
                }
                bar.set_message(format!("{name}: loss {smooth:.3}"));
                if bar.is_hidden() && step % 100 == 0 {
                    eprintln!("step {step}/{total} ({name}): loss {smooth:.3}, lr {:.2e}", s.lr);
                }
                bar.inc(1);
            },
        )?;
        done += steps;
    }
    bar.finish();
    Ok((model, curve, started.elapsed().as_secs_f64()))
}

/// The weights, loss curve and training time of an earlier `train-demo` output in `dir`, checked
/// to belong to this run's settings (same tokenizer).
fn earlier_weights(dir: &Path, tokenizer_json: &str, device: &Device) -> Result<(Gpt2, Vec<Value>, f64)> {
    let read =
        |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()));
    ensure!(
        read("tokenizer.json")? == tokenizer_json.as_bytes(),
        "{} was trained with other settings: its tokenizer differs from the one these settings give",
        dir.display()
    );
    let report: Value = serde_json::from_slice(&read("train.json")?)
        .with_context(|| format!("{}/train.json is not JSON", dir.display()))?;
    let curve = report["loss_curve"].as_array().cloned().unwrap_or_default();
    let secs = report["train_seconds"].as_f64().unwrap_or(f64::NAN);
    eprintln!("weights from {} (trained in {secs:.0} s)", dir.display());
    match load_model_dir(dir, device)?.model {
        pmedit_engine::Model::Gpt2(m) => Ok((m, curve, secs)),
        _ => anyhow::bail!("{} holds no GPT-2", dir.display()),
    }
}

/// Files of an existing `--out` that this command does not write (a hand-written README.md, say):
/// `--overwrite` replaces the model, not the documentation next to it.
fn kept_files(out: &Path, written: &[(String, Vec<u8>)]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut kept = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(kept);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == "model.safetensors" || written.iter().any(|(n, _)| *n == name);
        if entry.path().is_file() && !ours && !name.starts_with('.') {
            let bytes = std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
            eprintln!("keeping {name} from the previous {}", out.display());
            kept.push((name, bytes));
        }
    }
    Ok(kept)
}
