//! The sweep panel: the paper's teaching experiments in the page. Batches of held-out
//! CounterFact facts are edited into the unedited model, scored (ES/PS/NS/S, docs/MATH.md §9) and
//! undone, one grid point at a time, and drawn against the batch size (as the paper's Figure 4)
//! or against λ (as its Figure 9), one line per algorithm.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{DEMO, Page, fetch_bytes, layer_list};
use crate::form::{parse_batch_sizes, parse_layers, parse_positive, parse_positive_list};
use crate::protocol::{Algorithm, Request, Scores, SweepPoint, SweepSettings};
use crate::scale::{Scale, duration_label, tick_label};

/// What a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepAxis {
    /// Facts edited together (the paper's Figure 4).
    BatchSize,
    /// The preservation weight λ at one batch size (the paper's Figure 9).
    Lambda,
}

/// The batch algorithms a sweep compares (ROME and r-ROME edit one fact at a time).
const ALGORITHMS: [Algorithm; 3] = [Algorithm::Memit, Algorithm::Emmet, Algorithm::AlphaEdit];

/// The largest batch offered (the paper's teaching range, 1…64).
const MAX_BATCH: usize = 64;

/// Reads one score from [`Scores`].
type Pick = fn(&Scores) -> f64;

/// The four scores drawn.
const METRICS: [(&str, Pick); 4] = [("ES", |s| s.es), ("PS", |s| s.ps), ("NS", |s| s.ns), ("S", |s| s.s)];

/// A grid point's position on the sweep's axis.
fn x_of(axis: SweepAxis, p: &SweepPoint) -> f64 {
    match axis {
        SweepAxis::BatchSize => p.batch_size as f64,
        SweepAxis::Lambda => p.lambda,
    }
}

#[component]
pub fn SweepPanel(page: Page) -> impl IntoView {
    let batches = RwSignal::new("1, 2, 4, 8, 16".to_string());
    let lambdas = RwSignal::new("10, 100, 1000, 10000, 100000".to_string());
    let lambda_batch = RwSignal::new("8".to_string());
    let steps = RwSignal::new("25".to_string());
    let chosen = RwSignal::new([true; ALGORITHMS.len()]);
    let run = move |axis: SweepAxis| {
        let Some(info) = page.info.get_untracked() else { return };
        let settings = (|| -> Result<SweepSettings, String> {
            if page.edits.get_untracked() > 0 {
                return Err("the sweep starts from the unedited model: undo the edit first".into());
            }
            let algorithms: Vec<Algorithm> = ALGORITHMS
                .iter()
                .zip(chosen.get_untracked())
                .filter(|&(a, on)| on && (axis == SweepAxis::BatchSize || a.uses_lambda()))
                .map(|(a, _)| *a)
                .collect();
            if algorithms.is_empty() {
                return Err(match axis {
                    SweepAxis::BatchSize => "choose at least one algorithm to compare".into(),
                    SweepAxis::Lambda => "choose MEMIT or EMMET: λ plays no part in AlphaEdit".into(),
                });
            }
            let (batch_sizes, lambdas) = match axis {
                SweepAxis::BatchSize => (parse_batch_sizes(&batches.get_untracked(), MAX_BATCH)?, Vec::new()),
                SweepAxis::Lambda => (
                    parse_batch_sizes(&lambda_batch.get_untracked(), MAX_BATCH)?,
                    parse_positive_list(&lambdas.get_untracked(), "λ")?,
                ),
            };
            Ok(SweepSettings {
                dataset: Vec::new(),
                algorithms,
                batch_sizes,
                lambdas,
                layers: parse_layers(&page.layers.get_untracked(), info.n_layer)?,
                steps: parse_positive(&steps.get_untracked(), "steps")?.map(|s| s as usize),
            })
        })();
        match settings {
            Err(e) => page.error.set(Some(e)),
            Ok(mut settings) => {
                // The last sweep's points and "sweep done" go at once, not after the records arrive.
                page.sweep.set(Vec::new());
                page.sweep_axis.set(axis);
                page.status.set("sweep: fetching the held-out facts…".into());
                spawn_local(async move {
                    match fetch_bytes(&format!("{DEMO}/heldout.json")).await {
                        Ok(bytes) => {
                            settings.dataset = bytes;
                            page.status.set("sweep: starting…".into());
                            page.send(Request::Sweep(settings));
                        }
                        Err(e) => page.error.set(Some(e)),
                    }
                })
            }
        }
    };
    let disabled = move || page.busy.get() || page.info.get().is_none();
    view! {
        <section class="panel" id="sweep-panel">
            <h2>"Experiments: how edits scale"</h2>
            <p>"Edits a batch of the demo model's held-out CounterFact facts at each point (from the unedited model, undone afterwards) and scores it: how efficacy (ES), paraphrases (PS) and other subjects (NS) hold up as more facts are written at once (the paper's Figure 4), and as the preservation weight λ grows (its Figure 9). Layers come from the edit form above (the preset when empty); keys and values from the bare prompt."</p>
            <div class="settings">
                <fieldset>
                    <legend>"algorithms"</legend>
                    {ALGORITHMS.iter().enumerate().map(|(i, a)| view! {
                        <label class=format!("algo-{}", a.name())>
                            <input type="checkbox" class="sweep-algo" value=a.name() prop:checked=move || chosen.get()[i]
                                on:change=move |ev| { let on = event_target_checked(&ev); chosen.update(|c| c[i] = on); } />
                            {a.display_name()}" "
                        </label>
                    }).collect_view()}
                </fieldset>
                <label>"value steps " <input id="sweep-steps" size="4" prop:value=steps on:input=move |ev| steps.set(event_target_value(&ev)) /></label>
            </div>
            <p>
                <label>"batch sizes " <input id="sweep-batches" prop:value=batches on:input=move |ev| batches.set(event_target_value(&ev)) /></label>
                <button id="sweep-batch" on:click=move |_| run(SweepAxis::BatchSize) disabled=disabled>"Run: metrics vs batch size"</button>
            </p>
            <p>
                <label>"λ values " <input id="sweep-lambdas" prop:value=lambdas on:input=move |ev| lambdas.set(event_target_value(&ev)) /></label>
                <label>" at batch size " <input id="sweep-lambda-batch" size="4" prop:value=lambda_batch on:input=move |ev| lambda_batch.set(event_target_value(&ev)) /></label>
                <button id="sweep-lambda" on:click=move |_| run(SweepAxis::Lambda) disabled=disabled>"Run: metrics vs λ"</button>
            </p>
            {move || {
                let points = page.sweep.get();
                let axis = page.sweep_axis.get();
                let mut algorithms: Vec<Algorithm> = Vec::new();
                for p in &points {
                    if !algorithms.contains(&p.algorithm) {
                        algorithms.push(p.algorithm);
                    }
                }
                (!points.is_empty()).then(|| view! {
                    <p class="sweep-legend">
                        {algorithms.iter().map(|a| view! {
                            <span class=format!("swatch {}", a.name())></span>{format!("{} after the edit ", a.display_name())}
                        }).collect_view()}
                        <span class="swatch unedited"></span>"the same facts, unedited (scores ×100)"
                    </p>
                    <div class="sweep-charts">
                        {METRICS.iter().map(|&(name, pick)| view! {
                            <SweepChart metric=name pick=pick points=points.clone() axis=axis />
                        }).collect_view()}
                    </div>
                    <SweepTable points=points.clone() />
                })
            }}
        </section>
    }
}

/// One metric against the sweep's axis: a line per algorithm after the edit, and the unedited
/// model's score of the same facts (grey, dashed). The x positions are the grid's values, evenly
/// spaced (batch sizes and λ values are both roughly geometric).
#[component]
fn SweepChart(metric: &'static str, pick: Pick, points: Vec<SweepPoint>, axis: SweepAxis) -> impl IntoView {
    let (w, h) = (250.0, 176.0);
    let mut xs: Vec<f64> = points.iter().map(|p| x_of(axis, p)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let slot = |x: f64| xs.iter().position(|&v| v == x).unwrap_or(0) as f64;
    let sx = Scale::linear((0.0, xs.len().saturating_sub(1) as f64), (36.0, w - 12.0));
    let sy = Scale::linear((0.0, 100.0), (h - 44.0, 14.0));
    let mut algorithms: Vec<Algorithm> = Vec::new();
    for p in &points {
        if !algorithms.contains(&p.algorithm) {
            algorithms.push(p.algorithm);
        }
    }
    let series = |a: Algorithm| {
        let mut pts: Vec<&SweepPoint> = points.iter().filter(|p| p.algorithm == a).collect();
        pts.sort_by(|p, q| x_of(axis, p).total_cmp(&x_of(axis, q)));
        pts
    };
    let shown = |v: f64| if v.is_finite() { format!("{v:.0}") } else { "n/a".into() };
    let label = format!(
        "{metric} against {}: {}",
        if axis == SweepAxis::BatchSize {
            "batch size"
        } else {
            "λ"
        },
        algorithms
            .iter()
            .map(|&a| format!(
                "{} {}",
                a.display_name(),
                series(a)
                    .iter()
                    .map(|p| format!("{} at {}", shown(pick(&p.after)), tick_label(x_of(axis, p))))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let line = |pts: &[&SweepPoint], score: &dyn Fn(&SweepPoint) -> f64| {
        pts.iter()
            .filter(|p| score(p).is_finite())
            .map(|p| format!("{:.1},{:.1}", sx.map(slot(x_of(axis, p))), sy.map(score(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let unedited = algorithms.first().map(|&a| line(&series(a), &|p| pick(&p.before)));
    view! {
        <svg class="chart sweep" data-metric=metric width=w height=h role="img" aria-label=label>
            <text x=w / 2.0 y="10" text-anchor="middle" class="chart-title">{metric}</text>
            {sy.ticks(4).into_iter().map(|t| view! { <text x="4" y=sy.map(t) + 4.0>{tick_label(t)}</text> }).collect_view()}
            {xs.iter().enumerate().map(|(i, &x)| view! {
                <text x=sx.map(i as f64) y=h - 30.0 text-anchor="middle">{tick_label(x)}</text>
            }).collect_view()}
            <text x=w / 2.0 y=h - 18.0 text-anchor="middle">{if axis == SweepAxis::BatchSize { "facts edited together" } else { "λ (preservation weight)" }}</text>
            {unedited.map(|d| view! { <polyline class="unedited" points=d /> })}
            {algorithms.iter().map(|&a| {
                let pts = series(a);
                view! {
                    <polyline class=format!("sweep-line {}", a.name()) points=line(&pts, &|p| pick(&p.after)) />
                    {pts.iter().filter(|p| pick(&p.after).is_finite()).map(|p| view! {
                        <circle class=format!("sweep-dot {}", a.name()) cx=sx.map(slot(x_of(axis, p))) cy=sy.map(pick(&p.after)) r="3">
                            <title>{format!("{} at {}: {metric} {}", a.display_name(), tick_label(x_of(axis, p)), shown(pick(&p.after)))}</title>
                        </circle>
                    }).collect_view()}
                }
            }).collect_view()}
        </svg>
    }
}

/// The sweep's points as a table (also the charts' text alternative).
#[component]
fn SweepTable(points: Vec<SweepPoint>) -> impl IntoView {
    let shown = |v: f64| if v.is_finite() { format!("{v:.0}") } else { "n/a".into() };
    let pair = move |b: f64, a: f64| format!("{} → {}", shown(b), shown(a));
    view! {
        <table id="sweep-table" class="per-fact">
            <caption>"Each row: one batch edited into the unedited model (scores ×100, before → after)"</caption>
            <tr><th>"algorithm"</th><th>"facts"</th><th>"λ"</th><th>"layers"</th><th>"ES"</th><th>"PS"</th><th>"NS"</th><th>"S"</th><th>"edit time"</th></tr>
            {points.into_iter().map(|p| view! {
                <tr data-algo=p.algorithm.name()>
                    <td>{p.algorithm.display_name()}</td>
                    <td>{p.batch_size}</td>
                    <td>{if p.algorithm.uses_lambda() { tick_label(p.lambda) } else { "—".into() }}</td>
                    <td>{layer_list(&p.layers)}</td>
                    <td>{pair(p.before.es, p.after.es)}</td>
                    <td>{pair(p.before.ps, p.after.ps)}</td>
                    <td>{pair(p.before.ns, p.after.ns)}</td>
                    <td>{pair(p.before.s, p.after.s)}</td>
                    <td>{duration_label(p.edit_ms)}</td>
                </tr>
            }).collect_view()}
        </table>
    }
}
