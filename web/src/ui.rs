//! The page: model loading, the facts form, before/after predictions and charts.

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::future::{Either, select};
use gloo_worker::Spawnable;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::channel::{Listener, progress_name};
use crate::form::{FactRow, npz_layer, parse_facts, parse_layers, parse_positive};
use crate::protocol::{
    Algorithm, Backend, EditReport, EditSettings, FactRecord, MetricsReport, ModelFiles, ModelInfo, NpzStats,
    Prediction, Request, Response, Scores, StatsFile, TokenizerFiles, TraceReport, WeightUrl, Weights,
};
use crate::scale::{Scale, duration_label, phases_label, tick_label};
use crate::share::SharedState;
use crate::worker::EngineWorker;

mod sweep;
use sweep::{SweepAxis, SweepPanel};

/// Where the built-in demo model is served from.
const DEMO: &str = "models/demo";

#[derive(Clone, Copy)]
struct Page {
    to_worker: StoredValue<UnboundedSender<Request>>,
    status: RwSignal<String>,
    error: RwSignal<Option<String>>,
    info: RwSignal<Option<ModelInfo>>,
    busy: RwSignal<bool>,
    report: RwSignal<Option<EditReport>>,
    /// Loss per step of each request's value optimisation, as the worker reports it.
    live_loss: RwSignal<Vec<Vec<f64>>>,
    predictions: RwSignal<Vec<Prediction>>,
    /// Bytes of weights loaded and their total, while a model loads.
    load_progress: RwSignal<Option<(f64, f64)>>,
    /// Where models load: from `?backend=`, and the CPU for good once the GPU failed.
    backend: RwSignal<Backend>,
    /// The files of the model being loaded, and of the one that is loaded (to reload it on the
    /// CPU when the GPU is lost). Weights travel as URLs, so these are small.
    loading: StoredValue<Option<ModelFiles>>,
    loaded: StoredValue<Option<ModelFiles>>,
    /// The worker's WebAssembly memory (bytes), as it last reported.
    worker_memory: RwSignal<Option<u64>>,
    /// The edit form's algorithm and layers (statistics are computed for the layers they name).
    algo: RwSignal<String>,
    layers: RwSignal<String>,
    /// The last causal trace.
    trace: RwSignal<Option<TraceReport>>,
    /// Edits applied since the model was loaded or restored (they pile up until Undo).
    edits: RwSignal<usize>,
    /// The URL of the served model directory loaded (none for the demo or picked files).
    model_url: RwSignal<Option<String>>,
    /// Stops the running request: the worker is replaced by a fresh one.
    cancel: StoredValue<UnboundedSender<()>>,
    /// The sweep's points so far, and what it varies.
    sweep: RwSignal<Vec<crate::protocol::SweepPoint>>,
    sweep_axis: RwSignal<SweepAxis>,
}

impl Page {
    fn send(&self, r: Request) {
        self.busy.set(true);
        self.error.set(None);
        let _ = self.to_worker.with_value(|tx| tx.unbounded_send(r));
    }

    /// Loads a model on the current backend.
    fn load(&self, files: ModelFiles) {
        self.loading.set_value(Some(files.clone()));
        self.send(Request::Load {
            files,
            backend: self.backend.get_untracked(),
        });
    }

    /// The GPU failed (device lost, out of memory, or the worker died): say so, switch to the CPU
    /// for good, and reload the model that was loaded. Edits since loading are gone with the device.
    /// A worker that failed while loading files on the CPU is not given the same files again (a
    /// model too big for the CPU backend would otherwise be reloaded for ever).
    /// After Cancel: the fresh worker gets the model that was loaded, on the same backend.
    fn restart_after_cancel(&self) {
        self.report.set(None);
        self.live_loss.set(Vec::new());
        self.load_progress.set(None);
        self.info.set(None);
        self.trace.set(None);
        let reload = self.loaded.get_value();
        self.loading.set_value(None);
        self.loaded.set_value(None);
        match reload {
            Some(files) => {
                self.status.set(format!(
                    "cancelled: reloading {} as it was loaded (edits made since are undone)…",
                    files.name
                ));
                self.load(files);
            }
            None => {
                self.status.set("cancelled; no model loaded".into());
                self.busy.set(false);
            }
        }
    }

    fn continue_on_cpu(&self, why: String) {
        let on_cpu = self.backend.get_untracked() == Backend::Cpu;
        self.backend.set(Backend::Cpu);
        self.report.set(None);
        self.live_loss.set(Vec::new());
        self.load_progress.set(None);
        // Whatever was loaded lived in the worker that failed: the status line no longer names it.
        self.info.set(None);
        let loading = self.loading.get_value();
        let failed_loading = loading.is_some() && loading != self.loaded.get_value();
        let reload = if on_cpu && failed_loading {
            None
        } else {
            self.loaded.get_value().or(loading)
        };
        let msg = match (&reload, failed_loading && on_cpu) {
            (_, true) => format!(
                "{why} while loading {} on the CPU: it does not fit in this tab; not retrying. Load a smaller model, or \
                 f16 weights on a WebGPU adapter.",
                self.loading.get_value().map(|f| f.name).unwrap_or_default()
            ),
            (Some(f), false) => format!(
                "{why}. Continuing on the CPU: reloading {} (edits made since it was loaded are lost).",
                f.name
            ),
            (None, false) => format!("{why}. Continuing on the CPU."),
        };
        self.loading.set_value(None);
        self.loaded.set_value(None);
        match reload {
            Some(files) => {
                self.status.set(format!("reloading {} on the CPU…", files.name));
                self.load(files);
            }
            None => {
                self.status.set("no model loaded".into());
                self.busy.set(false);
            }
        }
        self.error.set(Some(msg));
    }

    fn on_response(&self, r: Response) {
        match r {
            Response::Status(s) => self.status.set(s),
            Response::StatsReady {
                layers,
                all,
                tokens,
                ms,
            } => {
                self.status.set(if layers.is_empty() {
                    format!("C0 statistics for {} were already loaded", layer_list(&all))
                } else {
                    format!(
                        "C0 statistics for {}: {tokens} tokens in {}",
                        layer_list(&layers),
                        duration_label(ms)
                    )
                });
                self.info.update(|i| {
                    if let Some(i) = i {
                        i.stats_layers = all;
                    }
                });
                self.busy.set(false);
            }
            Response::Ready(info) => {
                self.load_progress.set(None);
                self.loaded.set_value(self.loading.get_value());
                self.status
                    .set(format!("model ready ({})", duration_label(info.load_ms)));
                self.info.set(Some(info));
                self.report.set(None);
                self.trace.set(None);
                self.sweep.set(Vec::new());
                self.edits.set(0);
                self.busy.set(false);
            }
            Response::SweepPoint(p) => self.sweep.update(|s| s.push(p)),
            Response::Swept { points, ms } => {
                self.status.set(format!(
                    "sweep done: {points} point{} in {}",
                    if points == 1 { "" } else { "s" },
                    duration_label(ms)
                ));
                self.busy.set(false);
            }
            Response::Predictions(p) => {
                self.predictions.set(p);
                self.status.set("predicted".into());
                self.busy.set(false);
            }
            Response::Loss { request, step, loss } => {
                self.live_loss.update(|l| {
                    if l.len() <= request {
                        l.resize(request + 1, Vec::new());
                    }
                    l[request].push(loss);
                });
                self.status.set(format!(
                    "optimising the value of fact {}: step {}, loss {loss:.3}",
                    request + 1,
                    step + 1
                ));
            }
            Response::Edited(rep) => {
                self.edits.update(|n| *n += 1);
                let n = self.edits.get_untracked();
                self.status.set(if n == 1 {
                    format!("edit applied in {}", duration_label(rep.edit_ms))
                } else {
                    format!(
                        "edit applied in {}, on top of {} earlier edit{} (Undo restores the model as loaded)",
                        duration_label(rep.edit_ms),
                        n - 1,
                        if n == 2 { "" } else { "s" }
                    )
                });
                self.report.set(Some(rep));
                self.busy.set(false);
            }
            Response::Weights { name, bytes } => {
                if let Err(e) = save_download(&name, &bytes) {
                    self.error.set(Some(e));
                }
                self.status
                    .set(format!("{name} ready ({:.1} MB)", bytes.len() as f64 / 1e6));
                self.busy.set(false);
            }
            Response::Saved { name, bytes } => {
                let page = *self;
                spawn_local(async move {
                    match crate::opfs::file(&name)
                        .await
                        .and_then(|blob| download_blob(&name, &blob))
                    {
                        Ok(()) => page.status.set(format!("{name} ready ({:.1} MB)", bytes as f64 / 1e6)),
                        Err(e) => page.error.set(Some(e)),
                    }
                    page.busy.set(false);
                });
            }
            Response::Restored => {
                self.edits.set(0);
                self.status.set("original weights restored".into());
                self.report.set(None);
                self.busy.set(false);
            }
            Response::Traced(t) => {
                self.status.set(format!(
                    "causal trace of {:?} done in {}",
                    t.trace.answer,
                    duration_label(t.ms)
                ));
                self.trace.set(Some(t));
                self.busy.set(false);
            }
            Response::Error(e) => {
                self.load_progress.set(None);
                self.error.set(Some(e.message));
                self.status.set("ready (the last request failed)".into());
                self.busy.set(false);
            }
            Response::DeviceLost(why) => self.continue_on_cpu(why),
            Response::Memory(bytes) => self.worker_memory.set(Some(bytes)),
        }
    }
}

/// The page address's query string (`?…`).
fn location_search() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default()
}

/// Puts `state` in the address bar (without reloading) and returns the link.
fn set_location(state: &SharedState) -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let location = window.location();
    let base = format!(
        "{}{}",
        location.origin().map_err(|e| format!("{e:?}"))?,
        location.pathname().map_err(|e| format!("{e:?}"))?
    );
    let query = state.to_query();
    let link = if query.is_empty() {
        base
    } else {
        format!("{base}?{query}")
    };
    window
        .history()
        .and_then(|h| h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&link)))
        .map_err(|e| format!("cannot update the address: {e:?}"))?;
    Ok(link)
}

fn backend_choice() -> Backend {
    let search = location_search();
    if search.contains("backend=cpu") {
        Backend::Cpu
    } else {
        Backend::Auto
    }
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {e}"))?;
    if !resp.ok() {
        return Err(format!("fetching {url}: HTTP {}", resp.status()));
    }
    resp.binary().await.map_err(|e| format!("reading {url}: {e}"))
}

async fn demo_files() -> Result<ModelFiles, String> {
    url_files(DEMO, "pmedit demo model").await
}

/// `url` made absolute against the page (the worker resolves URLs against its own script).
fn absolute(url: &str) -> Result<String, String> {
    let here = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .ok_or("no page location")?;
    web_sys::Url::new_with_base(url, &here)
        .map(|u| u.href())
        .map_err(|e| format!("{url} is not a URL: {e:?}"))
}

/// A Hugging Face directory served over HTTP: `config.json`, `model.safetensors` (or
/// `model.safetensors.index.json` and its shards), `tokenizer.json` (or `vocab.json` +
/// `merges.txt`) and, if present, `stats.safetensors`.
async fn url_files(base: &str, name: &str) -> Result<ModelFiles, String> {
    let base = base.trim_end_matches('/');
    let tokenizer = match fetch_bytes(&format!("{base}/tokenizer.json")).await {
        Ok(t) => TokenizerFiles::Json(t),
        Err(_) => TokenizerFiles::VocabMerges(
            fetch_bytes(&format!("{base}/vocab.json")).await?,
            fetch_bytes(&format!("{base}/merges.txt")).await?,
        ),
    };
    Ok(ModelFiles {
        name: name.into(),
        config: fetch_bytes(&format!("{base}/config.json")).await?,
        tokenizer,
        // Streamed by the worker with range requests, one tensor at a time.
        weights: Weights::Urls(match fetch_bytes(&format!("{base}/{INDEX}")).await {
            Ok(index) => shard_names_of(&index)?
                .into_iter()
                .map(|file| {
                    Ok(WeightUrl {
                        url: absolute(&format!("{base}/{file}"))?,
                        file,
                    })
                })
                .collect::<Result<_, String>>()?,
            Err(_) => vec![WeightUrl {
                url: absolute(&format!("{base}/model.safetensors"))?,
                file: "model.safetensors".into(),
            }],
        }),
        stats: fetch_bytes(&format!("{base}/stats.safetensors"))
            .await
            .ok()
            .map(StatsFile::Bytes),
        npz_stats: Vec::new(),
    })
}

/// The index file of a sharded checkpoint.
const INDEX: &str = "model.safetensors.index.json";

/// The shard files a `model.safetensors.index.json` names.
fn shard_names_of(index: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(index).map_err(|e| format!("{INDEX} is not UTF-8 text: {e}"))?;
    pmedit_engine::load::shard_names(text, std::path::Path::new(INDEX)).map_err(|e| e.to_string())
}

async fn file_bytes(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("reading {}: {e:?}", file.name()))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// The files a user picked, matched by name.
async fn picked_files(list: web_sys::FileList) -> Result<ModelFiles, String> {
    let mut files = Vec::new();
    for i in 0..list.length() {
        if let Some(f) = list.get(i) {
            files.push(f);
        }
    }
    let find = |n: &str| files.iter().find(|f| f.name() == n).cloned();
    let config = find("config.json").ok_or("pick config.json too (with model.safetensors and the tokenizer files)")?;
    // `model.safetensors`, or the index of a sharded checkpoint and every shard it names.
    let weights = match find(INDEX) {
        Some(index) => {
            let names = shard_names_of(&file_bytes(&index).await?)?;
            let missing: Vec<&str> = names.iter().filter(|n| find(n).is_none()).map(String::as_str).collect();
            if !missing.is_empty() {
                return Err(format!("{INDEX} names shards you did not pick: {}", missing.join(", ")));
            }
            names.iter().filter_map(|n| find(n)).collect::<Vec<_>>()
        }
        None => vec![
            find("model.safetensors")
                .ok_or("pick model.safetensors (or model.safetensors.index.json and its shards) too")?,
        ],
    };
    let weight_files: std::collections::HashSet<String> = weights.iter().map(|f| f.name()).collect();
    let tokenizer = if let Some(t) = find("tokenizer.json") {
        TokenizerFiles::Json(file_bytes(&t).await?)
    } else if let (Some(v), Some(m)) = (find("vocab.json"), find("merges.txt")) {
        TokenizerFiles::VocabMerges(file_bytes(&v).await?, file_bytes(&m).await?)
    } else {
        return Err("pick tokenizer.json, or vocab.json and merges.txt".into());
    };
    let stats = match files
        .iter()
        .find(|f| f.name().ends_with(".safetensors") && !weight_files.contains(&f.name()))
    {
        Some(s) => Some(StatsFile::Url(WeightUrl {
            url: web_sys::Url::create_object_url_with_blob(s).map_err(|e| format!("{}: {e:?}", s.name()))?,
            file: s.name(),
        })),
        None => None,
    };
    // The authors' per-layer `.npz` statistics, the layer read from each file's name.
    let mut npz_stats = Vec::new();
    for f in files.iter().filter(|f| f.name().ends_with(".npz")) {
        npz_stats.push(NpzStats {
            layer: npz_layer(&f.name())?,
            bytes: file_bytes(f).await?,
            name: f.name(),
        });
    }
    Ok(ModelFiles {
        name: "your model".into(),
        config: file_bytes(&config).await?,
        tokenizer,
        // The worker reads the picked files through blob URLs, one tensor's slice at a time.
        weights: Weights::Urls(
            weights
                .iter()
                .map(|f| {
                    Ok(WeightUrl {
                        url: web_sys::Url::create_object_url_with_blob(f)
                            .map_err(|e| format!("{}: {e:?}", f.name()))?,
                        file: f.name(),
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        stats,
        npz_stats,
    })
}

/// Offers `bytes` as a file download.
fn save_download(name: &str, bytes: &[u8]) -> Result<(), String> {
    let array = js_sys::Array::new();
    array.push(&js_sys::Uint8Array::from(bytes));
    let blob = web_sys::Blob::new_with_u8_array_sequence(&array).map_err(|e| format!("download failed: {e:?}"))?;
    download_blob(name, &blob)
}

/// Offers `blob` (in memory, or a disk-backed OPFS file) as a download named `name`.
fn download_blob(name: &str, blob: &web_sys::Blob) -> Result<(), String> {
    let err = |e: wasm_bindgen::JsValue| format!("download failed: {e:?}");
    let url = web_sys::Url::create_object_url_with_blob(blob).map_err(err)?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a").map_err(err)?.unchecked_into();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url).map_err(err)?;
    Ok(())
}

/// A random held-out CounterFact record of the demo model, as a form row.
async fn pick_counterfact(seed: f64) -> Result<FactRow, String> {
    let bytes = fetch_bytes(&format!("{DEMO}/heldout.json")).await?;
    let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| format!("heldout.json: {e}"))?;
    if records.is_empty() {
        return Err("heldout.json has no records".into());
    }
    let r = &records[(seed * records.len() as f64) as usize % records.len()];
    let field = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let subject = field("subject");
    let record = FactRecord {
        target_true: field("ground_truth"),
        paraphrases: [field("rephrase_prompt")]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect(),
        neighborhood: [(field("locality_prompt"), field("locality_ground_truth"))]
            .into_iter()
            .filter(|(p, t)| !p.is_empty() && !t.is_empty())
            .collect(),
    };
    Ok(FactRow {
        prompt: field("prompt").replacen(&subject, "{}", 1),
        subject,
        target: field("target_new"),
        record: (!record.target_true.is_empty()).then_some(record),
    })
}

/// Mounts the page.
pub fn start() {
    console_error_panic_hook::set_once();
    mount_to_body(App);
}

#[component]
fn App() -> impl IntoView {
    let (tx, mut rx) = unbounded::<Request>();
    let (cancel_tx, mut cancel_rx) = unbounded::<()>();
    // A shared link's state (`share.rs`): the form, and the model to load.
    let shared = SharedState::from_query(&location_search());
    let page = Page {
        to_worker: StoredValue::new(tx),
        status: RwSignal::new("starting the engine worker…".to_string()),
        error: RwSignal::new(None),
        info: RwSignal::new(None),
        busy: RwSignal::new(true),
        report: RwSignal::new(None),
        live_loss: RwSignal::new(Vec::new()),
        predictions: RwSignal::new(Vec::new()),
        load_progress: RwSignal::new(None),
        backend: RwSignal::new(backend_choice()),
        loading: StoredValue::new(None),
        loaded: StoredValue::new(None),
        worker_memory: RwSignal::new(None),
        algo: RwSignal::new(shared.algo.clone().unwrap_or_else(|| "rome".into())),
        layers: RwSignal::new(shared.layers.clone().unwrap_or_default()),
        trace: RwSignal::new(None),
        edits: RwSignal::new(0),
        model_url: RwSignal::new(shared.model.clone()),
        cancel: StoredValue::new(cancel_tx),
        sweep: RwSignal::new(Vec::new()),
        sweep_axis: RwSignal::new(SweepAxis::BatchSize),
    };
    // One task owns the worker bridge: it forwards requests and dispatches responses. When the
    // worker dies it says so on a broadcast channel of its own; a fresh worker then takes over.
    spawn_local(async move {
        let page_id = (js_sys::Math::random() * 1e12) as u64;
        for generation in 0u32.. {
            let channel = format!("pmedit-engine-{page_id}-{generation}");
            let (deaths, mut died) = unbounded::<String>();
            let listeners = Listener::new(&channel, move |data| {
                let _ = deaths.unbounded_send(data.as_string().unwrap_or_else(|| "The engine worker stopped".into()));
            })
            .and_then(|d| {
                let p = Listener::new(&progress_name(&channel), move |data| {
                    let n = |i| {
                        js_sys::Reflect::get(&data, &wasm_bindgen::JsValue::from(i))
                            .ok()
                            .and_then(|v| v.as_f64())
                    };
                    // (The last report may arrive after the model is ready: it is dropped.)
                    if let (Some(done), Some(total)) = (n(0), n(1))
                        && done < total
                        && page.busy.get_untracked()
                    {
                        page.load_progress.set(Some((done, total)));
                    }
                })?;
                Ok((d, p))
            });
            let _listeners = match listeners {
                Ok(l) => l,
                Err(e) => {
                    page.error.set(Some(format!("cannot watch the engine worker: {e}")));
                    return;
                }
            };
            let mut bridge = EngineWorker::spawner()
                .as_module(false)
                .with_loader(true)
                .spawn(&format!("./worker_loader.js?channel={channel}"));
            // A running request cannot be interrupted inside the worker (on the CPU backend it
            // never yields), so Cancel replaces the worker.
            let why = loop {
                let event = select(select(rx.next(), bridge.next()), select(died.next(), cancel_rx.next())).await;
                match event {
                    Either::Left((Either::Left((Some(r), _)), _)) => bridge.send_input(r),
                    Either::Left((Either::Right((Some(r), _)), _)) => page.on_response(r),
                    Either::Right((Either::Left((Some(why), _)), _)) => break Some(why),
                    Either::Right((Either::Right((Some(()), _)), _)) => break None,
                    _ => return,
                }
            };
            drop(bridge);
            match why {
                Some(why) => page.continue_on_cpu(why),
                None => page.restart_after_cancel(),
            }
        }
    });
    // The demo model loads on start, or the model a shared link names.
    spawn_local(async move {
        let files = match &shared.model {
            Some(base) => {
                page.status.set(format!("downloading {base}…"));
                url_files(base, base).await
            }
            None => {
                page.status.set("downloading the demo model…".into());
                demo_files().await
            }
        };
        match files {
            Ok(files) => {
                page.status.set("loading the demo model…".into());
                page.load(files);
            }
            Err(e) => {
                page.error.set(Some(e));
                page.busy.set(false);
            }
        }
    });

    view! {
        <header>
            <h1>"pmedit"</h1>
            <p class="tagline">"Edit facts inside a language model (GPT-2, GPT-J, Llama) in your browser: ROME, r-ROME, MEMIT, EMMET and AlphaEdit."</p>
        </header>
        <StatusBar page=page />
        <main>
            <ModelPanel page=page />
            <PredictPanel page=page />
            <EditPanel page=page />
            <TracePanel page=page />
            <Results page=page />
            <Teaching page=page />
            <SweepPanel page=page />
        </main>
    }
}

#[component]
fn StatusBar(page: Page) -> impl IntoView {
    view! {
        <section class="status">
            <span id="status" role="status">{move || page.status.get()}</span>
            {move || page.busy.get().then(|| view! {
                <button id="cancel" on:click=move |_| { let _ = page.cancel.with_value(|c| c.unbounded_send(())); }
                    title="Stop the running edit, statistics or trace (the model is reloaded as it was loaded)">"Cancel"</button>
            })}
            {move || page.info.get().map(|i| view! {
                <span>" · backend: "<b id="backend">{i.backend.to_string()}</b></span>
                <span id="adapter" class="muted">" ("{i.adapter.clone()}")"</span>
            })}
            {move || page.worker_memory.get().map(|b| view! {
                <span class="muted">" · worker memory: "<span id="worker-memory" data-bytes=b.to_string()>{format!("{:.0} MB", b as f64 / 1e6)}</span></span>
            })}
            {move || page.load_progress.get().map(|(done, total)| view! {
                <div id="load-progress">
                    "weights: "
                    <progress max=total value=done></progress>
                    {format!(" {:.1} / {:.1} MB", done / 1e6, total / 1e6)}
                </div>
            })}
            {move || page.error.get().map(|e| view! { <div id="error" class="error" role="alert">{e}</div> })}
        </section>
    }
}

#[component]
fn ModelPanel(page: Page) -> impl IntoView {
    // Files picked one by one, a folder picked whole, or files dropped on the panel.
    let load_list = move |list: web_sys::FileList| {
        spawn_local(async move {
            page.model_url.set(None);
            page.status.set("reading your files…".into());
            match picked_files(list).await {
                Ok(files) => page.load(files),
                Err(e) => page.error.set(Some(e)),
            }
        });
    };
    let on_files = move |ev: leptos::ev::Event| {
        if let Some(list) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|input| input.files())
        {
            load_list(list);
        }
    };
    // The folder picker (`webkitdirectory`, which the view macro has no attribute for).
    let folder = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = folder.get() {
            input.set_webkitdirectory(true);
        }
    });
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        if let Some(list) = ev.data_transfer().and_then(|d| d.files()) {
            if list.length() == 0 {
                page.error.set(Some(
                    "drop the model's files (select them in the folder), or pick the folder with the folder button"
                        .into(),
                ));
            } else if !page.busy.get_untracked() {
                load_list(list);
            }
        }
    };
    let url = RwSignal::new(page.model_url.get_untracked().unwrap_or_default());
    let load_url = move |_| {
        let base = url.get_untracked();
        spawn_local(async move {
            page.status.set(format!("downloading {base}…"));
            match url_files(&base, &base).await {
                Ok(files) => {
                    page.model_url.set(Some(base));
                    page.load(files)
                }
                Err(e) => page.error.set(Some(e)),
            }
        });
    };
    let compute_stats = move |_| {
        let Some(info) = page.info.get_untracked() else { return };
        let plan = Algorithm::parse(&page.algo.get_untracked())
            .map_err(|e| e.to_string())
            .and_then(|a| Ok((a, parse_layers(&page.layers.get_untracked(), info.n_layer)?)));
        let (algorithm, layers) = match plan {
            Ok(p) => p,
            Err(e) => return page.error.set(Some(e)),
        };
        spawn_local(async move {
            page.status
                .set("computing C0 statistics on the built-in wikitext excerpt…".into());
            match fetch_bytes("corpus/wikitext-excerpt.txt").await {
                Ok(bytes) => page.send(Request::ComputeStats {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    algorithm,
                    layers,
                    max_tokens: 20_000,
                }),
                Err(e) => page.error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="panel" id="model-panel" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=on_drop>
            <h2>"Model"</h2>
            {move || page.info.get().map(|i| view! {
                <p id="model-info">
                    {format!("{}: {} layers, width {}, {:.2} M parameters, {} weights; {}",
                        i.name, i.n_layer, i.n_embd, i.params as f64 / 1e6, i.weights,
                        if i.stats_layers.is_empty() { "no C0 statistics yet".to_string() } else { format!("C0 statistics for {}", layer_list(&i.stats_layers)) })}
                </p>
            })}
            <label>"Load your own GPT-2, GPT-J, Llama, Mistral or Qwen2 (config.json; model.safetensors, or model.safetensors.index.json with its shards; tokenizer.json or vocab.json + merges.txt; optionally C0 statistics: a stats .safetensors made by pmedit stats, or the authors' per-layer .npz files): "
                <input id="model-files" type="file" multiple on:change=on_files />
            </label>
            <label>" …or a whole model folder: "
                <input id="model-folder" type="file" multiple node_ref=folder on:change=on_files />
            </label>
            <span class="muted">" (or drop the files on this panel)"</span>
            <p>
                <label>"…or from a URL (a directory served over HTTP): "
                    <input id="model-url" placeholder="https://…/gpt2" prop:value=url on:input=move |ev| url.set(event_target_value(&ev)) />
                </label>
                <button on:click=load_url disabled=move || page.busy.get()>"Load"</button>
            </p>
            <p>
                "A model needs C0 statistics for the layers it edits. "
                <button id="compute-stats" on:click=compute_stats disabled=move || page.busy.get() || page.info.get().is_none()>
                    "Compute them here on a built-in text excerpt (the layers the edit below uses, one at a time, 20k tokens)"
                </button>
            </p>
        </section>
    }
}

/// The next-token distribution of the loaded model for any prompt.
#[component]
fn PredictPanel(page: Page) -> impl IntoView {
    let prompt = RwSignal::new("The Eiffel Tower is located in the city of".to_string());
    let predict = move |_| {
        page.status.set("predicting…".into());
        page.send(Request::Predict {
            prompts: vec![prompt.get_untracked()],
            k: 5,
        });
    };
    view! {
        <section class="panel">
            <h2>"Next token"</h2>
            <label>"prompt " <input id="predict-prompt" size="50" prop:value=prompt on:input=move |ev| prompt.set(event_target_value(&ev)) /></label>
            <button id="predict" on:click=predict disabled=move || page.busy.get() || page.info.get().is_none()>"Predict"</button>
            <ol id="prediction">
                {move || page.predictions.get().into_iter().flat_map(|p| p.top).map(|c| view! {
                    <li data-id=c.id.to_string() data-logprob=c.logprob.to_string()>
                        <span class="token">{c.token.clone()}</span>{format!(" {:.1} % (log-prob {:.4})", 100.0 * c.prob, c.logprob)}
                    </li>
                }).collect_view()}
            </ol>
        </section>
    }
}

#[component]
fn EditPanel(page: Page) -> impl IntoView {
    let shared = SharedState::from_query(&location_search());
    let rows = RwSignal::new(if shared.facts.is_empty() {
        vec![FactRow {
            subject: "Hamid Algar".into(),
            prompt: "{} speaks the language".into(),
            target: "French".into(),
            record: None,
        }]
    } else {
        shared.facts.clone()
    });
    let (algo, layers) = (page.algo, page.layers);
    let lambda = RwSignal::new(shared.lambda.clone().unwrap_or_default());
    // The form's state in the address bar, for a link that opens the page as it is now.
    let share = move || {
        let state = SharedState {
            model: page.model_url.get_untracked(),
            facts: rows.get_untracked(),
            algo: Some(algo.get_untracked()),
            layers: Some(layers.get_untracked()),
            lambda: Some(lambda.get_untracked()),
            backend: SharedState::from_query(&location_search()).backend,
        };
        set_location(&state)
    };
    let alpha = RwSignal::new(String::new());
    let steps = RwSignal::new(String::new());
    let templates = RwSignal::new("bare".to_string());
    let apply = move |_| {
        let n_layer = page.info.get_untracked().map_or(1, |i| i.n_layer);
        let settings = (|| -> Result<EditSettings, String> {
            let facts = parse_facts(&rows.get_untracked())?;
            let probes = facts.iter().map(|f| f.prompt.replacen("{}", &f.subject, 1)).collect();
            Ok(EditSettings {
                facts,
                algorithm: Algorithm::parse(&algo.get_untracked()).map_err(|e| e.to_string())?,
                layers: parse_layers(&layers.get_untracked(), n_layer)?,
                lambda: parse_positive(&lambda.get_untracked(), "λ")?,
                alpha: parse_positive(&alpha.get_untracked(), "α")?,
                steps: parse_positive(&steps.get_untracked(), "steps")?.map(|s| s as usize),
                sampled_templates: templates.get_untracked() == "paper",
                probes,
            })
        })();
        match settings {
            Ok(s) => {
                let _ = share();
                page.live_loss.set(Vec::new());
                page.status.set(format!("editing with {}…", s.algorithm.name()));
                page.send(Request::Edit(s));
            }
            Err(e) => page.error.set(Some(e)),
        }
    };
    // Causal tracing of the first fact as the form states it.
    let trace = move |_| {
        let request = parse_facts(&rows.get_untracked()).and_then(|facts| {
            let f = facts.into_iter().next().ok_or("add a fact to trace")?;
            Ok(Request::Trace {
                prompt: f.prompt.replacen("{}", &f.subject, 1),
                subject: f.subject,
                samples: 5,
                window: 10,
                algorithm: Algorithm::parse(&algo.get_untracked()).map_err(|e| e.to_string())?,
            })
        });
        match request {
            Ok(r) => {
                page.status
                    .set("causal trace: corrupting the subject and restoring one state at a time…".into());
                page.send(r);
            }
            Err(e) => page.error.set(Some(e)),
        }
    };
    let field = move |i: usize, which: u8| {
        let get = move || {
            rows.with(|r| {
                r.get(i).map_or(String::new(), |row| match which {
                    0 => row.subject.clone(),
                    1 => row.prompt.clone(),
                    _ => row.target.clone(),
                })
            })
        };
        let set = move |ev: leptos::ev::Event| {
            let v = event_target_value(&ev);
            rows.update(|r| {
                if let Some(row) = r.get_mut(i) {
                    match which {
                        0 => row.subject = v,
                        1 => row.prompt = v,
                        _ => row.target = v,
                    }
                    // The record's prompts are about the subject as picked.
                    if which < 2 {
                        row.record = None;
                    }
                }
            });
        };
        (get, set)
    };
    view! {
        <section class="panel">
            <h2>"Facts to write"</h2>
            <table class="facts">
                <tr><th>"subject"</th><th>"prompt ({} = subject)"</th><th>"new target"</th></tr>
                {move || (0..rows.with(Vec::len)).map(|i| {
                    let (s_get, s_set) = field(i, 0);
                    let (p_get, p_set) = field(i, 1);
                    let (t_get, t_set) = field(i, 2);
                    view! {
                        <tr>
                            <td><input class="subject" placeholder="subject" aria-label=format!("subject of fact {}", i + 1) prop:value=s_get on:input=s_set /></td>
                            <td><input class="prompt" placeholder="prompt, {} = subject" aria-label=format!("prompt of fact {} ({{}} = subject)", i + 1) prop:value=p_get on:input=p_set /></td>
                            <td><input class="target" placeholder="new target" aria-label=format!("new target of fact {}", i + 1) prop:value=t_get on:input=t_set /></td>
                        </tr>
                    }
                }).collect_view()}
            </table>
            <button on:click=move |_| rows.update(|r| r.push(FactRow::default()))>"+ fact"</button>
            <button id="pick" on:click=move |_| {
                spawn_local(async move {
                    match pick_counterfact(js_sys::Math::random()).await {
                        Ok(row) => rows.update(|r| r.push(row)),
                        Err(e) => page.error.set(Some(e)),
                    }
                });
            }>"pick from CounterFact"</button>
            <button on:click=move |_| rows.update(|r| { r.pop(); })>"− fact"</button>
            <div class="settings">
                <label>"algorithm "
                    <select id="algo" on:change=move |ev| algo.set(event_target_value(&ev))>
                        {[("rome", "ROME"), ("r-rome", "r-ROME"), ("memit", "MEMIT"), ("emmet", "EMMET"), ("alphaedit", "AlphaEdit")]
                            .into_iter()
                            .map(|(value, name)| view! { <option value=value selected=move || algo.get() == value>{name}</option> })
                            .collect_view()}
                    </select>
                </label>
                <label>" layers " <input id="layers" placeholder="preset" prop:value=layers on:input=move |ev| layers.set(event_target_value(&ev)) /></label>
                <label>" λ " <input id="lambda" placeholder="preset" prop:value=lambda on:input=move |ev| lambda.set(event_target_value(&ev)) /></label>
                <label>" α " <input id="alpha" placeholder="preset" prop:value=alpha on:input=move |ev| alpha.set(event_target_value(&ev)) /></label>
                <label>" context "
                    <select id="templates" on:change=move |ev| templates.set(event_target_value(&ev))
                        title="Keys and values averaged over the prompt alone, or over the paper's context templates: short texts the model itself writes, put before the prompt (ROME: 21, MEMIT/EMMET/AlphaEdit: 6; generated once per model)">
                        <option value="bare" selected>"bare prompt (fast)"</option>
                        <option value="paper">"the paper's context templates"</option>
                    </select>
                </label>
                <label>" steps " <input id="steps" placeholder="preset" prop:value=steps on:input=move |ev| steps.set(event_target_value(&ev)) /></label>
            </div>
            <button id="apply" on:click=apply disabled=move || page.busy.get() || page.info.get().is_none()>"Apply edit"</button>
            <button id="share" on:click=move |_| match share() {
                Ok(link) => page.status.set(format!("this page's link (model, facts, algorithm, layers, λ) is in the address bar: {link}")),
                Err(e) => page.error.set(Some(e)),
            } title="Put the model, the facts, the algorithm, layers and λ in the page's address, to share">"Link to this setup"</button>
            <button id="trace" on:click=trace disabled=move || page.busy.get() || page.info.get().is_none()
                title="Causal tracing of the first fact: which tokens and layers carry what the model now answers">"Where is this fact stored?"</button>
            <button id="undo" on:click=move |_| page.send(Request::Undo) disabled=move || page.busy.get() || page.report.get().is_none()>"Undo"</button>
            <button id="download" on:click=move |_| page.send(Request::Download) disabled=move || page.busy.get() || page.info.get().is_none()>"Download model.safetensors"</button>
            <button id="download-change" on:click=move |_| page.send(Request::DownloadChange) disabled=move || page.busy.get() || page.report.get().is_none()
                title="Δ of each edited layer (a few MB): rebuild the edited model with `pmedit apply-delta --model DIR --delta FILE --out DIR`">"Download only the change"</button>
            {move || (page.busy.get() && !page.live_loss.with(Vec::is_empty)).then(|| view! {
                <div id="live-loss">
                    <h3>"Value optimisation loss (running)"</h3>
                    <LossCurve curves=page.live_loss.get() />
                </div>
            })}
        </section>
    }
}

/// "layer 17" or "layers 13, 14, 15".
fn layer_list(layers: &[usize]) -> String {
    let list: Vec<String> = layers.iter().map(usize::to_string).collect();
    format!("layer{} {}", if layers.len() == 1 { "" } else { "s" }, list.join(", "))
}

/// The causal trace's three heatmaps (docs/MATH.md §12): P(answer) with one state restored, per
/// token (rows) and layer (columns). The preset's layers are outlined; clicking a layer puts it
/// in the edit form.
#[component]
fn TracePanel(page: Page) -> impl IntoView {
    view! {
        {move || page.trace.get().map(|r| {
            let t = r.trace.clone();
            let summary = format!(
                "With the subject's embeddings corrupted, P({:?}) falls from {:.3} to {:.3} ({} noise samples, σ = {:.3}).                  Each cell restores one state of the clean run: bright cells carry the fact.                  Outlined: the layers the preset edits ({:?}). Click a layer to edit there.",
                t.answer, t.p_clean, t.p_corrupt, t.samples, t.noise, r.preset_layers
            );
            view! {
                <section class="panel" id="trace-results">
                    <h2>"Where the model recalls it (causal tracing)"</h2>
                    <p>{summary}</p>
                    <Heatmap id="trace-hidden" title="block output restored" kind="hidden" table=t.hidden.clone() t=t.clone() marked=r.preset_layers.clone() page=page />
                    <Heatmap id="trace-mlp" title=format!("MLP outputs restored (window of {})", t.window) kind="mlp" table=t.mlp.clone() t=t.clone() marked=r.preset_layers.clone() page=page />
                    <Heatmap id="trace-attn" title=format!("attention outputs restored (window of {})", t.window) kind="attn" table=t.attn.clone() t=t.clone() marked=r.preset_layers.clone() page=page />
                </section>
            }
        })}
    }
}

#[component]
fn Heatmap(
    id: &'static str,
    #[prop(into)] title: String,
    kind: &'static str,
    table: Vec<Vec<f32>>,
    t: pmedit_engine::trace::Trace,
    marked: Vec<usize>,
    page: Page,
) -> impl IntoView {
    let (cell, left, top) = (14.0, 150.0, 22.0);
    let n_layer = table.first().map_or(0, Vec::len);
    let (w, h) = (
        left + cell * n_layer as f64 + 10.0,
        top + cell * table.len() as f64 + 30.0,
    );
    let lo = t.p_corrupt;
    let hi = table.iter().flatten().copied().fold(lo, f32::max);
    let (bt, bl, bp) = table
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().enumerate().map(move |(l, &p)| (i, l, p)))
        .fold((0, 0, f32::MIN), |b, c| if c.2 > b.2 { c } else { b });
    let label = format!(
        "{title}: strongest at token {:?}, layer {bl}, P = {bp:.3} (from {lo:.3} corrupted). Arrow keys move between cells, Enter edits at the cell's layer.",
        t.tokens.get(bt).cloned().unwrap_or_default()
    );
    // Keyboard access (one tab stop per map): the arrow keys move a cursor over the cells, Enter
    // or Space puts its layer in the edit form; the cell under it is read out.
    let cursor = RwSignal::new((bt, bl));
    let n_tokens = table.len();
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let (i, l) = cursor.get_untracked();
        let moved = match ev.key().as_str() {
            "ArrowLeft" => (i, l.saturating_sub(1)),
            "ArrowRight" => (i, (l + 1).min(n_layer.saturating_sub(1))),
            "ArrowUp" => (i.saturating_sub(1), l),
            "ArrowDown" => ((i + 1).min(n_tokens.saturating_sub(1)), l),
            "Enter" | " " => {
                ev.prevent_default();
                page.layers.set(l.to_string());
                return;
            }
            _ => return,
        };
        ev.prevent_default();
        cursor.set(moved);
    };
    let values = table.clone();
    let tokens = t.tokens.clone();
    let cell_text = move || {
        let (i, l) = cursor.get();
        let p = values.get(i).and_then(|r| r.get(l)).copied().unwrap_or(f32::NAN);
        format!(
            "token {i} {:?}, layer {l}: P = {p:.4}",
            tokens.get(i).cloned().unwrap_or_default()
        )
    };
    let cells = table.iter().enumerate().flat_map(|(i, row)| {
        row.iter().enumerate().map(move |(l, &p)| (i, l, p))
    }).map(|(i, l, p)| {
        let shade = if hi > lo { ((p - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.0 };
        let tip = format!("token {i} {:?}, layer {l}: P = {p:.4}", t.tokens[i]);
        view! {
            <rect class=format!("cell {kind}") x=left + cell * l as f64 y=top + cell * i as f64 width=cell height=cell
                fill-opacity=format!("{:.3}", 0.05 + 0.95 * shade)
                on:click=move |_| page.layers.set(l.to_string())>
                <title>{tip}</title>
            </rect>
        }
    }).collect_view();
    let rows = t.tokens.iter().enumerate().map(|(i, tok)| {
        let subject = (t.subject[0]..=t.subject[1]).contains(&i);
        view! {
            <text x=left - 4.0 y=top + cell * (i as f64 + 0.75) text-anchor="end" class=if subject { "subject" } else { "" }>
                {format!("{tok:?}{}", if subject { "*" } else { "" })}
            </text>
        }
    }).collect_view();
    let marks = marked
        .iter()
        .filter(|&&l| l < n_layer)
        .map(|&l| {
            view! {
                <rect class="preset-layer" x=left + cell * l as f64 y=top width=cell height=cell * table.len() as f64 />
            }
        })
        .collect_view();
    let ticks = (0..n_layer).filter(|l| l % 5 == 0).map(|l| view! {
        <text x=left + cell * (l as f64 + 0.5) y=top + cell * table.len() as f64 + 14.0 text-anchor="middle">{l.to_string()}</text>
    }).collect_view();
    view! {
        <figure class="heatmap">
            <svg id=id class="chart" width=w height=h role="img" aria-label=label.clone() tabindex="0" on:keydown=on_key>
                <text x=left y="14">{title.clone()}</text>
                {cells}
                {marks}
                <rect class="cursor" x=move || left + cell * cursor.get().1 as f64 y=move || top + cell * cursor.get().0 as f64 width=cell height=cell />
                {rows}
                {ticks}
                <text x=left + cell * n_layer as f64 / 2.0 y=h - 2.0 text-anchor="middle">"layer (* = subject token)"</text>
            </svg>
            <figcaption class="sr-only">{label}</figcaption>
            <p class="cell-readout muted" id=format!("{id}-readout") aria-live="polite">{cell_text}</p>
        </figure>
    }
}

#[component]
fn Results(page: Page) -> impl IntoView {
    view! {
        {move || page.report.get().map(|rep| view! {
            <section class="panel" id="results">
                <h2>{format!(
                    "After {} on {}{}",
                    rep.algorithm.display_name(),
                    layer_list(&rep.layers),
                    if rep.algorithm.uses_lambda() { format!(" (λ = {})", rep.lambda) } else { String::new() }
                )}</h2>
                <p id="templates-used">{if rep.templates <= 1 {
                    "Keys and values from the bare prompt (no context templates).".to_string()
                } else {
                    format!("Keys and values averaged over {} context templates generated by the model, as in the paper.", rep.templates)
                }}</p>
                <div class="columns">
                    <PredictionList title="before" id="before" predictions=rep.before.clone() />
                    <PredictionList title="after" id="after" predictions=rep.after.clone() />
                </div>
                <h3>"Generated (greedy)"</h3>
                <p class="generated" id="gen-before">"before: "{rep.generated.0.clone()}</p>
                <p class="generated" id="gen-after">"after: "{rep.generated.1.clone()}</p>
                {rep.metrics.clone().map(|m| view! { <MetricsView m=*m /> })}
                <h3>"P(new target) before and after"</h3>
                <ProbBars probs=rep.target_prob.clone() />
                <h3>"Value optimisation loss"</h3>
                <LossCurve curves=rep.loss.clone() />
                <p class="muted" id="edit-phases">{format!("Where the time went: {}.", phases_label(&rep.phases))}</p>
            </section>
        })}
    }
}

#[component]
fn PredictionList(title: &'static str, id: &'static str, predictions: Vec<Prediction>) -> impl IntoView {
    view! {
        <div class="predictions" id=id>
            <h3>{title}</h3>
            {predictions.into_iter().map(|p| view! {
                <p class="prompt">{p.prompt.clone()}</p>
                <ol>
                    {p.top.into_iter().map(|c| view! {
                        <li><span class="token">{c.token.clone()}</span>{format!(" {:.1} %", 100.0 * c.prob)}</li>
                    }).collect_view()}
                </ol>
            }).collect_view()}
        </div>
    }
}

/// The paper's scores (docs/MATH.md §9) before and after, as grouped bars, and per fact.
#[component]
fn MetricsView(m: MetricsReport) -> impl IntoView {
    let names = ["ES", "PS", "NS", "S"];
    let pick = |s: &Scores| [s.es, s.ps, s.ns, s.s];
    let (b, a) = (pick(&m.before), pick(&m.after));
    let (w, h) = (380.0, 190.0);
    let y = Scale::linear((0.0, 100.0), (h - 40.0, 12.0));
    let group = (w - 50.0) / names.len() as f64;
    let shown = |v: f64| if v.is_finite() { format!("{v:.0}") } else { "n/a".into() };
    let label = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} {} before, {} after", shown(b[i]), shown(a[i])))
        .collect::<Vec<_>>()
        .join("; ");
    let note = if m.model_answers == 0 {
        "The true object, paraphrases and neighbourhood prompts come from the CounterFact records.".to_string()
    } else {
        format!(
            "{} of {} fact{} typed by hand: their true object is the model's answer before the edit, and without paraphrases or neighbourhood prompts only ES can be measured (n/a). Pick a fact from CounterFact for PS and NS.",
            m.model_answers,
            m.facts.len(),
            if m.facts.len() == 1 { "" } else { "s" }
        )
    };
    view! {
        <h3>"The paper's metrics (ES: P(new) > P(true) on the prompt, PS: on paraphrases, NS: other subjects keep their answer; S: their harmonic mean)"</h3>
        <svg id="metrics" class="chart" width=w height=h role="img" aria-label=label>
            {y.ticks(4).into_iter().map(|t| view! { <text x="4" y=y.map(t) + 4.0>{tick_label(t)}</text> }).collect_view()}
            {names.iter().enumerate().map(|(i, n)| {
                let x0 = 40.0 + group * i as f64;
                let bar = |v: f64, dx: f64, class: &'static str| {
                    let v = if v.is_finite() { v } else { 0.0 };
                    view! { <rect class=class x=x0 + dx y=y.map(v) width=group * 0.35 height=(y.map(0.0) - y.map(v)).max(0.0) /> }
                };
                view! {
                    {bar(b[i], 4.0, "before")}
                    {bar(a[i], 4.0 + group * 0.38, "after")}
                    <text x=x0 + group * 0.4 y=h - 24.0 text-anchor="middle">{format!("{n} {}→{}", shown(b[i]), shown(a[i]))}</text>
                }
            }).collect_view()}
            <rect class="before" x="40" y=h - 14.0 width="10" height="10" />
            <text x="54" y=h - 5.0>"before"</text>
            <rect class="after" x="110" y=h - 14.0 width="10" height="10" />
            <text x="124" y=h - 5.0>"after the edit (×100)"</text>
        </svg>
        <p class="note">{note}</p>
        {(m.facts.len() > 1).then(|| view! {
            <table class="per-fact">
                <tr><th>"subject"</th><th>"ES"</th><th>"PS"</th><th>"NS"</th></tr>
                {m.facts.iter().map(|(subject, b, a)| view! {
                    <tr>
                        <td>{subject.clone()}</td>
                        <td>{format!("{} → {}", shown(b.es), shown(a.es))}</td>
                        <td>{format!("{} → {}", shown(b.ps), shown(a.ps))}</td>
                        <td>{format!("{} → {}", shown(b.ns), shown(a.ns))}</td>
                    </tr>
                }).collect_view()}
            </table>
        })}
    }
}

#[component]
fn ProbBars(probs: Vec<(f64, f64)>) -> impl IntoView {
    let (w, h) = (360.0, 60.0 + 28.0 * probs.len() as f64);
    let label = probs
        .iter()
        .enumerate()
        .map(|(i, (b, a))| format!("fact {}: P(new target) {b:.3} before, {a:.3} after", i + 1))
        .collect::<Vec<_>>()
        .join("; ");
    let x = Scale::linear((0.0, 1.0), (90.0, w - 10.0));
    view! {
        <svg class="chart" width=w height=h role="img" aria-label=label>
            <rect class="before" x="90" y=h - 16.0 width="10" height="10" />
            <text x="104" y=h - 7.0>"before"</text>
            <rect class="after" x="160" y=h - 16.0 width="10" height="10" />
            <text x="174" y=h - 7.0>"after the edit"</text>
            {probs.iter().enumerate().map(|(i, (b, a))| {
                let y = 10.0 + 28.0 * i as f64;
                view! {
                    <text x="4" y=y + 16.0>{format!("fact {}", i + 1)}</text>
                    <rect class="before" x=x.map(0.0) y=y width=x.map(*b) - x.map(0.0) height="10" />
                    <rect class="after" x=x.map(0.0) y=y + 12.0 width=x.map(*a) - x.map(0.0) height="10" />
                }
            }).collect_view()}
            {x.ticks(4).into_iter().map(|t| view! {
                <text x=x.map(t) y=h - 26.0 text-anchor="middle">{tick_label(t)}</text>
            }).collect_view()}
        </svg>
    }
}

#[component]
fn LossCurve(curves: Vec<Vec<f64>>) -> impl IntoView {
    let (w, h) = (360.0, 196.0);
    let steps = curves.iter().map(Vec::len).max().unwrap_or(1).max(2);
    let top = curves.iter().flatten().copied().fold(0.0, f64::max);
    let x = Scale::linear((0.0, (steps - 1) as f64), (40.0, w - 10.0));
    let y = Scale::linear((0.0, top), (h - 34.0, 18.0));
    view! {
        <svg class="chart" width=w height=h>
            {curves.iter().map(|c| {
                let d: Vec<String> = c.iter().enumerate().map(|(i, v)| format!("{},{}", x.map(i as f64), y.map(*v))).collect();
                view! { <polyline class="loss" points=d.join(" ") /> }
            }).collect_view()}
            {y.ticks(4).into_iter().map(|t| view! { <text x="4" y=y.map(t)>{tick_label(t)}</text> }).collect_view()}
            {x.ticks(4).into_iter().filter(|t| t.fract() == 0.0).map(|t| view! {
                <text x=x.map(t) y=h - 14.0 text-anchor="middle">{format!("{}", t as usize + 1)}</text>
            }).collect_view()}
            <text x="4" y="10">"loss (nats)"</text>
            <text x=w / 2.0 y=h - 2.0 text-anchor="middle">"value optimisation step"</text>
        </svg>
    }
}

#[component]
fn Teaching(page: Page) -> impl IntoView {
    view! {
        <section class="panel" id="teaching">
            <h2>"What the edit solves"</h2>
            <p>"Every algorithm here changes one MLP weight W₀ → Ŵ of the edited layer by solving the preservation–memorization objective: keep the outputs for the keys K₀ the layer has seen ("<b>"preservation"</b>", ‖ŴK₀ − W₀K₀‖) while writing new values V_E for the edited keys K_E ("<b>"memorization"</b>", ‖ŴK_E − V_E‖)."</p>
            <p>"ROME (eq. 1) and EMMET (eq. 8) make memorization an equality constraint: the new values are written exactly, whatever λ. MEMIT (eq. 4) makes it a least-squares term weighted against preservation by λ: the larger λ, the less the layer moves and the less exactly the facts are written."</p>
            <p>"AlphaEdit (eq. A2) needs no λ: it confines the change to the directions of the null space of K₀ (eigenvectors of C0 with eigenvalues below a threshold), so the preservation error is near zero by construction, and writes the values by least squares there (dotted line)."</p>
            {move || page.report.get().and_then(|r| r.tradeoff.map(|t| (t, r.lambda))).map(|(t, used)| {
                let caption = format!(
                    "The last edit's system at layer {} ({} key{}), solved both ways for λ = 10⁻² … 10⁵.{}",
                    t.layer,
                    t.keys,
                    if t.keys == 1 { "" } else { "s" },
                    if t.null_space.is_none() {
                        " AlphaEdit's line appears after an AlphaEdit edit (or, for layers up to 2048 keys wide, always): it needs C0's eigendecomposition, minutes in a tab at larger widths."
                    } else {
                        ""
                    }
                );
                view! {
                    <p>{caption}</p>
                    <div class="columns">
                        <TradeoffChart title="memorization error ‖ŴK_E − V_E‖" pick=|p| p.memorization t=t.clone() used=used />
                        <TradeoffChart title="preservation error (RMS over K₀)" pick=|p| p.preservation t=t.clone() used=used />
                    </div>
                }
            })}
        </section>
    }
}

#[component]
fn TradeoffChart(
    title: &'static str,
    pick: fn(&pmedit_engine::edit::tradeoff::TradeoffPoint) -> f64,
    t: crate::protocol::Tradeoff,
    /// The λ the edit used (marked).
    used: f64,
) -> impl IntoView {
    let (w, h) = (340.0, 200.0);
    let all: Vec<f64> = t
        .equality
        .iter()
        .chain(&t.least_squares)
        .chain(t.null_space.iter().map(|(p, _)| p))
        .map(pick)
        .collect();
    let top = all.iter().copied().fold(0.0, f64::max);
    let lambdas: Vec<f64> = t.equality.iter().map(|p| p.lambda).collect();
    let x = Scale::log(
        (
            lambdas.first().copied().unwrap_or(1.0),
            lambdas.last().copied().unwrap_or(10.0),
        ),
        (48.0, w - 10.0),
    );
    let y = Scale::linear((0.0, top * 1.05), (h - 30.0, 16.0));
    let line = |pts: &[pmedit_engine::edit::tradeoff::TradeoffPoint]| {
        pts.iter()
            .map(|p| format!("{},{}", x.map(p.lambda), y.map(pick(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    view! {
        <svg class="chart" width=w height=h>
            <text x=w / 2.0 y="11" text-anchor="middle">{title}</text>
            <polyline class="equality" points=line(&t.equality) />
            <polyline class="least-squares" points=line(&t.least_squares) />
            {t.null_space.map(|(p, _)| view! { <line class="null-space" x1=x.map(lambdas.first().copied().unwrap_or(1.0)) x2=x.map(lambdas.last().copied().unwrap_or(10.0)) y1=y.map(pick(&p)) y2=y.map(pick(&p)) /> })}
            {x.ticks(0).into_iter().map(|v| view! { <text x=x.map(v) y=h - 16.0 text-anchor="middle">{tick_label(v)}</text> }).collect_view()}
            {y.ticks(4).into_iter().map(|v| view! { <text x="2" y=y.map(v)>{tick_label(v)}</text> }).collect_view()}
            <text x=w / 2.0 y=h - 3.0 text-anchor="middle">"λ"</text>
            <line class="used" x1=x.map(used) x2=x.map(used) y1=y.map(0.0) y2="16" />
            <text class="used" x=x.map(used) + 3.0 y=h - 36.0>{format!("this edit: λ = {}", tick_label(used))}</text>
            <text class="equality" x=w - 150.0 y="28">"— ROME/EMMET (equality)"</text>
            <text class="least-squares" x=w - 150.0 y="42">"— MEMIT (least squares)"</text>
            {t.null_space.map(|(_, rank)| view! { <text class="null-space" x=w - 150.0 y="56">{format!("⋯ AlphaEdit (null space of {rank})")}</text> })}
        </svg>
    }
}
