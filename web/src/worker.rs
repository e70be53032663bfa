//! The engine worker: owns the model, answers [`Request`]s one at a time with [`Response`]s.
//! It runs in a dedicated Web Worker so a long edit never freezes the page.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::FloatDType;
use futures::{SinkExt, StreamExt};
use gloo_worker::reactor::{ReactorScope, reactor};
use pmedit_engine::edit::presets::preset;
use pmedit_engine::edit::stats::{LayerStats, stats_for_model};
use pmedit_engine::edit::tradeoff::tradeoff;
use pmedit_engine::edit::{
    Algorithm, ContextTemplates, EditEvent, EditHparams, EditRequest, LayerDelta, Objective, Preservation, apply_edits,
};
use pmedit_engine::eval::score::score_targets;
use pmedit_engine::load::{ModelParts, load_model_bytes, load_model_source};
use pmedit_engine::model::Gpt2;
use pmedit_engine::model::precision::cast_model;
use pmedit_engine::predict::top_k;
use pmedit_engine::readback::read_scalar;
use pmedit_engine::tokenizer::Gpt2Tokenizer;

use crate::protocol::{
    Backend, Candidate, EditReport, EditSettings, ModelFiles, ModelInfo, Prediction, Request, Response, TokenizerFiles,
    Tradeoff, Weights, tradeoff_lambdas,
};
use crate::range::RangeSource;

/// What the worker holds between requests.
struct State {
    name: String,
    parts: ModelParts,
    /// The weights as loaded (Undo).
    original: Gpt2,
    stats: Vec<LayerStats>,
    /// Whether the model lives on the WebGPU device.
    on_gpu: bool,
    /// Whether the weights are stored in f16 (a WebGPU adapter with `shader-f16`); edits and
    /// statistics then run on an f32 copy.
    half: bool,
}

impl State {
    /// The model in f32, for the math that needs it (a cast copy when stored in f16).
    fn model_f32(&self) -> Result<Gpt2, String> {
        if self.half {
            cast_model(self.parts.model.clone(), FloatDType::F32).map_err(|e| e.to_string())
        } else {
            Ok(self.parts.model.clone())
        }
    }
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
    let mut gpu: Option<Result<(Device, String), String>> = None;
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
        for r in replies {
            if scope.send(r).await.is_err() {
                return;
            }
        }
    }
}

/// After a failed request on WebGPU: whether the device still computes (a test read), and if not,
/// why. burn's wgpu runtime marks a device lost by the browser as poisoned and fails every read
/// on it from then on.
async fn lost_device(state: &Option<State>) -> Option<String> {
    let s = state.as_ref().filter(|s| s.on_gpu)?;
    let device = s.parts.model.device();
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

async fn handle(
    state: &mut Option<State>,
    request: Request,
    gpu: Option<&Result<(Device, String), String>>,
    progress: &Progress,
) -> Result<Vec<Response>, String> {
    match request {
        Request::Load { files, backend } => {
            let start = now_ms();
            let (device, backend_name, adapter) = pick_device(backend, gpu);
            let mut loaded = load(files, &device).await?;
            loaded.on_gpu = backend_name == "WebGPU";
            // On a GPU that computes f16, the weights are kept in f16: half the memory (GPT2-XL
            // 3.1 GB instead of 6.2 GB), and the undo copy shares them.
            if loaded.on_gpu && device.supports_dtype(FloatDType::F16) {
                loaded.parts.model = cast_model(loaded.parts.model, FloatDType::F16).map_err(|e| e.to_string())?;
                loaded.original = loaded.parts.model.clone();
                loaded.half = true;
            }
            let info = ModelInfo {
                name: loaded.name.clone(),
                backend: backend_name,
                adapter,
                n_layer: loaded.parts.config.n_layer,
                n_embd: loaded.parts.config.n_embd,
                params: loaded.parts.model.num_params(),
                stats_layers: loaded.stats.iter().map(|s| s.layer).collect(),
                weights: if loaded.half {
                    "f16 (the adapter has shader-f16)".into()
                } else {
                    "f32".into()
                },
                load_ms: now_ms() - start,
            };
            *state = Some(loaded);
            Ok(vec![Response::Ready(info)])
        }
        Request::Predict { prompts, k } => {
            let s = state.as_ref().ok_or("no model is loaded")?;
            Ok(vec![Response::Predictions(predict(s, &prompts, k).await?)])
        }
        Request::Edit(settings) => {
            let s = state.as_mut().ok_or("no model is loaded")?;
            Ok(vec![Response::Edited(edit(s, &settings, progress).await?)])
        }
        Request::ComputeStats {
            text,
            layers,
            max_tokens,
        } => {
            let s = state.as_mut().ok_or("no model is loaded")?;
            let start = now_ms();
            let stats = compute_stats(s, &text, &layers, max_tokens)?;
            let tokens = stats.first().map_or(0, |x| x.count);
            s.stats = stats;
            Ok(vec![Response::StatsReady {
                layers,
                tokens,
                ms: now_ms() - start,
            }])
        }
        Request::Download => {
            let s = state.as_ref().ok_or("no model is loaded")?;
            let bytes = pmedit_engine::save::model_to_bytes(&s.parts.model)
                .await
                .map_err(|e| e.to_string())?;
            Ok(vec![Response::Weights(bytes)])
        }
        Request::Undo => {
            let s = state.as_mut().ok_or("no model is loaded")?;
            s.parts.model = s.original.clone();
            Ok(vec![Response::Restored])
        }
    }
}

/// WebGPU when it was asked for and the browser gave a device, else the CPU backend (burn
/// `flex` in wasm), with a line that says which adapter or why not.
fn pick_device(backend: Backend, gpu: Option<&Result<(Device, String), String>>) -> (Device, String, String) {
    match (backend, gpu) {
        (Backend::Auto, Some(Ok((device, adapter)))) => {
            // A software adapter (SwiftShader, WARP) runs each kernel on the CPU with a large cost
            // per dispatch: say that the CPU backend is faster there.
            let hint = if adapter.contains("software fallback") {
                "; on a software adapter the CPU backend (?backend=cpu) edits much faster"
            } else {
                ""
            };
            (device.clone(), "WebGPU".into(), format!("burn wgpu; {adapter}{hint}"))
        }
        (Backend::Auto, Some(Err(why))) => (
            Device::flex(),
            "CPU".into(),
            format!("burn flex (wasm32); {why}: CPU fallback"),
        ),
        (Backend::Cpu, _) => (Device::flex(), "CPU".into(), "burn flex (wasm32); CPU chosen".into()),
        (Backend::Auto, None) => (
            Device::flex(),
            "CPU".into(),
            "burn flex (wasm32); no WebGPU device was asked for".into(),
        ),
    }
}

/// Brings up burn's wgpu runtime on the browser's WebGPU adapter (asynchronously: a browser
/// cannot block) and returns the device with the adapter's description, or why there is none.
async fn webgpu_device() -> Result<(Device, String), String> {
    let adapter = webgpu_adapter().await;
    if !adapter.starts_with("WebGPU adapter") {
        return Err(adapter);
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("{adapter}, but burn could not start on it: {e}"))?;
    // A first tiny read proves the device computes and reads back before a model is put on it.
    let probe = Tensor::<1>::from_data(TensorData::new(vec![1f32, 2.0], [2]), &device).sum();
    match read_scalar::<f32, 1, Float>(probe).await {
        Ok(3.0) => Ok((device, adapter)),
        Ok(x) => Err(format!("{adapter}, but a test sum on it gave {x} instead of 3")),
        Err(e) => Err(format!("{adapter}, but reading from it failed: {e}")),
    }
}

/// What the browser's WebGPU offers this worker: the adapter's description and limits, or why
/// there is none. Read through JS reflection (web-sys's WebGPU bindings are unstable APIs).
async fn webgpu_adapter() -> String {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let get = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global().into(), "navigator"), "gpu");
    if gpu.is_undefined() {
        return "this browser has no WebGPU".into();
    }
    let Ok(request) = get(&gpu, "requestAdapter").dyn_into::<Function>() else {
        return "this browser has no WebGPU".into();
    };
    let adapter = match request.call0(&gpu).map(|p| p.dyn_into::<Promise>()) {
        Ok(Ok(p)) => wasm_bindgen_futures::JsFuture::from(p).await.unwrap_or(JsValue::NULL),
        _ => JsValue::NULL,
    };
    if adapter.is_null() || adapter.is_undefined() {
        return "WebGPU: no adapter available".into();
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
    format!(
        "WebGPU adapter {}{} (maxBufferSize {}, maxStorageBufferBindingSize {})",
        if name.is_empty() { "(unnamed)" } else { &name },
        if fallback { ", a software fallback" } else { "" },
        mib("maxBufferSize"),
        mib("maxStorageBufferBindingSize")
    )
}

/// C0 statistics of the loaded model at `layers` over `text` (windows of the model's context).
fn compute_stats(s: &State, text: &str, layers: &[usize], max_tokens: usize) -> Result<Vec<LayerStats>, String> {
    let cfg = &s.parts.config;
    if let Some(&bad) = layers.iter().find(|&&l| l >= cfg.n_layer) {
        return Err(format!(
            "layer {bad} does not exist (the model has {} layers)",
            cfg.n_layer
        ));
    }
    let mut ids = s.parts.tokenizer.encode(text).map_err(|e| e.to_string())?;
    ids.truncate(max_tokens);
    let seqs = pmedit_engine::edit::stats::windows(&ids, cfg.n_positions);
    if seqs.is_empty() {
        return Err("the text is empty".into());
    }
    let device = s.parts.model.device();
    let mut stats: Vec<LayerStats> = layers
        .iter()
        .map(|&l| LayerStats::new(l, cfg.d_inner(), &device))
        .collect();
    pmedit_engine::edit::stats::accumulate(&s.model_f32()?, &seqs, 8, &mut stats).map_err(|e| e.to_string())?;
    Ok(stats)
}

async fn load(files: ModelFiles, device: &Device) -> Result<State, String> {
    let tokenizer = match &files.tokenizer {
        TokenizerFiles::Json(b) => Gpt2Tokenizer::from_tokenizer_json(b),
        TokenizerFiles::VocabMerges(v, m) => Gpt2Tokenizer::from_vocab_merges(v, m),
    }
    .map_err(|e| e.to_string())?;
    let parts = match files.weights {
        Weights::Bytes(bytes) => load_model_bytes(&files.name, &files.config, tokenizer, bytes, device),
        Weights::Url(url) => RangeSource::open(&url, format!("{}/model.safetensors", files.name)).and_then(|source| {
            // Progress goes to the page as the tensors arrive.
            let poster = crate::channel::worker_channel()
                .and_then(|c| crate::channel::Poster::new(&crate::channel::progress_name(&c)).ok());
            let source = source.with_progress(move |done, total| {
                if let Some(p) = &poster {
                    p.post(&js_sys::Array::of2(&(done as f64).into(), &(total as f64).into()));
                }
            });
            load_model_source(&files.name, &files.config, tokenizer, source, device)
        }),
    }
    .map_err(|e| e.to_string())?;
    let mut stats = match &files.stats {
        Some(bytes) => stats_for_model(bytes, "stats.safetensors", &parts.model)
            .await
            .map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    // The authors' `.npz` layers (they carry no model fingerprint: the shape and layer are checked).
    let (n_layer, d_inner) = (parts.config.n_layer, parts.config.d_inner());
    for npz in &files.npz_stats {
        if npz.layer >= n_layer {
            return Err(format!(
                "{}: layer {} does not exist (the model has {n_layer} layers)",
                npz.name, npz.layer
            ));
        }
        let st = pmedit_engine::edit::npz::import_npz(&npz.bytes, &npz.name, npz.layer, device)
            .map_err(|e| e.to_string())?;
        let n = st.sum.dims()[0];
        if n != d_inner {
            return Err(format!(
                "{}: the statistics are {n}×{n}, but this model's keys have {d_inner} dimensions",
                npz.name
            ));
        }
        stats.retain(|s| s.layer != npz.layer);
        stats.push(st);
    }
    stats.sort_by_key(|s| s.layer);
    Ok(State {
        name: files.name,
        original: parts.model.clone(),
        parts,
        stats,
        on_gpu: false,
        half: false,
    })
}

async fn predict(s: &State, prompts: &[String], k: usize) -> Result<Vec<Prediction>, String> {
    let mut out = Vec::with_capacity(prompts.len());
    for p in prompts {
        let top = top_k(&s.parts.model, &s.parts.tokenizer, p, k)
            .await
            .map_err(|e| e.to_string())?;
        out.push(Prediction {
            prompt: p.clone(),
            top: top
                .into_iter()
                .map(|t| Candidate {
                    token: t.token,
                    prob: f64::from(t.logprob).exp(),
                })
                .collect(),
        });
    }
    Ok(out)
}

async fn target_probs(s: &State, requests: &[EditRequest]) -> Result<Vec<f64>, String> {
    let pairs: Vec<(String, String)> = requests
        .iter()
        .map(|f| (f.filled_prompt(), f.target_new.clone()))
        .collect();
    let scores = score_targets(&s.parts.model, &s.parts.tokenizer, &pairs, 16)
        .await
        .map_err(|e| e.to_string())?;
    Ok(scores.iter().map(|t| (-t.nll * t.target.len() as f64).exp()).collect())
}

/// Where a running request sends its progress messages.
type Progress = futures::channel::mpsc::UnboundedSender<Response>;

async fn edit(s: &mut State, settings: &EditSettings, progress: &Progress) -> Result<EditReport, String> {
    let algorithm = Algorithm::parse(&settings.algorithm).map_err(|e| e.to_string())?;
    let requests: Vec<EditRequest> = settings
        .facts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            EditRequest::new(&f.prompt, &f.subject, &f.target_new).map_err(|e| format!("fact {}: {e}", i + 1))
        })
        .collect::<Result<_, _>>()?;
    let mut hp: EditHparams = preset(algorithm, &s.parts.config);
    if let Some(l) = &settings.layers {
        hp.layers = l.clone();
    }
    if let Some(l) = settings.lambda {
        hp.lambda = l;
    }
    if let Some(a) = settings.alpha {
        hp.alpha = a;
    }
    if let Some(n) = settings.steps {
        hp.value.steps = n;
    }
    let mut pres = HashMap::new();
    for &l in &hp.layers {
        let st = s.stats.iter().find(|x| x.layer == l).ok_or_else(|| {
            format!(
                "no C0 statistics for layer {l} (this model has them for {:?}); load a stats file made by `pmedit stats`",
                s.stats.iter().map(|x| x.layer).collect::<Vec<_>>()
            )
        })?;
        let c0 = st.c0().map_err(|e| e.to_string())?;
        pres.insert(l, Preservation::new(c0, hp.lambda).await.map_err(|e| e.to_string())?);
    }
    let before = predict(s, &settings.probes, 5).await?;
    let gen_before = continuation(s, &requests[0]).await?;
    let p_before = target_probs(s, &requests).await?;
    let start = now_ms();
    // Edit a copy (in f32): a failure leaves the current weights untouched.
    let mut model = s.model_f32()?;
    let outcome = apply_edits(
        &mut model,
        &s.parts.tokenizer,
        &requests,
        algorithm,
        &hp,
        &ContextTemplates::bare(),
        &pres,
        |e: EditEvent| {
            if let EditEvent::ValueStep { request, loss } = e {
                let _ = progress.unbounded_send(Response::Loss {
                    request,
                    step: loss.step,
                    loss: f64::from(loss.total),
                });
            }
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let edit_ms = now_ms() - start;
    s.parts.model = if s.half {
        cast_model(model, FloatDType::F16).map_err(|e| e.to_string())?
    } else {
        model
    };
    let teaching = match outcome.deltas.last() {
        Some(d) => Some(teach(s, d, hp.alpha).await?),
        None => None,
    };
    let after = predict(s, &settings.probes, 5).await?;
    let p_after = target_probs(s, &requests).await?;
    let gen_after = continuation(s, &requests[0]).await?;
    Ok(EditReport {
        algorithm: algorithm.name().into(),
        layers: hp.layers.clone(),
        lambda: hp.lambda,
        edit_ms,
        before,
        after,
        loss: outcome
            .losses
            .iter()
            .map(|l| l.iter().map(|x| f64::from(x.total)).collect())
            .collect(),
        target_prob: p_before.into_iter().zip(p_after).collect(),
        tradeoff: teaching,
        generated: (gen_before, gen_after),
    })
}

/// A greedy continuation of a request's prompt (16 tokens).
async fn continuation(s: &State, r: &EditRequest) -> Result<String, String> {
    let opts = pmedit_engine::generate::GenerateOptions {
        max_new_tokens: 16,
        top_k: 1,
        ..Default::default()
    };
    let prompt = r.filled_prompt();
    let text = pmedit_engine::generate::generate(&s.parts.model, &s.parts.tokenizer, &prompt, &opts)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{prompt}{text}"))
}

/// The teaching view: the last layer's system re-solved both ways over a λ sweep.
async fn teach(s: &State, d: &LayerDelta, alpha: f64) -> Result<Tradeoff, String> {
    let st = s
        .stats
        .iter()
        .find(|x| x.layer == d.layer)
        .ok_or("no statistics for the edited layer")?;
    let c0 = st.c0().map_err(|e| e.to_string())?;
    let lambdas = tradeoff_lambdas();
    let run = |o: Objective| tradeoff(&c0, o, &d.keys, &d.residual, &lambdas);
    Ok(Tradeoff {
        layer: d.layer,
        keys: d.keys.dims()[1],
        equality: run(Objective::Emmet { alpha }).await.map_err(|e| e.to_string())?,
        least_squares: run(Objective::Memit).await.map_err(|e| e.to_string())?,
    })
}
