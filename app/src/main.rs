//! `pmedit`: edit facts inside GPT-2 models with ROME, r-ROME, MEMIT and EMMET.

mod commands;
mod destination;
mod device;
mod memory;
mod plot;
mod ranges;
mod shard;

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
    /// The dtype weight matrices are kept in (f16/bf16 where the device supports it: half the
    /// memory; activations, statistics and edits compute in f32), and the stored dtype of
    /// `random-model`.
    #[arg(long, global = true, value_enum, default_value_t = device::Precision::F32)]
    dtype: device::Precision,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model directory's config, parameter count, dtype and the device in use.
    Info(commands::info::InfoArgs),
    /// Next-token top-k predictions with log-probabilities.
    Predict(commands::predict::PredictArgs),
    /// Compute C0 statistics (uncentred second moment of the keys) over a text corpus.
    Stats(commands::stats::StatsArgs),
    /// Convert the authors' per-layer `.npz` statistics (mom2.mom2, mom2.count) for `pmedit edit`.
    ImportStats(commands::stats::ImportStatsArgs),
    /// Sum statistics computed on parts of a corpus (same model and layers).
    MergeStats(commands::stats::MergeStatsArgs),
    /// Edit facts: apply ROME, r-ROME, MEMIT or EMMET and write the edited model directory.
    Edit(commands::edit::EditArgs),
    /// Measure forward, generation and statistics throughput on the chosen device.
    Bench(commands::bench::BenchArgs),
    /// Run the paper's experiments: batched edits of dataset records, scored before and after,
    /// with sweeps over batch sizes and λ, reports and plots.
    Eval(commands::eval::EvalArgs),
    /// The quick start: edit facts in the built-in demo model and show what changed.
    Demo(commands::demo::DemoArgs),
    /// Train the built-in demo model (a small GPT-2 that knows real CounterFact facts).
    TrainDemo(commands::train_demo::TrainDemoArgs),
    /// Generate a continuation (KV cache, seeded top-k sampling).
    Generate(commands::generate::GenerateArgs),
    /// Causal tracing: corrupt the subject, restore one clean state at a time, and show which
    /// layers and tokens carry the fact (how to choose the layer to edit).
    Trace(commands::trace::TraceArgs),
    /// Write a randomly initialised GPT-2 of a real shape (small … XL) for scale checks.
    RandomModel(commands::random_model::RandomModelArgs),
    /// Rebuild an edited model from the original and the change an edit made (`edit
    /// --save-delta`, or the page's "download only the change").
    ApplyDelta(commands::apply_delta::ApplyDeltaArgs),
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
    let any = (cli.device, cli.dtype);
    match cli.command {
        Command::Eval(args) => commands::eval::run(args, any),
        Command::Demo(args) => commands::demo::run(args, any),
        Command::TrainDemo(args) => commands::train_demo::run(args, (cli.device, device::Precision::F32)),
        Command::Info(args) => commands::info::run(args, any),
        Command::Predict(args) => commands::predict::run(args, any),
        Command::Stats(args) => commands::stats::run(args, any),
        Command::MergeStats(args) => commands::stats::run_merge(args),
        Command::ImportStats(args) => commands::stats::run_import(args, any),
        Command::Edit(args) => commands::edit::run(args, any),
        Command::Bench(args) => commands::bench::dispatch(args, any),
        Command::Generate(args) => commands::generate::run(args, any),
        Command::Trace(args) => commands::trace::run(args, any),
        Command::RandomModel(args) => commands::random_model::run(args, cli.dtype),
        Command::ApplyDelta(args) => commands::apply_delta::run(args, any),
    }
}
