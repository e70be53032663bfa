//! `pmedit stats`: C0 statistics over a corpus, resumable.

use pmedit_engine::block_on;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::edit::stats::{LayerStats, accumulate, windows};
use pmedit_engine::load::stats_file::{StatsMeta, fingerprint, stats_from_bytes};
use pmedit_engine::save::stats_file::stats_to_bytes;

use crate::destination::{Destination, Kind};
use crate::device::Target;
use crate::shard::{self, Shard};

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Hugging Face GPT-2 model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Plain text, or JSON lines with a `text` field.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Layers: `17`, `13-17` or `3,5`.
    #[arg(long)]
    pub layers: String,
    /// Stop after this many tokens (the corpus is read only that far).
    #[arg(long, value_parser = crate::ranges::positive)]
    pub max_tokens: Option<usize>,
    /// Tokens per window (default: the model's context).
    #[arg(long, value_parser = crate::ranges::positive)]
    pub window: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::ranges::positive)]
    pub batch: usize,
    /// Output safetensors file (written atomically, checkpointed while running); `{shard}` in it
    /// becomes the shard's index, so every worker of an array job writes its own file.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue an interrupted run from `--out`.
    #[arg(long)]
    pub resume: bool,
    /// Process only shard I of N (`I/N`, windows i with i mod N = I), to split a corpus over
    /// machines; combine the parts with `pmedit merge-stats`. `auto` takes I and N from the
    /// scheduler: a Slurm job array (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with `--shards N`).
    #[arg(long)]
    pub shard: Option<String>,
    /// The number of shards, with `--shard auto` where the scheduler does not say it (a
    /// Kubernetes Indexed Job's `completions`).
    #[arg(long, value_parser = crate::ranges::positive)]
    pub shards: Option<usize>,
}

#[derive(clap::Args)]
pub struct ImportStatsArgs {
    /// The model the statistics belong to (for the fingerprint).
    #[arg(long)]
    pub model: PathBuf,
    /// One `.npz` per layer (the authors' files hold a sum Σ k kᵀ and a count; C0 is their mean).
    #[arg(long, num_args = 1.., required = true)]
    pub npz: Vec<PathBuf>,
    /// The files' layers, one per file in the order the files are given (`17,13` or
    /// `13-17`); default: read from each file's name (`transformer.h.17.mlp…npz` → 17).
    #[arg(long)]
    pub layers: Option<String>,
    /// Output statistics file.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct MergeStatsArgs {
    /// Statistics files to merge.
    #[arg(long, num_args = 1.., required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Merge even when some shards of a sharded run are missing (by default that is refused:
    /// a failed worker would otherwise go unnoticed).
    #[arg(long)]
    pub allow_partial: bool,
}

/// `pmedit stats`.
pub fn run(args: StatsArgs, choice: Target) -> Result<()> {
    let shard = shard::resolve(args.shard.as_deref(), args.shards, |k| std::env::var(k).ok())?;
    let out = shard.output_path(&args.out);
    if shard != Shard::WHOLE {
        eprintln!("shard {} of {} → {}", shard.index, shard.count, out.display());
    }
    compute(
        Job {
            model: &args.model,
            corpus: &args.corpus,
            layers: super::parse_layers(&args.layers)?,
            max_tokens: args.max_tokens,
            window: args.window,
            batch: args.batch,
            out: &out,
            resume: args.resume,
            shard,
        },
        choice,
    )
}

/// `pmedit import-stats`.
pub fn run_import(args: ImportStatsArgs, choice: Target) -> Result<()> {
    import(&args.model, &args.npz, args.layers.as_deref(), &args.out, choice)
}

/// `pmedit merge-stats`.
pub fn run_merge(args: MergeStatsArgs) -> Result<()> {
    merge(&args.inputs, &args.out, args.allow_partial)
}

/// A statistics run with its flags parsed.
struct Job<'a> {
    pub model: &'a Path,
    pub corpus: &'a Path,
    pub layers: Vec<usize>,
    pub max_tokens: Option<usize>,
    pub window: Option<usize>,
    pub batch: usize,
    pub out: &'a Path,
    pub resume: bool,
    pub shard: Shard,
}

/// A statistics file's settings split into the shard (`shard=I/N`) and everything else.
fn split_shard(settings: &str) -> (String, Option<Shard>) {
    let mut rest = Vec::new();
    let mut found = None;
    for part in settings.split(';').filter(|p| !p.is_empty()) {
        match part.strip_prefix("shard=").map(shard::parse) {
            Some(Ok(s)) => found = Some(s),
            _ => rest.push(part),
        }
    }
    (rest.join(";"), found)
}

/// Checks that the sharded inputs (`shard=I/N` in their settings, N > 1) hold every shard of
/// their run exactly once. Returns the merged file's settings: those of one unsharded run when
/// the inputs are the complete shards of one run, else those of the first input.
fn check_shards(inputs: &[(String, String, String)], allow_partial: bool) -> Result<Option<String>> {
    // (corpus, settings without the shard, N) → the shards seen, with their files.
    let mut runs: std::collections::BTreeMap<(String, String, usize), Vec<(usize, String)>> = Default::default();
    for (path, corpus, settings) in inputs {
        if let (rest, Some(s)) = split_shard(settings)
            && s.count > 1
        {
            let seen = runs.entry((corpus.clone(), rest, s.count)).or_default();
            if let Some((_, other)) = seen.iter().find(|(i, _)| *i == s.index) {
                bail!(
                    "{other} and {path} are both shard {}/{} of the same run",
                    s.index,
                    s.count
                );
            }
            seen.push((s.index, path.clone()));
        }
    }
    for ((corpus, _, n), seen) in &runs {
        let missing: Vec<usize> = (0..*n).filter(|i| !seen.iter().any(|(j, _)| j == i)).collect();
        if !missing.is_empty() && !allow_partial {
            bail!(
                "shards {missing:?} of {n} over {corpus} are missing (a worker that failed or has not \
                 finished?); give every shard's file, or --allow-partial to merge what is there"
            );
        }
    }
    let one_run = runs.len() == 1
        && runs.values().next().is_some_and(|seen| seen.len() == inputs.len())
        && runs.iter().all(|((_, _, n), seen)| seen.len() == *n);
    Ok(one_run.then(|| {
        let (_, rest, _) = runs.keys().next().expect("one run");
        if rest.is_empty() {
            "shard=0/1".to_string()
        } else {
            format!("{rest};shard=0/1")
        }
    }))
}

/// Sums statistics files of the same model and layers.
pub fn merge(inputs: &[std::path::PathBuf], out: &Path, allow_partial: bool) -> Result<()> {
    let paths: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let dest = Destination::new(out, &paths, Kind::Stats, false)?;
    let device = burn::prelude::Device::flex();
    let mut total: Option<(Vec<LayerStats>, StatsMeta)> = None;
    let mut settings = Vec::new();
    for path in inputs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (stats, meta) = stats_from_bytes(&bytes, &path.to_string_lossy(), &device)?;
        settings.push((path.display().to_string(), meta.corpus.clone(), meta.settings.clone()));
        total = Some(match total {
            None => (stats, meta),
            Some((mut acc, mut acc_meta)) => {
                if acc_meta.model != meta.model {
                    bail!(
                        "{} was computed on another model ({} ≠ {})",
                        path.display(),
                        meta.model,
                        acc_meta.model
                    );
                }
                anyhow::ensure!(acc.len() == stats.len(), "{} holds other layers", path.display());
                for (a, s) in acc.iter_mut().zip(&stats) {
                    a.merge(s)?;
                }
                acc_meta.windows_done += meta.windows_done;
                if !acc_meta.corpus.split('+').any(|c| c == meta.corpus) {
                    acc_meta.corpus = format!("{}+{}", acc_meta.corpus, meta.corpus);
                }
                (acc, acc_meta)
            }
        });
    }
    let (stats, mut meta) = total.context("no inputs")?;
    if let Some(settings) = check_shards(&settings, allow_partial)? {
        meta.settings = settings;
    }
    dest.write(&stats_to_bytes(&stats, &meta)?)?;
    eprintln!(
        "{} tokens from {} files → {}",
        stats[0].count,
        inputs.len(),
        out.display()
    );
    Ok(())
}

/// The corpus's token ids, read and tokenised a chunk at a time and stopping at `max_tokens`:
/// a huge corpus is read only as far as the statistics need.
pub fn corpus_ids(
    path: &Path,
    tokenizer: &pmedit_engine::tokenizer::Gpt2Tokenizer,
    max_tokens: Option<usize>,
) -> Result<Vec<u32>> {
    use pmedit_engine::load::corpus::{CorpusChunks, corpus_ids};
    let file = std::fs::File::open(path).with_context(|| format!("reading corpus {}", path.display()))?;
    let chunks = CorpusChunks::new(std::io::BufReader::new(file), &path.display().to_string(), 1 << 20);
    Ok(corpus_ids(chunks, tokenizer, max_tokens)?)
}

fn compute(args: Job, choice: Target) -> Result<()> {
    let dest = Destination::new(args.out, &[args.model, args.corpus], Kind::Stats, false)?;
    let (m, sel) = super::load(args.model, choice)?;
    super::check_layers(&args.layers, m.config.n_layer())?;
    let ids = corpus_ids(args.corpus, &m.tokenizer, args.max_tokens)?;
    let window = args
        .window
        .unwrap_or(m.config.n_positions())
        .min(m.config.n_positions());
    let mut seqs = windows(&ids, window);
    let Shard { index: si, count: sn } = args.shard;
    if sn > 1 {
        seqs = seqs
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % sn == si)
            .map(|(_, s)| s)
            .collect();
    }
    let fp = block_on(fingerprint(&m.model))?;
    let corpus_name = args
        .corpus
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let max = args.max_tokens.map_or_else(|| "all".to_string(), |n| n.to_string());
    let settings = format!("window={window};max_tokens={max};shard={si}/{sn}");
    let d_inner = m.config.d_inner();

    let (mut stats, mut meta) = if args.resume && args.out.exists() {
        let bytes = std::fs::read(args.out)?;
        let (stats, meta) = stats_from_bytes(&bytes, &args.out.to_string_lossy(), &sel.device)?;
        if meta.model != fp {
            bail!(
                "{} was computed on another model (fingerprint {} ≠ {fp})",
                args.out.display(),
                meta.model
            );
        }
        let have: Vec<usize> = stats.iter().map(|s| s.layer).collect();
        if have != args.layers {
            bail!("{} holds layers {have:?}, not {:?}", args.out.display(), args.layers);
        }
        if meta.settings != settings || meta.corpus != corpus_name {
            bail!(
                "--resume: {} was computed over {} with {}, not over {corpus_name} with {settings}; \
                 run without --resume to start over",
                args.out.display(),
                meta.corpus,
                if meta.settings.is_empty() {
                    "unrecorded settings"
                } else {
                    &meta.settings
                },
            );
        }
        eprintln!("resuming after {} windows", meta.windows_done);
        (stats, meta)
    } else {
        let stats = args
            .layers
            .iter()
            .map(|&l| LayerStats::new(l, d_inner, &sel.device))
            .collect();
        (
            stats,
            StatsMeta {
                model: fp,
                corpus: corpus_name,
                windows_done: 0,
                settings,
            },
        )
    };

    let todo = &seqs[(meta.windows_done as usize).min(seqs.len())..];
    let bar = ProgressBar::new(todo.iter().map(|s| s.len() as u64).sum());
    bar.set_style(ProgressStyle::with_template(
        "stats {bar:40} {pos}/{len} tokens {per_sec} eta {eta}",
    )?);
    let start = std::time::Instant::now();
    let save_every = 64usize;
    for (i, chunk) in todo.chunks(args.batch).enumerate() {
        accumulate(&m.model, chunk, args.batch, &mut stats)?;
        meta.windows_done += chunk.len() as u64;
        bar.inc(chunk.iter().map(|s| s.len() as u64).sum());
        if (i + 1) % save_every == 0 {
            dest.write(&stats_to_bytes(&stats, &meta)?)?;
        }
    }
    bar.finish_and_clear();
    dest.write(&stats_to_bytes(&stats, &meta)?)?;
    let tokens: u64 = todo.iter().map(|s| s.len() as u64).sum();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} tokens at layers {:?} in {:.1} s ({:.0} tokens/s) on {} → {}",
        stats[0].count,
        args.layers,
        secs,
        tokens as f64 / secs.max(1e-9),
        sel.description,
        args.out.display()
    );
    Ok(())
}

/// Converts the authors' `.npz` files (one per layer) into a pmedit statistics file. Each file is
/// paired with its own layer: the `--layers` entry at its position, else the layer in its name.
pub fn import(
    model: &Path,
    npz: &[std::path::PathBuf],
    layers: Option<&str>,
    out: &Path,
    choice: Target,
) -> Result<()> {
    let layers: Vec<usize> = match layers {
        Some(text) => {
            let given = super::parse_layer_list(text)?;
            anyhow::ensure!(
                given.len() == npz.len(),
                "--layers names {} layer(s) for {} .npz file(s): give one layer per file, in the order of the files \
                 (or leave --layers out to read each file's layer from its name)",
                given.len(),
                npz.len()
            );
            given
        }
        None => npz
            .iter()
            .map(|p| pmedit_engine::load::npz::layer_from_file_name(&p.to_string_lossy()))
            .collect::<std::result::Result<_, _>>()
            .context("--layers not given")?,
    };
    let mut seen = std::collections::BTreeMap::new();
    for (path, &layer) in npz.iter().zip(&layers) {
        if let Some(other) = seen.insert(layer, path) {
            bail!(
                "{} and {} are both statistics for layer {layer}",
                other.display(),
                path.display()
            );
        }
    }
    let mut inputs: Vec<&Path> = npz.iter().map(|p| p.as_path()).collect();
    inputs.push(model);
    let dest = Destination::new(out, &inputs, Kind::Stats, false)?;
    // The model is loaded only for its fingerprint and sizes, in the dtype `--dtype` asks: the
    // fingerprint hashes the embeddings' signs, which f16/bf16 keep, so a bf16 load writes the
    // file an f32 load would (and a 7B model fits in memory).
    let (m, sel) = super::load(model, choice)?;
    let mut stats = Vec::new();
    for (path, &layer) in npz.iter().zip(&layers) {
        anyhow::ensure!(
            layer < m.config.n_layer(),
            "{}: layer {layer} is out of range (the model has {} layers)",
            path.display(),
            m.config.n_layer()
        );
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = pmedit_engine::load::npz::import_npz(&bytes, &path.to_string_lossy(), layer, &sel.device)?;
        anyhow::ensure!(
            st.sum.dims()[0] == m.config.d_inner(),
            "{} holds {}-dimensional keys but the model's are {}",
            path.display(),
            st.sum.dims()[0],
            m.config.d_inner()
        );
        stats.push(st);
    }
    stats.sort_by_key(|s| s.layer);
    let meta = StatsMeta {
        model: block_on(fingerprint(&m.model))?,
        corpus: "authors-npz".into(),
        windows_done: 0,
        settings: String::new(),
    };
    dest.write(&stats_to_bytes(&stats, &meta)?)?;
    let pairs: Vec<String> = npz
        .iter()
        .zip(&layers)
        .map(|(p, l)| format!("{l} ← {}", p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    eprintln!(
        "imported {} ({} tokens) → {}",
        pairs.join(", "),
        stats[0].count,
        out.display()
    );
    Ok(())
}
