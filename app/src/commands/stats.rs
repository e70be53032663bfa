//! `pmedit stats`: C0 statistics over a corpus, resumable.

use pmedit_engine::block_on;
use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pmedit_engine::edit::stats::{
    LayerStats, StatsMeta, accumulate, fingerprint, stats_from_bytes, stats_to_bytes, windows,
};

use crate::device::Target;
use crate::output::write_atomic;

pub struct StatsArgs<'a> {
    pub model: &'a Path,
    pub corpus: &'a Path,
    pub layers: Vec<usize>,
    pub max_tokens: Option<usize>,
    pub window: Option<usize>,
    pub batch: usize,
    pub out: &'a Path,
    pub resume: bool,
    pub shard: Option<(usize, usize)>,
}

/// Parses `I/N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard {s}: expected I/N"))?;
    let (i, n): (usize, usize) = (i.trim().parse()?, n.trim().parse()?);
    anyhow::ensure!(n > 0 && i < n, "--shard {s}: need 0 ≤ I < N");
    Ok((i, n))
}

/// Sums statistics files of the same model and layers.
pub fn merge(inputs: &[std::path::PathBuf], out: &Path) -> Result<()> {
    let device = burn::prelude::Device::flex();
    let mut total: Option<(Vec<LayerStats>, StatsMeta)> = None;
    for path in inputs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (stats, meta) = stats_from_bytes(&bytes, &path.to_string_lossy(), &device)?;
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
    let (stats, meta) = total.context("no inputs")?;
    write_atomic(out, &stats_to_bytes(&stats, &meta)?)?;
    eprintln!(
        "{} tokens from {} files → {}",
        stats[0].count,
        inputs.len(),
        out.display()
    );
    Ok(())
}

/// Reads a corpus file: plain text, or JSON lines with a `text` field (the file is only read).
pub fn read_corpus(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading corpus {}", path.display()))?;
    Ok(pmedit_engine::edit::corpus::corpus_text(
        &bytes,
        &path.display().to_string(),
    )?)
}

pub fn run(args: StatsArgs, choice: Target) -> Result<()> {
    let (m, sel) = super::load(args.model, choice)?;
    let text = read_corpus(args.corpus)?;
    let mut ids = m.tokenizer.encode(&text)?;
    if let Some(max) = args.max_tokens {
        ids.truncate(max);
    }
    let window = args.window.unwrap_or(m.config.n_positions).min(m.config.n_positions);
    let mut seqs = windows(&ids, window);
    if let Some((i, n)) = args.shard {
        seqs = seqs
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, s)| s)
            .collect();
    }
    let fp = block_on(fingerprint(&m.model))?;
    let corpus_name = args
        .corpus
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
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
            write_atomic(args.out, &stats_to_bytes(&stats, &meta)?)?;
        }
    }
    bar.finish_and_clear();
    write_atomic(args.out, &stats_to_bytes(&stats, &meta)?)?;
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

/// Converts the authors' `.npz` files (one per layer) into a pmedit statistics file.
pub fn import(model: &Path, npz: &[std::path::PathBuf], layers: &[usize], out: &Path, target: Target) -> Result<()> {
    anyhow::ensure!(
        npz.len() == layers.len(),
        "{} .npz files for {} layers: give one file per layer, in the order of --layers",
        npz.len(),
        layers.len()
    );
    let (m, sel) = super::load(model, target)?;
    let mut stats = Vec::new();
    for (path, &layer) in npz.iter().zip(layers) {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = pmedit_engine::edit::npz::import_npz(&bytes, &path.to_string_lossy(), layer, &sel.device)?;
        anyhow::ensure!(
            st.sum.dims()[0] == m.config.d_inner(),
            "{} holds {}-dimensional keys but the model's are {}",
            path.display(),
            st.sum.dims()[0],
            m.config.d_inner()
        );
        stats.push(st);
    }
    let meta = StatsMeta {
        model: block_on(fingerprint(&m.model))?,
        corpus: "authors-npz".into(),
        windows_done: 0,
    };
    write_atomic(out, &stats_to_bytes(&stats, &meta)?)?;
    eprintln!(
        "imported layers {layers:?} ({} tokens) → {}",
        stats[0].count,
        out.display()
    );
    Ok(())
}
