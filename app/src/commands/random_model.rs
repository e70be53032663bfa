//! `pmedit random-model`: a randomly initialised GPT-2 of a real shape (small, medium, large, XL)
//! in the Hugging Face hub layout — `config.json`, GPT-2's tokenizer (`vocab.json`,
//! `merges.txt`) and `model.safetensors` — so benchmarks, the browser and GPU machines get
//! models of any size without Python or a download.
//!
//! The weights follow transformers' initialisation: N(0, 0.02) for the embeddings and weights,
//! N(0, 0.02/√(2·n_layer)) for the projections that feed the residual stream (`attn.c_proj`,
//! `mlp.c_proj`), LayerNorms 1 and 0, biases 0, drawn from a seeded ChaCha8 stream. The file is
//! written tensor by tensor in fixed-size pieces (the safetensors header is known from the shapes
//! alone), so an XL model (6.2 GB in f32) is written in a few MB of memory.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::json;

use crate::destination::{Destination, Kind};
use crate::device::Precision as Dtype;

/// The published GPT-2 shapes (`--shape gpt2-small` … `gpt2-xl`, the hub's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[allow(clippy::enum_variant_names)]
pub enum Shape {
    /// 124 M parameters: 12 layers, d = 768, 12 heads.
    Gpt2Small,
    /// 355 M: 24 layers, d = 1024, 16 heads.
    Gpt2Medium,
    /// 774 M: 36 layers, d = 1280, 20 heads.
    Gpt2Large,
    /// 1.5 B: 48 layers, d = 1600, 25 heads.
    Gpt2Xl,
}

impl Shape {
    /// (layers, width, heads).
    fn dims(self) -> (usize, usize, usize) {
        match self {
            Shape::Gpt2Small => (12, 768, 12),
            Shape::Gpt2Medium => (24, 1024, 16),
            Shape::Gpt2Large => (36, 1280, 20),
            Shape::Gpt2Xl => (48, 1600, 25),
        }
    }
}

#[derive(clap::Args)]
pub struct RandomModelArgs {
    /// The shape.
    #[arg(long, value_enum)]
    pub shape: Shape,
    /// Number of blocks instead of the shape's (a shallower model of the same width).
    #[arg(long, value_parser = crate::ranges::positive)]
    pub n_layer: Option<usize>,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output model directory (written beside and renamed into place).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace `--out` if it is a model this command wrote.
    #[arg(long)]
    pub overwrite: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// GPT-2's vocabulary and context.
const VOCAB: usize = 50257;
const POSITIONS: usize = 1024;
/// Values generated and written per piece.
const PIECE: usize = 1 << 20;

/// How one tensor is initialised.
#[derive(Clone, Copy)]
enum Init {
    Normal(f64),
    Constant(f32),
}

/// The tensors of a GPT-2 in the order they are written, with their shapes and initialisation.
fn tensors(n_layer: usize, d: usize) -> Vec<(String, Vec<usize>, Init)> {
    let std = 0.02;
    let residual = 0.02 / (2.0 * n_layer as f64).sqrt();
    let mut t = vec![
        ("transformer.wte.weight".to_string(), vec![VOCAB, d], Init::Normal(std)),
        (
            "transformer.wpe.weight".to_string(),
            vec![POSITIONS, d],
            Init::Normal(std),
        ),
    ];
    for l in 0..n_layer {
        let p = |s: &str| format!("transformer.h.{l}.{s}");
        t.extend([
            (p("ln_1.weight"), vec![d], Init::Constant(1.0)),
            (p("ln_1.bias"), vec![d], Init::Constant(0.0)),
            (p("attn.c_attn.weight"), vec![d, 3 * d], Init::Normal(std)),
            (p("attn.c_attn.bias"), vec![3 * d], Init::Constant(0.0)),
            (p("attn.c_proj.weight"), vec![d, d], Init::Normal(residual)),
            (p("attn.c_proj.bias"), vec![d], Init::Constant(0.0)),
            (p("ln_2.weight"), vec![d], Init::Constant(1.0)),
            (p("ln_2.bias"), vec![d], Init::Constant(0.0)),
            (p("mlp.c_fc.weight"), vec![d, 4 * d], Init::Normal(std)),
            (p("mlp.c_fc.bias"), vec![4 * d], Init::Constant(0.0)),
            (p("mlp.c_proj.weight"), vec![4 * d, d], Init::Normal(residual)),
            (p("mlp.c_proj.bias"), vec![d], Init::Constant(0.0)),
        ]);
    }
    t.extend([
        ("transformer.ln_f.weight".to_string(), vec![d], Init::Constant(1.0)),
        ("transformer.ln_f.bias".to_string(), vec![d], Init::Constant(0.0)),
    ]);
    t
}

/// A standard normal draw (Box–Muller on two uniform draws in (0, 1]).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let uniform = |rng: &mut ChaCha8Rng| ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let (u, v) = (uniform(rng), uniform(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Writes `model.safetensors` to `out`: the header from the shapes, then each tensor's values
/// in pieces of [`PIECE`].
fn write_weights(out: &mut impl Write, list: &[(String, Vec<usize>, Init)], dtype: Dtype, seed: u64) -> Result<u64> {
    let (width, dtype_name) = match dtype {
        Dtype::F32 => (4, "F32"),
        Dtype::F16 => (2, "F16"),
        Dtype::Bf16 => (2, "BF16"),
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, shape, _) in list {
        let bytes = shape.iter().product::<usize>() as u64 * width;
        header.insert(
            name.clone(),
            json!({
                "dtype": dtype_name,
                "shape": shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&header)?;
    text.resize(text.len().div_ceil(8) * 8, b' ');
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(&text)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE * width as usize);
    for (_, shape, init) in list {
        let mut left = shape.iter().product::<usize>();
        while left > 0 {
            let n = left.min(PIECE);
            buf.clear();
            for _ in 0..n {
                let x = match *init {
                    Init::Normal(std) => (normal(&mut rng) * std) as f32,
                    Init::Constant(c) => c,
                };
                match dtype {
                    Dtype::F32 => buf.extend_from_slice(&x.to_le_bytes()),
                    Dtype::F16 => buf.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                    Dtype::Bf16 => buf.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
                }
            }
            out.write_all(&buf)?;
            left -= n;
        }
    }
    Ok(8 + text.len() as u64 + offset)
}

/// Writes the model; `dtype` is the global `--dtype` (f32, the hub's GPT-2 files, f16 or bf16).
pub fn run(args: RandomModelArgs, dtype: Dtype) -> Result<()> {
    let dest = Destination::new(&args.out, &[], Kind::RandomModel, args.overwrite)?;
    let (layers, d, heads) = args.shape.dims();
    let n_layer = args.n_layer.unwrap_or(layers);
    anyhow::ensure!(
        n_layer <= crate::commands::MAX_RANDOM_LAYERS,
        "--n-layer {n_layer}: at most {} blocks",
        crate::commands::MAX_RANDOM_LAYERS
    );
    let list = tensors(n_layer, d);
    let parameters: usize = list.iter().map(|(_, s, _)| s.iter().product::<usize>()).sum();
    let config = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": VOCAB,
        "n_positions": POSITIONS,
        "n_ctx": POSITIONS,
        "n_embd": d,
        "n_layer": n_layer,
        "n_head": heads,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "torch_dtype": match dtype { Dtype::F32 => "float32", Dtype::F16 => "float16", Dtype::Bf16 => "bfloat16" },
    });
    let start = std::time::Instant::now();
    let mut bytes = 0;
    dest.write_dir(|dir| {
        let file = std::fs::File::create(dir.join("model.safetensors")).context("creating model.safetensors")?;
        let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
        bytes = write_weights(&mut w, &list, dtype, args.seed)?;
        w.flush()?;
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
        // GPT-2's own tokenizer files, as the hub ships them.
        std::fs::write(dir.join("vocab.json"), include_bytes!("../../assets/gpt2-tokenizer/vocab.json"))?;
        std::fs::write(dir.join("merges.txt"), include_bytes!("../../assets/gpt2-tokenizer/merges.txt"))?;
        let marker = json!({"shape": format!("{:?}", args.shape), "n_layer": n_layer, "seed": args.seed, "parameters": parameters});
        std::fs::write(dir.join(Kind::RandomModel.marker()), serde_json::to_vec_pretty(&marker)?)?;
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            json!({"out": args.out, "parameters": parameters, "weights_bytes": bytes, "seconds": secs})
        );
    } else {
        println!(
            "wrote {} ({} layers, d = {d}, {:.1} M parameters, {:.2} GB of weights) in {secs:.1} s",
            args.out.display(),
            n_layer,
            parameters as f64 / 1e6,
            bytes as f64 / 1e9
        );
    }
    Ok(())
}
