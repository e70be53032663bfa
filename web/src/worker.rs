//! The engine worker: owns the model, answers [`Request`]s one at a time with [`Response`]s.
//! It runs in a dedicated Web Worker so a long edit never freezes the page.

use burn::prelude::*;
use burn::tensor::FloatDType;
use futures::{SinkExt, StreamExt};
use gloo_worker::reactor::{ReactorScope, reactor};
use pmedit_engine::edit::{EditEvent, EditRequest, Editor, Overrides, TemplateChoice, ValueOverrides};
use pmedit_engine::eval::dataset::{Benchmark, Probe, Record, read_records};
use pmedit_engine::eval::records::{RecordScores, score_records, summarize};
use pmedit_engine::eval::session::{EvalSpec, run_eval};
use pmedit_engine::load::stats_file::{stats_for_model, stats_for_model_in};
use pmedit_engine::load::{ByteSource, MemorySource, ModelParts, load_model_source_in, load_model_sources_in};
use pmedit_engine::model::EditableModel;
use pmedit_engine::model::ModelConfig;
use pmedit_engine::predict::top_k;
use pmedit_engine::readback::read_scalar;
use pmedit_engine::save::WeightDtype;
use pmedit_engine::tokenizer::Gpt2Tokenizer;
use wasm_bindgen::JsCast;

use crate::budget::{half_precision_file, storage_dtype};
use crate::protocol::{
    Algorithm, Backend, Candidate, Compute, EditReport, EditSettings, Fact, MetricsReport, ModelFiles, ModelInfo,
    Prediction, Request, Response, Scores, StatsFile, SweepPoint, SweepSettings, TokenizerFiles, TraceReport,
    WeightUrl, Weights, WorkerError, tradeoff_lambdas,
};
use crate::range::RangeSource;
use crate::scale::duration_label;

/// What the worker holds between requests.
struct State {
    name: String,
    /// The model, its tokenizer and statistics, and the undo record of its edits.
    editor: Editor,
    /// Blocks and width of the model.
    n_layer: usize,
    n_embd: usize,
    n_positions: usize,
    /// Where the model computes.
    compute: Compute,
    /// The dtype its weight matrices are kept in, and why.
    weights: String,
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The reactor registered by the worker binary.
#[reactor]
pub async fn EngineWorker(mut scope: ReactorScope<Request, Response>) {
    let mut state: Option<State> = None;
    // The WebGPU device, brought up once (burn registers one runtime per adapter) on the first
    // load that asks for it; `Err` holds why there is none.
    let mut gpu: Option<Result<(Device, Adapter), String>> = None;
    while let Some(request) = scope.next().await {
        if matches!(
            request,
            Request::Load {
                backend: Backend::Auto,
                ..
            }
        ) && gpu.is_none()
        {
            gpu = Some(webgpu_device().await);
        }
        // Progress (the value optimisation's loss per step) goes out while the request runs: the
        // engine yields at every device read on WebGPU, and then the forwarder sends what is queued.
        let (progress, queued) = futures::channel::mpsc::unbounded();
        let (st, device) = (&mut state, gpu.as_ref());
        let work = async move { handle(st, request, device, &progress).await };
        let (result, sent) = futures::future::join(work, forward(queued, &mut scope)).await;
        if sent.is_err() {
            return;
        }
        let replies = match result {
            Ok(r) => r,
            Err(e) => match lost_device(&state).await {
                // The model lived on a device that is gone: drop it, never offer that device
                // again, and let the page reload on the CPU.
                Some(why) => {
                    let why = crate::failure::innermost_cause(&why);
                    state = None;
                    gpu = Some(Err(format!("the WebGPU device was lost ({why})")));
                    vec![Response::DeviceLost(format!(
                        "The WebGPU device was lost ({why}) and the request failed"
                    ))]
                }
                None => vec![Response::Error(e)],
            },
        };
        let memory = wasm_bindgen::memory()
            .dyn_into::<js_sys::WebAssembly::Memory>()
            .map(|m| {
                m.buffer()
                    .dyn_into::<js_sys::ArrayBuffer>()
                    .map_or(0, |b| b.byte_length() as u64)
            })
            .unwrap_or(0);
        for r in replies.into_iter().chain([Response::Memory(memory)]) {
            if scope.send(r).await.is_err() {
                return;
            }
        }
    }
}

/// Before an edit and after a failed request on WebGPU: whether the device still computes (a test
/// read), and if not, why. burn's wgpu runtime marks a device lost by the browser as poisoned and fails every read
/// on it from then on.
async fn lost_device(state: &Option<State>) -> Option<String> {
    let s = state.as_ref().filter(|s| s.compute == Compute::WebGpu)?;
    let device = s.editor.model().device();
    let probe = Tensor::<1>::from_data(TensorData::new(vec![1f32, 2.0], [2]), &device).sum();
    match read_scalar::<f32, 1, Float>(probe).await {
        Ok(3.0) => None,
        Ok(x) => Some(format!("a test sum gave {x} instead of 3")),
        Err(e) => Some(e.to_string()),
    }
}

/// Sends each queued progress message to the page until the sender is dropped.
async fn forward(
    mut queued: futures::channel::mpsc::UnboundedReceiver<Response>,
    scope: &mut ReactorScope<Request, Response>,
) -> Result<(), ()> {
    while let Some(r) = queued.next().await {
        scope.send(r).await.map_err(|_| ())?;
    }
    Ok(())
}

fn no_model() -> WorkerError {
    WorkerError::worker("no model is loaded")
}

async fn handle(
    state: &mut Option<State>,
    request: Request,
    gpu: Option<&Result<(Device, Adapter), String>>,
    progress: &Progress,
) -> Result<Vec<Response>, WorkerError> {
    match request {
        Request::Load { files, backend } => {
            let start = now_ms();
            let (device, compute, adapter) = pick_device(backend, gpu);
            let loaded = load(files, &device, compute).await?;
            let info = ModelInfo {
                name: loaded.name.clone(),
                backend: compute,
                adapter,
                n_layer: loaded.n_layer,
                n_embd: loaded.n_embd,
                params: loaded.editor.model().parameters(),
                stats_layers: loaded.editor.statistics_layers(),
                weights: loaded.weights.clone(),
                load_ms: now_ms() - start,
            };
            *state = Some(loaded);
            Ok(vec![Response::Ready(info)])
        }
        Request::Predict { prompts, k } => {
            let s = state.as_ref().ok_or_else(no_model)?;
            Ok(vec![Response::Predictions(predict(s, &prompts, k).await?)])
        }
        Request::Edit(settings) => {
            // A device lost since the last request fails this one tiny read at once, before an
            // edit queues its forward passes on it (each a burst of failing dispatches that
            // delays the fallback to the CPU by seconds).
            if let Some(why) = lost_device(state).await {
                return Err(WorkerError {
                    kind: "backend".into(),
                    message: why,
                });
            }
            let s = state.as_mut().ok_or_else(no_model)?;
            Ok(vec![Response::Edited(edit(s, &settings, progress).await?)])
        }
        Request::ComputeStats {
            text,
            algorithm,
            layers,
            max_tokens,
        } => {
            let s = state.as_mut().ok_or_else(no_model)?;
            let start = now_ms();
            let plan = s.editor.plan(
                algorithm,
                &Overrides {
                    layers,
                    ..Default::default()
                },
            )?;
            let have = s.editor.statistics_layers();
            let missing: Vec<usize> = plan.hparams.layers.into_iter().filter(|l| !have.contains(l)).collect();
            let mut ids = s.editor.tokenizer().encode(&text)?;
            ids.truncate(max_tokens);
            // Windows of at most 1024 tokens: a Llama-3 allows 131072, whose attention over one
            // window would not fit.
            let seqs = pmedit_engine::edit::stats::windows(&ids, s.n_positions.min(1024));
            if seqs.is_empty() {
                return Err(WorkerError::worker("the text is empty"));
            }
            // One layer at a time: one n × n accumulator on the device, never one per layer.
            let mut tokens = 0;
            for (i, &layer) in missing.iter().enumerate() {
                let _ = progress.unbounded_send(Response::Status(format!(
                    "computing C0 statistics for layer {layer} ({} of {})…",
                    i + 1,
                    missing.len()
                )));
                let s = state.as_mut().ok_or_else(no_model)?;
                tokens = s.editor.collect_statistics(&seqs, &[layer], 8)?;
                // A read waits for the layer's work: a GPU process that died under it fails here,
                // rather than the page announcing statistics that do not exist.
                if let Some(why) = lost_device(state).await {
                    return Err(WorkerError {
                        kind: "backend".into(),
                        message: why,
                    });
                }
            }
            let s = state.as_ref().ok_or_else(no_model)?;
            Ok(vec![Response::StatsReady {
                layers: missing,
                all: s.editor.statistics_layers(),
                tokens,
                ms: now_ms() - start,
            }])
        }
        Request::Trace {
            prompt,
            subject,
            samples,
            window,
            algorithm,
        } => {
            let s = state.as_ref().ok_or_else(no_model)?;
            let start = now_ms();
            let preset_layers = s.editor.plan(algorithm, &Overrides::default())?.hparams.layers;
            let opts = pmedit_engine::trace::TraceOptions {
                samples,
                window,
                ..Default::default()
            };
            let trace = pmedit_engine::trace::trace(
                s.editor.model(),
                s.editor.tokenizer(),
                &prompt,
                &subject,
                &opts,
                |done, total| {
                    let _ = progress.unbounded_send(Response::Status(format!(
                        "causal trace: {done} of {total} restorations…"
                    )));
                },
            )
            .await?;
            Ok(vec![Response::Traced(TraceReport {
                trace,
                preset_layers,
                ms: now_ms() - start,
            })])
        }
        Request::Sweep(settings) => {
            let s = state.as_mut().ok_or_else(no_model)?;
            let start = now_ms();
            let points = sweep(s, &settings, progress).await?;
            Ok(vec![Response::Swept {
                points,
                ms: now_ms() - start,
            }])
        }
        Request::Download => {
            let s = state.as_ref().ok_or_else(no_model)?;
            let dtype = if s.editor.model().float_dtype() == FloatDType::F32 {
                WeightDtype::F32
            } else {
                WeightDtype::F16
            };
            let name = "model.safetensors".to_string();
            let mut file = crate::opfs::Writer::create(&name).await.map_err(WorkerError::worker)?;
            let written = pmedit_engine::save::stream_model(s.editor.model(), dtype, |piece| {
                file.write(piece).map_err(pmedit_engine::EngineError::Input)
            })
            .await;
            // Closed in every case: an open access handle would lock the file for the next try.
            let closed = file.close().await.map_err(WorkerError::worker);
            let bytes = written?;
            closed?;
            Ok(vec![Response::Saved { name, bytes }])
        }
        Request::DownloadChange => {
            let s = state.as_ref().ok_or_else(no_model)?;
            let change = s.editor.change();
            if change.is_empty() {
                return Err(WorkerError::worker("nothing is edited: there is no change to download"));
            }
            let bytes = pmedit_engine::save::delta_file::delta_to_bytes(change)?;
            Ok(vec![Response::Weights {
                name: format!("{}-delta.safetensors", s.name.replace(['/', ' '], "_")),
                bytes,
            }])
        }
        Request::Undo => {
            let s = state.as_mut().ok_or_else(no_model)?;
            s.editor.undo();
            Ok(vec![Response::Restored])
        }
    }
}

/// The browser's WebGPU adapter: its description and limits, and whether it is a software
/// fallback (SwiftShader, WARP).
pub struct Adapter {
    description: String,
    fallback: bool,
}

/// WebGPU when it was asked for and the browser gave a device, else the CPU backend (burn
/// `flex` in wasm), with a line that says which adapter or why not.
fn pick_device(backend: Backend, gpu: Option<&Result<(Device, Adapter), String>>) -> (Device, Compute, String) {
    match (backend, gpu) {
        (Backend::Auto, Some(Ok((device, adapter)))) => {
            // A software adapter runs each kernel on the CPU with a large cost per dispatch: say
            // that the CPU backend is faster there.
            let hint = if adapter.fallback {
                "; on a software adapter the CPU backend (?backend=cpu) edits much faster"
            } else {
                ""
            };
            (
                device.clone(),
                Compute::WebGpu,
                format!("burn wgpu; {}{hint}", adapter.description),
            )
        }
        (Backend::Auto, Some(Err(why))) => (
            Device::flex(),
            Compute::Cpu,
            format!("burn flex (wasm32); {why}: CPU fallback"),
        ),
        (Backend::Cpu, _) => (Device::flex(), Compute::Cpu, "burn flex (wasm32); CPU chosen".into()),
        (Backend::Auto, None) => (
            Device::flex(),
            Compute::Cpu,
            "burn flex (wasm32); no WebGPU device was asked for".into(),
        ),
    }
}

/// Brings up burn's wgpu runtime on the browser's WebGPU adapter (asynchronously: a browser
/// cannot block) and returns the device with the adapter's description, or why there is none.
async fn webgpu_device() -> Result<(Device, Adapter), String> {
    let adapter = webgpu_adapter().await?;
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("{}, but burn could not start on it: {e}", adapter.description))?;
    // A first tiny read proves the device computes and reads back before a model is put on it.
    let probe = Tensor::<1>::from_data(TensorData::new(vec![1f32, 2.0], [2]), &device).sum();
    match read_scalar::<f32, 1, Float>(probe).await {
        Ok(3.0) => Ok((device, adapter)),
        Ok(x) => Err(format!(
            "{}, but a test sum on it gave {x} instead of 3",
            adapter.description
        )),
        Err(e) => Err(format!("{}, but reading from it failed: {e}", adapter.description)),
    }
}

/// What the browser's WebGPU offers this worker: the adapter's description and limits, or why
/// there is none. Read through JS reflection (web-sys's WebGPU bindings are unstable APIs).
async fn webgpu_adapter() -> Result<Adapter, String> {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let get = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global().into(), "navigator"), "gpu");
    if gpu.is_undefined() {
        return Err("this browser has no WebGPU".into());
    }
    let Ok(request) = get(&gpu, "requestAdapter").dyn_into::<Function>() else {
        return Err("this browser has no WebGPU".into());
    };
    let adapter = match request.call0(&gpu).map(|p| p.dyn_into::<Promise>()) {
        Ok(Ok(p)) => wasm_bindgen_futures::JsFuture::from(p).await.unwrap_or(JsValue::NULL),
        _ => JsValue::NULL,
    };
    if adapter.is_null() || adapter.is_undefined() {
        return Err("WebGPU: no adapter available".into());
    }
    let info = get(&adapter, "info");
    let text = |o: &JsValue, k: &str| get(o, k).as_string().filter(|s| !s.is_empty());
    let name = [
        text(&info, "vendor"),
        text(&info, "architecture"),
        text(&info, "description"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let limits = get(&adapter, "limits");
    let mib = |k: &str| {
        get(&limits, k)
            .as_f64()
            .map_or("?".into(), |b| format!("{:.0} MiB", b / 1048576.0))
    };
    let fallback = get(&info, "isFallbackAdapter").as_bool().unwrap_or(false);
    Ok(Adapter {
        description: format!(
            "WebGPU adapter {}{} (maxBufferSize {}, maxStorageBufferBindingSize {})",
            if name.is_empty() { "(unnamed)" } else { &name },
            if fallback { ", a software fallback" } else { "" },
            mib("maxBufferSize"),
            mib("maxStorageBufferBindingSize")
        ),
        fallback,
    })
}

/// Opens every weights file (one small range request each, to learn its length), with progress
/// posted to the page as the bytes of all of them arrive.
fn open_shards(name: &str, urls: &[WeightUrl]) -> pmedit_engine::Result<Vec<RangeSource>> {
    let shards = urls
        .iter()
        .map(|u| RangeSource::open(&u.url, format!("{name}/{}", u.file)))
        .collect::<pmedit_engine::Result<Vec<_>>>()?;
    let total: u64 = shards.iter().map(|s| s.len()).sum();
    let done = std::rc::Rc::new(std::cell::RefCell::new(vec![0u64; shards.len()]));
    let poster = std::rc::Rc::new(
        crate::channel::worker_channel()
            .and_then(|c| crate::channel::Poster::new(&crate::channel::progress_name(&c)).ok()),
    );
    Ok(shards
        .into_iter()
        .enumerate()
        .map(|(i, source)| {
            let (done, poster) = (done.clone(), poster.clone());
            source.with_progress(move |read, _| {
                let sum: u64 = {
                    let mut d = done.borrow_mut();
                    d[i] = read;
                    d.iter().sum()
                };
                if let Some(p) = poster.as_ref() {
                    p.post(&js_sys::Array::of2(&(sum as f64).into(), &(total as f64).into()));
                }
            })
        })
        .collect())
}

async fn load(files: ModelFiles, device: &Device, compute: Compute) -> Result<State, WorkerError> {
    let tokenizer = match &files.tokenizer {
        TokenizerFiles::Json(b) => Gpt2Tokenizer::from_tokenizer_json(b),
        TokenizerFiles::VocabMerges(v, m) => Gpt2Tokenizer::from_vocab_merges(v, m),
    }?;
    // The size is known from the config: refuse what will not fit before reading any weight.
    let params = std::str::from_utf8(&files.config)
        .ok()
        .and_then(|text| ModelConfig::from_json(text).ok())
        .map_or(0, |c| c.num_params()) as u64;
    let (dtype, weights) = storage_dtype(
        params,
        compute,
        device.supports_dtype(FloatDType::F16),
        half_precision_file(&files.config),
    )
    .map_err(|why| WorkerError {
        kind: "size".into(),
        message: format!("{}: {why}", files.name),
    })?;
    let parts: ModelParts = match files.weights {
        Weights::Bytes(bytes) => load_model_source_in(
            &files.name,
            &files.config,
            tokenizer,
            MemorySource::new(format!("{}/model.safetensors", files.name), bytes),
            device,
            dtype,
        ),
        Weights::Urls(urls) => open_shards(&files.name, &urls)
            .and_then(|shards| load_model_sources_in(&files.name, &files.config, tokenizer, shards, device, dtype)),
    }?;
    let mut stats = match &files.stats {
        Some(StatsFile::Bytes(bytes)) => stats_for_model(bytes, "stats.safetensors", &parts.model).await?,
        Some(StatsFile::Url(u)) => {
            let source = RangeSource::open(&u.url, format!("{}/{}", files.name, u.file))?;
            stats_for_model_in(source, &u.file, &parts.model).await?
        }
        None => Vec::new(),
    };
    // The authors' `.npz` layers (they carry no model fingerprint: the editor checks their layer
    // and shape).
    for npz in &files.npz_stats {
        stats.retain(|s| s.layer != npz.layer);
        stats.push(pmedit_engine::load::npz::import_npz(
            &npz.bytes, &npz.name, npz.layer, device,
        )?);
    }
    let c = &parts.config;
    let (n_layer, n_embd, n_positions) = (c.n_layer(), c.d_model(), c.n_positions());
    let mut editor = Editor::new(parts.model, parts.tokenizer);
    editor.set_statistics(stats).map_err(|e| {
        let names: Vec<&str> = files.npz_stats.iter().map(|n| n.name.as_str()).collect();
        WorkerError {
            kind: e.kind().into(),
            message: if names.is_empty() {
                e.to_string()
            } else {
                format!("{}: {e}", names.join(", "))
            },
        }
    })?;
    Ok(State {
        name: files.name,
        editor,
        n_layer,
        n_embd,
        n_positions,
        compute,
        weights,
    })
}

async fn predict(s: &State, prompts: &[String], k: usize) -> Result<Vec<Prediction>, WorkerError> {
    let mut out = Vec::with_capacity(prompts.len());
    for p in prompts {
        let top = top_k(s.editor.model(), s.editor.tokenizer(), p, k).await?;
        out.push(Prediction {
            prompt: p.clone(),
            top: top
                .into_iter()
                .map(|t| Candidate {
                    id: t.id,
                    token: t.token,
                    logprob: f64::from(t.logprob),
                    prob: f64::from(t.logprob).exp(),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Where a running request sends its progress messages.
type Progress = futures::channel::mpsc::UnboundedSender<Response>;

async fn edit(s: &mut State, settings: &EditSettings, progress: &Progress) -> Result<EditReport, WorkerError> {
    let requests: Vec<EditRequest> = settings
        .facts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            EditRequest::new(&f.prompt, &f.subject, &f.target_new).map_err(|e| WorkerError {
                kind: e.kind().into(),
                message: format!("fact {}: {e}", i + 1),
            })
        })
        .collect::<Result<_, _>>()?;
    let first = requests
        .first()
        .ok_or_else(|| WorkerError::worker("no facts to edit"))?;
    let overrides = Overrides {
        layers: settings.layers.clone(),
        lambda: settings.lambda,
        alpha: settings.alpha,
        value: ValueOverrides {
            steps: settings.steps,
            ..Default::default()
        },
        templates: Some(if settings.sampled_templates {
            TemplateChoice::Sampled { seed: 0 }
        } else {
            TemplateChoice::Bare
        }),
        report_targets: Some(requests.len()),
        ..Default::default()
    };
    let plan = s.editor.plan(settings.algorithm, &overrides)?;
    // Missing statistics are refused before the predictions and scores around the edit.
    s.editor.check_plan(&plan)?;
    let mut phases = Phases::new(progress);
    phases.start("predicting the probes before the edit");
    let before = predict(s, &settings.probes, 5).await?;
    phases.start("scoring the facts before the edit");
    let (records, model_answers) = metric_records(s, &settings.facts).await?;
    let scores_before = score_records(s.editor.model(), s.editor.tokenizer(), &records, None).await?;
    phases.start("generating before the edit");
    let gen_before = continuation(s, first).await?;
    phases.start("editing");
    let start = now_ms();
    let mut last = start;
    let report = s
        .editor
        .edit(&requests, &plan, |e: EditEvent| {
            // Each event with the time since the previous one on the console: where an edit
            // on a slow adapter spends its time (the keys, each value step, each layer's solve).
            let t = now_ms();
            web_sys::console::info_1(&format!("pmedit: {e:?} (+{})", duration_label(t - last)).into());
            last = t;
            match e {
                EditEvent::Templates if settings.sampled_templates => {
                    let _ = progress.unbounded_send(Response::Status(
                        "context templates: generating them with the model (once per model)…".into(),
                    ));
                }
                EditEvent::ValueStep { request, loss } => {
                    let _ = progress.unbounded_send(Response::Loss {
                        request,
                        step: loss.step,
                        loss: f64::from(loss.total),
                    });
                }
                EditEvent::Layer { layer } => {
                    let _ = progress.unbounded_send(Response::Status(format!(
                        "solving for layer {layer}'s update and writing it…"
                    )));
                }
                _ => {}
            }
        })
        .await?;
    let edit_ms = now_ms() - start;
    phases.start("the trade-off curves (λ)");
    let teaching = match report.deltas.last() {
        Some(d) => Some(s.editor.teach(d, &plan.hparams, &tradeoff_lambdas()).await?),
        None => None,
    };
    phases.start("predicting the probes after the edit");
    let after = predict(s, &settings.probes, 5).await?;
    phases.start("generating after the edit");
    let gen_after = continuation(s, first).await?;
    // Cached by the edit: no second sampling.
    let templates = s.editor.templates(&plan).await?.len();
    phases.start("scoring the facts after the edit");
    let scores_after = score_records(s.editor.model(), s.editor.tokenizer(), &records, None).await?;
    let metrics = metrics_report(&scores_before, &scores_after, model_answers).map(Box::new);
    let phases = phases.finish();
    Ok(EditReport {
        algorithm: plan.algorithm,
        layers: plan.hparams.layers.clone(),
        lambda: plan.hparams.lambda,
        edit_ms,
        before,
        after,
        loss: report
            .losses
            .iter()
            .map(|l| l.iter().map(|x| f64::from(x.total)).collect())
            .collect(),
        target_prob: report.targets.iter().map(|t| (t.before, t.after)).collect(),
        tradeoff: teaching,
        generated: (gen_before, gen_after),
        templates,
        metrics,
        phases,
    })
}

/// The steps of a request, timed: each one is announced on the status line as it starts and
/// logged to the console with its time as it ends (what a long run on a slow adapter shows).
struct Phases<'a> {
    progress: &'a Progress,
    done: Vec<(String, f64)>,
    current: Option<(&'static str, f64)>,
}

impl<'a> Phases<'a> {
    fn new(progress: &'a Progress) -> Self {
        Self {
            progress,
            done: Vec::new(),
            current: None,
        }
    }

    /// Ends the current step and starts `name`.
    fn start(&mut self, name: &'static str) {
        self.end();
        let _ = self.progress.unbounded_send(Response::Status(format!("{name}…")));
        self.current = Some((name, now_ms()));
    }

    fn end(&mut self) {
        if let Some((name, t0)) = self.current.take() {
            let ms = now_ms() - t0;
            web_sys::console::info_1(&format!("pmedit: {name}: {}", duration_label(ms)).into());
            self.done.push((name.to_string(), ms));
        }
    }

    fn finish(mut self) -> Vec<(String, f64)> {
        self.end();
        self.done
    }
}

/// Runs a sweep's grid, one evaluation of one batch per point (`run_eval` edits the unedited
/// model and undoes), sending each point to the page as it finishes. Returns the number of points.
async fn sweep(s: &mut State, settings: &SweepSettings, progress: &Progress) -> Result<usize, WorkerError> {
    if s.editor.is_edited() {
        return Err(WorkerError::worker(
            "the sweep starts from the unedited model: undo the edit first",
        ));
    }
    let text = std::str::from_utf8(&settings.dataset)
        .map_err(|_| WorkerError::worker("the sweep's records are not UTF-8 text"))?;
    let (records, _) = read_records(text, "heldout.json", true)?;
    let biggest = settings.batch_sizes.iter().copied().max().unwrap_or(0);
    if biggest == 0 || biggest > records.len() {
        return Err(WorkerError::worker(format!(
            "batch sizes must be 1 to {} (the records available)",
            records.len()
        )));
    }
    // Algorithms that do not weigh preservation by λ run once per batch size.
    let grid: Vec<(Algorithm, usize, Option<f64>)> = settings
        .algorithms
        .iter()
        .flat_map(|&a| {
            let lambdas: Vec<Option<f64>> = if settings.lambdas.is_empty() || !a.uses_lambda() {
                vec![None]
            } else {
                settings.lambdas.iter().copied().map(Some).collect()
            };
            settings
                .batch_sizes
                .iter()
                .flat_map(move |&b| lambdas.clone().into_iter().map(move |l| (a, b, l)))
        })
        .collect();
    for (i, &(algorithm, batch_size, lambda)) in grid.iter().enumerate() {
        let _ = progress.unbounded_send(Response::Status(format!(
            "sweep {} of {}: {} on {batch_size} fact{}{}…",
            i + 1,
            grid.len(),
            algorithm.display_name(),
            if batch_size == 1 { "" } else { "s" },
            lambda.map_or(String::new(), |l| format!(", λ = {l}"))
        )));
        let overrides = Overrides {
            layers: settings.layers.clone(),
            lambda,
            value: ValueOverrides {
                steps: settings.steps,
                ..Default::default()
            },
            templates: Some(TemplateChoice::Bare),
            ..Default::default()
        };
        let plan = s.editor.plan(algorithm, &overrides)?;
        let (layers, used_lambda) = (plan.hparams.layers.clone(), plan.hparams.lambda);
        let spec = EvalSpec {
            plan,
            batch_size,
            num_batches: Some(1),
            sequential: false,
            seed: 0,
            ge: None,
        };
        let outcome = run_eval(&mut s.editor, &records, &spec, |_| {}).await?;
        let scores = |m: &pmedit_engine::eval::records::Summary| m.counterfact.as_ref().map(Scores::from);
        let (Some(before), Some(after)) = (scores(&outcome.before), scores(&outcome.after)) else {
            return Err(WorkerError::worker("the sweep's records are not CounterFact records"));
        };
        let _ = progress.unbounded_send(Response::SweepPoint(SweepPoint {
            algorithm,
            batch_size,
            lambda: used_lambda,
            layers,
            before,
            after,
            edit_ms: 1e3 * outcome.edit_seconds.iter().sum::<f64>(),
        }));
    }
    Ok(grid.len())
}

/// The facts as CounterFact records (docs/MATH.md §9): a picked record's true object, paraphrases
/// and neighbourhood prompts; for a typed fact, the model's own answer before the edit as the true
/// object and the rewrite prompt alone. Also returns how many facts took the model's answer.
async fn metric_records(s: &State, facts: &[Fact]) -> Result<(Vec<Record>, usize), WorkerError> {
    let mut records = Vec::with_capacity(facts.len());
    let mut model_answers = 0;
    for (i, f) in facts.iter().enumerate() {
        let (truth, paraphrases, neighborhood) = match &f.record {
            Some(r) => (
                r.target_true.clone(),
                r.paraphrases.clone(),
                r.neighborhood
                    .iter()
                    .map(|(prompt, target)| Probe {
                        prompt: prompt.clone(),
                        target: target.clone(),
                    })
                    .collect(),
            ),
            None => {
                model_answers += 1;
                let prompt = f.prompt.replacen("{}", &f.subject, 1);
                let top = top_k(s.editor.model(), s.editor.tokenizer(), &prompt, 1).await?;
                let answer = top.first().map(|t| t.token.trim().to_string()).unwrap_or_default();
                (answer, Vec::new(), Vec::new())
            }
        };
        let mut request = EditRequest::new(&f.prompt, &f.subject, &f.target_new)?;
        request.target_true = Some(truth);
        records.push(Record {
            case_id: i as u64,
            benchmark: Benchmark::CounterFact,
            request,
            paraphrase_prompts: paraphrases,
            neighborhood,
            generation_prompts: Vec::new(),
        });
    }
    Ok((records, model_answers))
}

fn metrics_report(before: &[RecordScores], after: &[RecordScores], model_answers: usize) -> Option<MetricsReport> {
    let mean = |s: &[RecordScores]| summarize(s).counterfact.as_ref().map(Scores::from);
    Some(MetricsReport {
        before: mean(before)?,
        after: mean(after)?,
        facts: before
            .iter()
            .zip(after)
            .filter_map(|(b, a)| {
                Some((
                    b.subject.clone(),
                    b.counterfact.as_ref()?.into(),
                    a.counterfact.as_ref()?.into(),
                ))
            })
            .collect(),
        model_answers,
    })
}

/// A greedy continuation of a request's prompt (16 tokens).
async fn continuation(s: &State, r: &EditRequest) -> Result<String, WorkerError> {
    let opts = pmedit_engine::generate::GenerateOptions {
        max_new_tokens: 16,
        top_k: 1,
        ..Default::default()
    };
    let prompt = r.filled_prompt();
    let text = pmedit_engine::generate::generate(s.editor.model(), s.editor.tokenizer(), &prompt, &opts).await?;
    Ok(format!("{prompt}{text}"))
}
