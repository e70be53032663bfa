//! `pmedit`: edit facts inside GPT-2 models with ROME, r-ROME, MEMIT and EMMET.

mod commands;
mod destination;
mod device;
mod memory;
mod output;
mod plot;
mod ranges;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use device::DeviceChoice;

#[derive(Parser)]
#[command(
    name = "pmedit",
    version,
    about = "Edit facts inside GPT-2 language models (ROME, r-ROME, MEMIT, EMMET)"
)]
struct Cli {
    /// Where the math runs: a hardware GPU if present (auto), wgpu's default adapter (gpu), or the CPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Compute dtype of info/predict/generate/bench (f16 where the device supports it); edits
    /// and statistics always run in f32.
    #[arg(long, global = true, value_enum, default_value_t = device::Precision::F32)]
    dtype: device::Precision,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model directory's config, parameter count, dtype and the device in use.
    Info {
        /// Hugging Face GPT-2 model directory.
        #[arg(long)]
        model: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Next-token top-k predictions with log-probabilities.
    Predict {
        /// Hugging Face GPT-2 model directory.
        #[arg(long)]
        model: PathBuf,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// How many tokens to list.
        #[arg(long, default_value_t = 10, value_parser = crate::ranges::positive)]
        top_k: usize,
        /// Print JSON (token ids, token strings, log-probs).
        #[arg(long)]
        json: bool,
    },
    /// Compute C0 statistics (uncentred second moment of the keys) over a text corpus.
    Stats {
        /// Hugging Face GPT-2 model directory.
        #[arg(long)]
        model: PathBuf,
        /// Plain text, or JSON lines with a `text` field.
        #[arg(long)]
        corpus: PathBuf,
        /// Layers: `17`, `13-17` or `3,5`.
        #[arg(long)]
        layers: String,
        /// Stop after this many tokens (the corpus is read only that far).
        #[arg(long, value_parser = crate::ranges::positive)]
        max_tokens: Option<usize>,
        /// Tokens per window (default: the model's context).
        #[arg(long, value_parser = crate::ranges::positive)]
        window: Option<usize>,
        /// Windows per forward pass.
        #[arg(long, default_value_t = 8, value_parser = crate::ranges::positive)]
        batch: usize,
        /// Output safetensors file (written atomically, checkpointed while running).
        #[arg(long)]
        out: PathBuf,
        /// Continue an interrupted run from `--out`.
        #[arg(long)]
        resume: bool,
        /// Process only shard I of N (`I/N`, windows i with i mod N = I), to split a corpus over
        /// machines; combine the parts with `pmedit merge-stats`.
        #[arg(long)]
        shard: Option<String>,
    },
    /// Convert the authors' per-layer `.npz` statistics (mom2.mom2, mom2.count) for `pmedit edit`.
    ImportStats {
        /// The model the statistics belong to (for the fingerprint).
        #[arg(long)]
        model: PathBuf,
        /// One `.npz` per layer (the authors' files hold a sum Σ k kᵀ and a count; C0 is their mean).
        #[arg(long, num_args = 1.., required = true)]
        npz: Vec<PathBuf>,
        /// The files' layers, one per file in the order the files are given (`17,13` or
        /// `13-17`); default: read from each file's name (`transformer.h.17.mlp…npz` → 17).
        #[arg(long)]
        layers: Option<String>,
        /// Output statistics file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sum statistics computed on parts of a corpus (same model and layers).
    MergeStats {
        /// Statistics files to merge.
        #[arg(long, num_args = 1.., required = true)]
        inputs: Vec<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Edit facts: apply ROME, r-ROME, MEMIT or EMMET and write the edited model directory.
    Edit {
        /// Hugging Face GPT-2 model directory (never modified).
        #[arg(long)]
        model: PathBuf,
        /// Requests: JSON array/object/lines; pmedit, ROME/MEMIT CounterFact or EasyEdit shape.
        #[arg(long)]
        requests: PathBuf,
        /// rome | r-rome | memit | emmet.
        #[arg(long, default_value = "emmet")]
        algo: String,
        /// Layers to edit (`17`, `13-17`); default from the presets.
        #[arg(long)]
        layers: Option<String>,
        /// C0 statistics file (default: <model>/stats.safetensors).
        #[arg(long)]
        stats: Option<PathBuf>,
        /// λ (mom2_update_weight, > 0).
        #[arg(long, value_parser = crate::ranges::positive_real)]
        lambda: Option<f64>,
        /// α (EMMET's regulariser, ≥ 0).
        #[arg(long, value_parser = crate::ranges::non_negative_real)]
        alpha: Option<f64>,
        #[command(flatten)]
        value: commands::ValueOverrides,
        /// Context templates: a JSON file, or `none` for the bare prompt (default: sampled).
        #[arg(long)]
        templates: Option<String>,
        /// Seed for template sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use only the first N requests.
        #[arg(long, value_parser = crate::ranges::positive)]
        limit: Option<usize>,
        /// Leave out requests whose key duplicates an earlier one's (the same subject twice), with a
        /// report, instead of refusing the batch.
        #[arg(long)]
        drop_dependent: bool,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
        /// Also write Δ per layer as safetensors.
        #[arg(long)]
        save_delta: Option<PathBuf>,
        /// Replace `--out` if it exists.
        #[arg(long)]
        overwrite: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure forward, generation and statistics throughput on the chosen device.
    Bench {
        /// Hugging Face GPT-2 model directory.
        #[arg(long)]
        model: PathBuf,
        /// Timed runs (median reported).
        #[arg(long, default_value_t = 5, value_parser = crate::ranges::positive)]
        runs: usize,
        /// Prompts per forward pass.
        #[arg(long, default_value_t = 16, value_parser = crate::ranges::positive)]
        batch: usize,
        /// Tokens per prompt.
        #[arg(long, default_value_t = 32, value_parser = crate::ranges::positive)]
        seq: usize,
        /// Time one operation run by run (JSON lines): load, forward, generate, stats, rome,
        /// emmet-N, memit-N, solve-emmet-N, solve-memit-N, cholesky-N, matmul-N.
        #[arg(long)]
        op: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the paper's experiments: batched edits of dataset records, scored before and after,
    /// with sweeps over batch sizes and λ, reports and plots.
    Eval(commands::eval::EvalArgs),
    /// The quick start: edit facts in the built-in demo model and show what changed.
    Demo(commands::demo::DemoArgs),
    /// Train the built-in demo model (a small GPT-2 that knows real CounterFact facts).
    TrainDemo(commands::train_demo::TrainDemoArgs),
    /// Generate a continuation (KV cache, seeded top-k sampling).
    Generate {
        /// Hugging Face GPT-2 model directory.
        #[arg(long)]
        model: PathBuf,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 40)]
        max_new_tokens: usize,
        /// Sample among the k most likely tokens (1 = greedy).
        #[arg(long, default_value_t = 5, value_parser = crate::ranges::positive)]
        top_k: usize,
        /// Softmax temperature (> 0).
        #[arg(long, default_value_t = 1.0, value_parser = crate::ranges::positive_real_f32)]
        temperature: f32,
        /// RNG seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    memory::keep_freed_buffers();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: printed to stdout, success.
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            // A bad flag or value: one line that names it (clap's usage hints follow for
            // missing or unknown arguments), status 1 like every other error.
            let text = e.render().to_string();
            let text = text.trim_end().strip_prefix("error: ").unwrap_or(text.trim_end());
            eprintln!("error[usage]: {text}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole context chain on one line, without a backtrace dump; the engine's error
            // kind (when the cause is one) in brackets, for scripts.
            match e.chain().find_map(|c| c.downcast_ref::<pmedit_engine::EngineError>()) {
                Some(engine) => eprintln!("error[{}]: {e:#}", engine.kind()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if cli.dtype != device::Precision::F32 && matches!(cli.command, Command::Edit { .. } | Command::Stats { .. }) {
        anyhow::bail!("edits and statistics run in f32: drop --dtype");
    }
    match cli.command {
        Command::Eval(args) => commands::eval::run(args, (cli.device, device::Precision::F32)),
        Command::Demo(args) => commands::demo::run(args, (cli.device, device::Precision::F32)),
        Command::TrainDemo(args) => commands::train_demo::run(args, (cli.device, device::Precision::F32)),
        Command::Info { model, json } => commands::info::run(&model, (cli.device, cli.dtype), json),
        Command::Predict {
            model,
            prompt,
            top_k,
            json,
        } => commands::predict::run(&model, &prompt, top_k, (cli.device, cli.dtype), json),
        Command::Stats {
            model,
            corpus,
            layers,
            max_tokens,
            window,
            batch,
            out,
            resume,
            shard,
        } => commands::stats::run(
            commands::stats::StatsArgs {
                model: &model,
                corpus: &corpus,
                layers: output::parse_layers(&layers)?,
                max_tokens,
                window,
                batch,
                out: &out,
                resume,
                shard: shard.as_deref().map(commands::stats::parse_shard).transpose()?,
            },
            (cli.device, device::Precision::F32),
        ),
        Command::MergeStats { inputs, out } => commands::stats::merge(&inputs, &out),
        Command::ImportStats {
            model,
            npz,
            layers,
            out,
        } => commands::stats::import(&model, &npz, layers.as_deref(), &out, cli.device),
        Command::Edit {
            model,
            requests,
            algo,
            layers,
            stats,
            lambda,
            alpha,
            value,
            templates,
            seed,
            limit,
            drop_dependent,
            out,
            save_delta,
            overwrite,
            json,
        } => commands::edit::run(
            commands::edit::EditArgs {
                model,
                requests,
                algo,
                layers: layers.as_deref().map(output::parse_layers).transpose()?,
                stats,
                lambda,
                alpha,
                value,
                templates,
                seed,
                limit,
                drop_dependent,
                out,
                save_delta,
                overwrite,
                json,
            },
            (cli.device, device::Precision::F32),
        ),
        Command::Bench {
            model,
            runs,
            batch,
            seq,
            op: Some(op),
            ..
        } => commands::bench::run_op(
            &model,
            (cli.device, cli.dtype),
            &op,
            runs.max(1),
            batch.max(1),
            seq.max(1),
        ),
        Command::Bench {
            model,
            runs,
            batch,
            seq,
            json,
            ..
        } => commands::bench::run(
            &model,
            (cli.device, cli.dtype),
            runs.max(1),
            batch.max(1),
            seq.max(1),
            json,
        ),
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
            top_k,
            temperature,
            seed,
            json,
        } => {
            let opts = pmedit_engine::generate::GenerateOptions {
                max_new_tokens,
                top_k,
                temperature,
                seed,
                stop_at_eos: true,
            };
            commands::generate::run(&model, &prompt, &opts, (cli.device, cli.dtype), json)
        }
    }
}
