//! Scoring dataset records on a model (before or after an edit): every prompt of every record in
//! a few batched passes, then the per-record metrics of docs/MATH.md §9 and their means.

use serde::{Deserialize, Serialize};

use super::dataset::{Benchmark, Record};
use super::metrics::{
    CounterfactMetrics, PairNll, counterfact_metrics, generation_entropy, harmonic_mean, token_accuracy,
};
use super::score::{SCORE_BATCH, score_targets};
use crate::error::{EngineError, Result};
use crate::generate::{GenerateOptions, generate};
use crate::model::EditableModel;
use crate::tokenizer::Gpt2Tokenizer;

/// zsRE scores ×100.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ZsreMetrics {
    /// Token accuracy of the new answer after the question.
    pub efficacy: f64,
    /// The same after the rephrased questions.
    pub generalization: f64,
    /// Token accuracy of `loc_ans` after the unrelated question.
    pub specificity: f64,
}

/// Scores of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordScores {
    /// The record's id.
    pub case_id: u64,
    /// Subject of the edit.
    pub subject: String,
    /// NLL pairs after the rewrite prompt.
    pub rewrite: Vec<PairNll>,
    /// After each paraphrase.
    pub paraphrase: Vec<PairNll>,
    /// After each neighbourhood prompt.
    pub neighborhood: Vec<PairNll>,
    /// CounterFact metrics of this record.
    pub counterfact: Option<CounterfactMetrics>,
    /// zsRE metrics of this record.
    pub zsre: Option<ZsreMetrics>,
}

/// Means over records (S is the harmonic mean of the mean ES, PS and NS, as in the paper).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Records scored.
    pub records: usize,
    /// Mean CounterFact metrics, when any record is CounterFact.
    pub counterfact: Option<CounterfactMetrics>,
    /// Mean zsRE metrics, when any record is zsRE.
    pub zsre: Option<ZsreMetrics>,
}

/// How generation entropy (GE) is measured: texts of `tokens` tokens (prompt included, capped by
/// the model's context) sampled top-k 5 from each generation prompt, as in docs/MATH.md §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeOptions {
    /// Length of each sampled text in tokens, prompt included (the paper: 100).
    pub tokens: usize,
    /// Sampling seed (each record and prompt derives its own from it, so before/after match).
    pub seed: u64,
}

impl Default for GeOptions {
    fn default() -> Self {
        Self { tokens: 100, seed: 0 }
    }
}

/// GE of one record: the mean [`generation_entropy`] of texts sampled from its generation prompts,
/// or from its rewrite prompt when it has none (the EasyEdit format; docs/MATH.md §9).
pub async fn record_generation_entropy(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    record: &Record,
    ge: &GeOptions,
) -> Result<f64> {
    let prompts: Vec<String> = if record.generation_prompts.is_empty() {
        vec![record.request.filled_prompt()]
    } else {
        record.generation_prompts.clone()
    };
    let mut total = 0.0;
    for (k, prompt) in prompts.iter().enumerate() {
        let prompt_len = tokenizer.encode(prompt)?.len();
        let opts = GenerateOptions {
            max_new_tokens: ge.tokens.saturating_sub(prompt_len),
            top_k: 5,
            temperature: 1.0,
            seed: ge.seed ^ record.case_id.rotate_left(17) ^ (k as u64).rotate_left(47),
            stop_at_eos: false,
        };
        let text = generate(model, tokenizer, prompt, &opts).await?;
        total += generation_entropy(&format!("{prompt}{text}"));
    }
    Ok(total / prompts.len() as f64)
}

/// Scores `records` on `model`; with `ge`, CounterFact records also get their generation entropy.
pub async fn score_records(
    model: &impl EditableModel,
    tokenizer: &Gpt2Tokenizer,
    records: &[Record],
    ge: Option<&GeOptions>,
) -> Result<Vec<RecordScores>> {
    // Every (prompt, target) pair needed, in one list; `slots` remembers where each record's are.
    let mut pairs: Vec<(String, String)> = Vec::new();
    struct Slots {
        rewrite: usize,
        paraphrase: usize,
        neighborhood: usize,
    }
    let mut slots = Vec::with_capacity(records.len());
    for r in records {
        let truth =
            r.request.target_true.clone().ok_or_else(|| {
                EngineError::Dataset(format!("record {} has no true target to compare with", r.case_id))
            })?;
        let new = r.request.target_new.clone();
        let rewrite = pairs.len();
        for p in std::iter::once(r.request.filled_prompt()).chain(r.paraphrase_prompts.iter().cloned()) {
            pairs.push((p.clone(), new.clone()));
            pairs.push((p, truth.clone()));
        }
        let neighborhood = pairs.len();
        for n in &r.neighborhood {
            pairs.push((n.prompt.clone(), new.clone()));
            pairs.push((n.prompt.clone(), n.target.clone()));
        }
        slots.push(Slots {
            rewrite,
            paraphrase: rewrite + 2,
            neighborhood,
        });
    }
    let scores = score_targets(model, tokenizer, &pairs, SCORE_BATCH).await?;
    let pair = |i: usize| PairNll {
        new: scores[i].nll,
        true_: scores[i + 1].nll,
    };
    let acc = |i: usize| token_accuracy(&scores[i].argmax, &scores[i].target) * 100.0;
    let mut entropies = Vec::with_capacity(records.len());
    for r in records {
        entropies.push(match (ge, r.benchmark) {
            (Some(ge), Benchmark::CounterFact) => Some(record_generation_entropy(model, tokenizer, r, ge).await?),
            _ => None,
        });
    }
    Ok(records
        .iter()
        .zip(slots)
        .zip(entropies)
        .map(|((r, s), entropy)| {
            let rewrite = vec![pair(s.rewrite)];
            let paraphrase: Vec<PairNll> = (s.paraphrase..s.neighborhood).step_by(2).map(pair).collect();
            let neighborhood: Vec<PairNll> = (0..r.neighborhood.len())
                .map(|k| pair(s.neighborhood + 2 * k))
                .collect();
            let (counterfact, zsre) = match r.benchmark {
                Benchmark::CounterFact => (
                    Some(CounterfactMetrics {
                        ge: entropy,
                        ..counterfact_metrics(&rewrite, &paraphrase, &neighborhood)
                    }),
                    None,
                ),
                Benchmark::Zsre => {
                    let mean = |xs: Vec<f64>| {
                        if xs.is_empty() {
                            f64::NAN
                        } else {
                            xs.iter().sum::<f64>() / xs.len() as f64
                        }
                    };
                    (
                        None,
                        Some(ZsreMetrics {
                            efficacy: acc(s.rewrite),
                            generalization: mean((s.paraphrase..s.neighborhood).step_by(2).map(acc).collect()),
                            specificity: mean(
                                (0..r.neighborhood.len())
                                    .map(|k| acc(s.neighborhood + 2 * k + 1))
                                    .collect(),
                            ),
                        }),
                    )
                }
            };
            RecordScores {
                case_id: r.case_id,
                subject: r.request.subject.clone(),
                rewrite,
                paraphrase,
                neighborhood,
                counterfact,
                zsre,
            }
        })
        .collect())
}

/// Means of per-record scores (NaN entries — a record without paraphrases — are left out).
pub fn summarize(scores: &[RecordScores]) -> Summary {
    fn mean(xs: impl Iterator<Item = f64>) -> f64 {
        let v: Vec<f64> = xs.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
    let cf: Vec<&CounterfactMetrics> = scores.iter().filter_map(|s| s.counterfact.as_ref()).collect();
    let zs: Vec<&ZsreMetrics> = scores.iter().filter_map(|s| s.zsre.as_ref()).collect();
    let counterfact = (!cf.is_empty()).then(|| {
        let m = |f: fn(&CounterfactMetrics) -> f64| mean(cf.iter().map(|c| f(c)));
        let (es, ps, ns) = (m(|c| c.es), m(|c| c.ps), m(|c| c.ns));
        CounterfactMetrics {
            es,
            em: m(|c| c.em),
            ps,
            pm: m(|c| c.pm),
            ns,
            nm: m(|c| c.nm),
            s: harmonic_mean(&[es, ps, ns].into_iter().filter(|x| x.is_finite()).collect::<Vec<_>>()),
            ge: {
                let g: Vec<f64> = cf.iter().filter_map(|c| c.ge).collect();
                (!g.is_empty()).then(|| mean(g.into_iter()))
            },
        }
    });
    let zsre = (!zs.is_empty()).then(|| ZsreMetrics {
        efficacy: mean(zs.iter().map(|z| z.efficacy)),
        generalization: mean(zs.iter().map(|z| z.generalization)),
        specificity: mean(zs.iter().map(|z| z.specificity)),
    });
    Summary {
        records: scores.len(),
        counterfact,
        zsre,
    }
}
