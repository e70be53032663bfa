//! Messages between the page and the engine worker (serde, bincode on the wire).

pub use pmedit_engine::edit::Algorithm;
pub use pmedit_engine::edit::Teaching as Tradeoff;
pub use pmedit_engine::edit::editor::teaching_lambdas as tradeoff_lambdas;
use serde::{Deserialize, Serialize};

/// One fact to write (plain fields: bincode, the worker's wire format, cannot skip fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The prompt with `{}` where the subject goes.
    pub prompt: String,
    /// The subject.
    pub subject: String,
    /// The new object.
    pub target_new: String,
    /// The CounterFact record it came from, for the paper's metrics.
    pub record: Option<FactRecord>,
}

/// What a CounterFact record adds to a fact: the prompts that score an edit (docs/MATH.md §9).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactRecord {
    /// The true object.
    pub target_true: String,
    /// Paraphrases of the prompt (subject filled in).
    pub paraphrases: Vec<String>,
    /// Prompts about other subjects and their answers, which must not change.
    pub neighborhood: Vec<(String, String)>,
}

/// The paper's CounterFact scores ×100 (docs/MATH.md §9); NaN where a fact has no such prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Efficacy score: P(new) > P(true) on the rewrite prompt.
    pub es: f64,
    /// Paraphrase score.
    pub ps: f64,
    /// Neighbourhood score: P(true) > P(new) on other subjects' prompts.
    pub ns: f64,
    /// Harmonic mean of ES, PS, NS.
    pub s: f64,
    /// Efficacy magnitude: P(new) − P(true).
    pub em: f64,
    /// Paraphrase magnitude.
    pub pm: f64,
    /// Neighbourhood magnitude.
    pub nm: f64,
}

impl From<&pmedit_engine::eval::metrics::CounterfactMetrics> for Scores {
    fn from(m: &pmedit_engine::eval::metrics::CounterfactMetrics) -> Self {
        Self {
            es: m.es,
            ps: m.ps,
            ns: m.ns,
            s: m.s,
            em: m.em,
            pm: m.pm,
            nm: m.nm,
        }
    }
}

/// The metrics of an edit's facts before and after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    /// Means over the facts, before.
    pub before: Scores,
    /// Means over the facts, after.
    pub after: Scores,
    /// Per fact: subject, before, after.
    pub facts: Vec<(String, Scores, Scores)>,
    /// Facts whose true object is the model's own answer before the edit (typed facts with no
    /// CounterFact record: only ES/EM can be measured).
    pub model_answers: usize,
}

/// The files of a Hugging Face GPT-2 directory, as bytes read in the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFiles {
    /// A name to show (the directory or URL).
    pub name: String,
    /// `config.json`.
    pub config: Vec<u8>,
    /// `tokenizer.json`, or `vocab.json` + `merges.txt`.
    pub tokenizer: TokenizerFiles,
    /// `model.safetensors`, or the shards of a sharded checkpoint.
    pub weights: Weights,
    /// C0 statistics (`pmedit stats` output), when given.
    pub stats: Option<StatsFile>,
    /// The authors' per-layer `.npz` statistics (`mom2.mom2`, `mom2.count`), when given.
    pub npz_stats: Vec<NpzStats>,
}

/// Where a `pmedit stats` file comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatsFile {
    /// Its bytes (a small served file).
    Bytes(Vec<u8>),
    /// A picked file's `blob:` URL, which the worker reads in ranges (a GPT2-XL layer is 164 MB:
    /// posted as bytes it would sit in wasm memory twice before being read).
    Url(WeightUrl),
}

/// One layer's statistics in the authors' `.npz` format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpzStats {
    /// The file's name (for messages).
    pub name: String,
    /// The layer it holds, read from the name (see [`crate::form::npz_layer`]).
    pub layer: usize,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Weights {
    /// The bytes of `model.safetensors` themselves.
    Bytes(Vec<u8>),
    /// `model.safetensors`, or every shard a `model.safetensors.index.json` names, as absolute
    /// URLs — `http(s):` for a served directory, `blob:` for files the user picked — that the
    /// worker reads with range requests, one tensor at a time, so a large file never sits whole in
    /// wasm memory.
    Urls(Vec<WeightUrl>),
}

/// One weights file to read by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightUrl {
    /// Its file name (`model.safetensors`, `model-00001-of-00002.safetensors`), for messages.
    pub file: String,
    /// Where to read it.
    pub url: String,
}

/// The tokenizer files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenizerFiles {
    /// A `tokenizer.json`.
    Json(Vec<u8>),
    /// `vocab.json` and `merges.txt`.
    VocabMerges(Vec<u8>, Vec<u8>),
}

/// Which compute device the worker should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backend {
    /// WebGPU when the browser gives an adapter, else the CPU.
    Auto,
    /// The CPU backend (burn's `flex`, in wasm).
    Cpu,
}

/// Where the loaded model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compute {
    /// The browser's WebGPU adapter (burn wgpu).
    WebGpu,
    /// The CPU (burn flex in wasm).
    Cpu,
}

impl std::fmt::Display for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WebGpu => "WebGPU",
            Self::Cpu => "CPU",
        })
    }
}

/// A failed request: the engine's error kind (`input`, `numerical`, `safetensors`, …, or
/// `worker` for the worker's own) and the message to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerError {
    /// [`pmedit_engine::EngineError::kind`], or `worker`.
    pub kind: String,
    /// What went wrong, for people.
    pub message: String,
}

impl WorkerError {
    /// An error of the worker itself (no model loaded, a bad fact).
    pub fn worker(message: impl Into<String>) -> Self {
        Self {
            kind: "worker".into(),
            message: message.into(),
        }
    }
}

impl From<pmedit_engine::EngineError> for WorkerError {
    fn from(e: pmedit_engine::EngineError) -> Self {
        Self {
            kind: e.kind().into(),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the page asks of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Load a model (replacing the current one).
    Load {
        /// Its files.
        files: ModelFiles,
        /// Where to run it.
        backend: Backend,
    },
    /// Top-k next tokens for each prompt.
    Predict {
        /// Full prompts.
        prompts: Vec<String>,
        /// How many tokens.
        k: usize,
    },
    /// Apply an edit.
    Edit(EditSettings),
    /// Restore the weights as loaded.
    Undo,
    /// The current (edited) weights as `model.safetensors`, written to an OPFS file tensor by
    /// tensor (in the dtype the weights are kept in).
    Download,
    /// Only the change the edits made (Δ per edited layer, a `pmedit-delta-1` file for `pmedit
    /// apply-delta`).
    DownloadChange,
    /// Compute C0 statistics on `text` for the layers an edit with `algorithm` (and `layers`, when
    /// given) would use and that have none yet, one layer at a time.
    ComputeStats {
        /// Running text in the model's domain.
        text: String,
        /// The algorithm whose preset names the layers.
        algorithm: Algorithm,
        /// The edit form's layers, overriding the preset's.
        layers: Option<Vec<usize>>,
        /// Use at most this many tokens.
        max_tokens: usize,
    },
    /// The paper's teaching experiments on CounterFact records (docs/MATH.md §9): the metrics of
    /// one batch per grid point (algorithm × batch size × λ), each edited into the unedited model
    /// and undone.
    Sweep(SweepSettings),
    /// Causal tracing of one fact (docs/MATH.md §12): which tokens and layers carry its recall.
    Trace {
        /// The prompt with the subject in it.
        prompt: String,
        /// The subject, whose token embeddings are corrupted.
        subject: String,
        /// Noise samples per restoration.
        samples: usize,
        /// Layers restored together for the MLP and attention tables.
        window: usize,
        /// The algorithm whose preset layers the page marks.
        algorithm: Algorithm,
    },
}

/// A causal trace, with the layers the edit form's algorithm would edit by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceReport {
    /// The trace.
    pub trace: pmedit_engine::trace::Trace,
    /// The preset's layers for the algorithm asked about.
    pub preset_layers: Vec<usize>,
    /// Milliseconds taken.
    pub ms: f64,
}

/// An edit's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditSettings {
    /// The facts (a batch for MEMIT/EMMET).
    pub facts: Vec<Fact>,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Layers to edit (default: the presets).
    pub layers: Option<Vec<usize>>,
    /// λ (default: the presets).
    pub lambda: Option<f64>,
    /// α, EMMET's regulariser (default: the presets).
    pub alpha: Option<f64>,
    /// Value optimisation steps (default: the presets).
    pub steps: Option<usize>,
    /// The paper's context templates (sampled from the model with the algorithm's recipe, cached
    /// per model) instead of the bare prompt.
    pub sampled_templates: bool,
    /// Prompts whose top-k predictions to show before and after.
    pub probes: Vec<String>,
}

/// A sweep's grid and the records it draws its batches from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSettings {
    /// CounterFact records (EasyEdit's JSON, as the demo's `heldout.json`).
    pub dataset: Vec<u8>,
    /// The algorithms compared.
    pub algorithms: Vec<Algorithm>,
    /// Batch sizes (each point edits the first records of one seeded shuffle, so a larger batch
    /// holds the smaller ones' facts).
    pub batch_sizes: Vec<usize>,
    /// λ values (an empty list: each algorithm's preset λ). Algorithms that do not use λ run once
    /// per batch size.
    pub lambdas: Vec<f64>,
    /// Layers to edit (default: the presets).
    pub layers: Option<Vec<usize>>,
    /// Value optimisation steps (default: the presets).
    pub steps: Option<usize>,
}

/// One grid point of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Facts edited together.
    pub batch_size: usize,
    /// λ used.
    pub lambda: f64,
    /// The layers edited.
    pub layers: Vec<usize>,
    /// Means over the batch's records before the edit.
    pub before: Scores,
    /// After it.
    pub after: Scores,
    /// Milliseconds the edit took.
    pub edit_ms: f64,
}

/// One next-token candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The token's id.
    pub id: u32,
    /// The token's text.
    pub token: String,
    /// Its log-probability (natural log).
    pub logprob: f64,
    /// Its probability.
    pub prob: f64,
}

/// Top-k predictions for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The prompt.
    pub prompt: String,
    /// Most likely next tokens, most likely first.
    pub top: Vec<Candidate>,
}

/// What the worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Something is under way.
    Status(String),
    /// A model is loaded and ready.
    Ready(ModelInfo),
    /// Predictions.
    Predictions(Vec<Prediction>),
    /// A value-optimisation step (for the loss curve).
    Loss {
        /// Request index in the batch.
        request: usize,
        /// Step.
        step: usize,
        /// Total loss.
        loss: f64,
    },
    /// An edit is applied.
    Edited(EditReport),
    /// The original weights are back.
    Restored,
    /// A file to download, as bytes (small files).
    Weights {
        /// The name to save it as.
        name: String,
        /// Its contents.
        bytes: Vec<u8>,
    },
    /// A file to download, written in the origin-private file system.
    Saved {
        /// The OPFS file (also the name to save it as).
        name: String,
        /// Its length.
        bytes: u64,
    },
    /// C0 statistics were computed.
    StatsReady {
        /// The layers computed now.
        layers: Vec<usize>,
        /// Every layer with statistics.
        all: Vec<usize>,
        /// Tokens seen.
        tokens: u64,
        /// Milliseconds taken.
        ms: f64,
    },
    /// A causal trace is done.
    Traced(TraceReport),
    /// One grid point of a running sweep is done.
    SweepPoint(SweepPoint),
    /// The sweep is done (its points were sent one by one).
    Swept {
        /// Grid points run.
        points: usize,
        /// Milliseconds taken.
        ms: f64,
    },
    /// Something failed; the worker keeps its previous state.
    Error(WorkerError),
    /// The WebGPU device was lost (the worker dropped the model that lived on it): the page
    /// reloads the model on the CPU.
    DeviceLost(String),
    /// The worker's WebAssembly memory in bytes, sent after every request (it never shrinks, so
    /// it is also the high-water mark).
    Memory(u64),
}

/// About the loaded model and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// Where it computes.
    pub backend: Compute,
    /// The WebGPU adapter (name and limits) or why the CPU is used.
    pub adapter: String,
    /// Layers.
    pub n_layer: usize,
    /// Width.
    pub n_embd: usize,
    /// Parameters.
    pub params: usize,
    /// Layers with C0 statistics.
    pub stats_layers: Vec<usize>,
    /// How the weight matrices are stored on the device and why (`f32`, or `f16` on a WebGPU
    /// adapter with `shader-f16` or where f32 would not fit: half the memory; activations and
    /// edits still compute in f32).
    pub weights: String,
    /// Milliseconds from the request to ready.
    pub load_ms: f64,
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditReport {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Layers edited.
    pub layers: Vec<usize>,
    /// λ used.
    pub lambda: f64,
    /// Milliseconds the edit took.
    pub edit_ms: f64,
    /// The probes before.
    pub before: Vec<Prediction>,
    /// The probes after.
    pub after: Vec<Prediction>,
    /// Total loss per step, for each request.
    pub loss: Vec<Vec<f64>>,
    /// P(new target) on each fact's prompt before and after.
    pub target_prob: Vec<(f64, f64)>,
    /// The preservation–memorization trade-off of the edited (last) layer's system.
    pub tradeoff: Option<Tradeoff>,
    /// Greedy continuation of the first fact's prompt before and after.
    pub generated: (String, String),
    /// The context templates the keys and values were averaged over (1: the bare prompt).
    pub templates: usize,
    /// ES/PS/NS/S before and after (boxed: the largest message stays small).
    pub metrics: Option<Box<MetricsReport>>,
    /// Where the request's time went, in order: each step's name and milliseconds (the edit
    /// itself is one of them; the rest is what the page shows around it).
    pub phases: Vec<(String, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmedit_engine::edit::tradeoff::TradeoffPoint;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(x: T) {
        let bytes = bincode::serialize(&x).unwrap();
        assert_eq!(bincode::deserialize::<T>(&bytes).unwrap(), x);
    }

    /// Every message survives bincode, the worker's wire format (which cannot skip fields: a
    /// `skip_serializing_if` anywhere would make the worker fail to read the message).
    #[test]
    fn messages_survive_the_worker_wire_format() {
        let fact = Fact {
            prompt: "{} is in".into(),
            subject: "Paris".into(),
            target_new: "Italy".into(),
            record: Some(FactRecord {
                target_true: "France".into(),
                paraphrases: vec!["Paris lies in".into()],
                neighborhood: vec![("Lyon is in".into(), "France".into())],
            }),
        };
        round_trip(Request::Edit(EditSettings {
            facts: vec![fact],
            algorithm: Algorithm::RRome,
            layers: None,
            lambda: Some(10.0),
            alpha: Some(0.1),
            steps: None,
            sampled_templates: true,
            probes: vec!["Paris is in".into()],
        }));
        round_trip(Request::Load {
            files: ModelFiles {
                name: "m".into(),
                config: b"{}".to_vec(),
                tokenizer: TokenizerFiles::VocabMerges(vec![1], vec![2]),
                weights: Weights::Bytes(vec![0; 3]),
                stats: Some(StatsFile::Url(WeightUrl {
                    file: "stats.safetensors".into(),
                    url: "blob:http://127.0.0.1/s".into(),
                })),
                npz_stats: vec![NpzStats {
                    name: "transformer.h.17.mlp.c_proj_float32_mom2_100000.npz".into(),
                    layer: 17,
                    bytes: vec![1, 2, 3],
                }],
            },
            backend: Backend::Auto,
        });
        let pred = Prediction {
            prompt: "p".into(),
            top: vec![Candidate {
                id: 8031,
                token: " Italy".into(),
                logprob: -0.5f64.ln().abs(),
                prob: 0.5,
            }],
        };
        let point = TradeoffPoint {
            lambda: 1.0,
            preservation: 0.1,
            memorization: 0.0,
        };
        round_trip(Response::Edited(EditReport {
            algorithm: Algorithm::Rome,
            layers: vec![0],
            lambda: 1.0,
            edit_ms: 3.0,
            before: vec![pred.clone()],
            after: vec![pred],
            loss: vec![vec![3.0, 1.0]],
            target_prob: vec![(0.1, 0.9)],
            generated: ("a".into(), "b".into()),
            templates: 21,
            metrics: Some(Box::new(MetricsReport {
                before: Scores::default(),
                after: Scores {
                    es: 100.0,
                    ..Default::default()
                },
                facts: vec![("Paris".into(), Scores::default(), Scores::default())],
                model_answers: 1,
            })),
            tradeoff: Some(Tradeoff {
                layer: 0,
                keys: 1,
                equality: vec![point],
                least_squares: vec![point],
                null_space: Some((point, 3)),
            }),
            phases: vec![("edit".into(), 3.0)],
        }));
        round_trip(Response::Ready(ModelInfo {
            name: "demo".into(),
            backend: Compute::Cpu,
            adapter: "flex".into(),
            n_layer: 4,
            n_embd: 128,
            params: 1,
            stats_layers: vec![0, 1],
            weights: "f16".into(),
            load_ms: 1.0,
        }));
        round_trip(Response::Error(WorkerError::worker("x")));
        round_trip(Response::Error(
            pmedit_engine::EngineError::Numerical("C0".into()).into(),
        ));
        round_trip(Response::DeviceLost("destroyed".into()));
        round_trip(Weights::Urls(vec![
            WeightUrl {
                file: "model-00001-of-00002.safetensors".into(),
                url: "blob:http://127.0.0.1/x".into(),
            },
            WeightUrl {
                file: "model-00002-of-00002.safetensors".into(),
                url: "http://127.0.0.1/m/model-00002-of-00002.safetensors".into(),
            },
        ]));
        round_trip(Response::Weights {
            name: "pmedit-delta.safetensors".into(),
            bytes: vec![1, 2, 3],
        });
        round_trip(Response::Saved {
            name: "model.safetensors".into(),
            bytes: 7,
        });
        round_trip(Request::Sweep(SweepSettings {
            dataset: b"[]".to_vec(),
            algorithms: vec![Algorithm::Memit, Algorithm::Emmet],
            batch_sizes: vec![1, 4],
            lambdas: vec![10.0, 1000.0],
            layers: Some(vec![0, 1]),
            steps: Some(20),
        }));
        round_trip(Response::SweepPoint(SweepPoint {
            algorithm: Algorithm::AlphaEdit,
            batch_size: 4,
            lambda: 1.0,
            layers: vec![0],
            before: Scores::default(),
            after: Scores {
                ns: f64::NAN.max(80.0),
                ..Default::default()
            },
            edit_ms: 9.0,
        }));
        round_trip(Response::Swept { points: 6, ms: 1.0 });
        round_trip(Request::DownloadChange);
        round_trip(Response::Memory(1 << 31));
        round_trip(Request::Download);
        round_trip(Response::StatsReady {
            layers: vec![1],
            all: vec![0, 1],
            tokens: 5,
            ms: 1.0,
        });
        round_trip(Request::ComputeStats {
            text: "x".into(),
            algorithm: Algorithm::Memit,
            layers: Some(vec![2, 3]),
            max_tokens: 9,
        });
    }
}
