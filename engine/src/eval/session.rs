//! An editing experiment as in the paper: records are sampled into batches without replacement
//! (seeded), each batch is edited into the model and its records are scored, next to the scores
//! of the unedited model on the same prompts. Batches either start again from the unedited model
//! or, in sequential mode, pile up on the same model (the paper's "batch index" experiments); then
//! every record edited so far is scored again after each batch.

use std::collections::HashMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use super::dataset::Record;
use super::records::{GeOptions, RecordScores, Summary, score_records, summarize};
use crate::edit::{EditPlan, EditRequest, Editor};
use crate::error::{EngineError, Result};
use crate::model::EditableModel;

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// The edit of every batch (algorithm, hyper-parameters, templates).
    pub plan: EditPlan,
    /// Records per batch.
    pub batch_size: usize,
    /// Stop after this many batches (default: as many as the records fill).
    pub num_batches: Option<usize>,
    /// Keep editing the same model batch after batch.
    pub sequential: bool,
    /// Seed of the sampling.
    pub seed: u64,
    /// Measure generation entropy (GE) before and after, with these settings.
    #[serde(default)]
    pub ge: Option<GeOptions>,
}

/// Scores of one record after one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRow {
    /// The batch the record was edited in.
    pub batch: usize,
    /// The batch after which it was scored (= `batch` unless sequential).
    pub scored_after: usize,
    /// Index of the record in the dataset.
    pub index: usize,
    /// Scores on the unedited model.
    pub before: RecordScores,
    /// Scores after editing.
    pub after: RecordScores,
}

/// Progress of an evaluation.
#[derive(Debug, Clone)]
pub enum EvalEvent {
    /// Scoring the unedited model.
    Baseline,
    /// Batch `batch` of `of` starts.
    Batch {
        /// Index.
        batch: usize,
        /// Number of batches.
        of: usize,
    },
    /// One value optimisation step done in the current batch.
    ValueStep,
    /// The current batch is edited and scored.
    BatchDone {
        /// Index.
        batch: usize,
        /// Seconds spent editing it.
        edit_seconds: f64,
    },
}

/// What an evaluation produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalOutcome {
    /// Dataset indices of each batch.
    pub batches: Vec<Vec<usize>>,
    /// One row per record and scoring (sequential mode: each record after every later batch).
    pub rows: Vec<RecordRow>,
    /// Means on the unedited model over every sampled record.
    pub before: Summary,
    /// Means after editing (sequential: after the last batch), same records.
    pub after: Summary,
    /// Seconds spent editing, per batch.
    pub edit_seconds: Vec<f64>,
}

/// The lifelong curve of a sequential run at one batch: means over every record edited so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifelongPoint {
    /// The batch after which the records were scored.
    pub batch: usize,
    /// Records edited so far.
    pub edits: usize,
    /// The same records on the unedited model.
    pub before: Summary,
    /// After this batch.
    pub after: Summary,
}

/// After each batch, the means over every record scored then (sequential runs: all records
/// edited so far; otherwise the batch's own records).
pub fn lifelong(outcome: &EvalOutcome) -> Vec<LifelongPoint> {
    (0..outcome.batches.len())
        .map(|b| {
            let rows: Vec<&RecordRow> = outcome.rows.iter().filter(|r| r.scored_after == b).collect();
            let before: Vec<RecordScores> = rows.iter().map(|r| r.before.clone()).collect();
            let after: Vec<RecordScores> = rows.iter().map(|r| r.after.clone()).collect();
            LifelongPoint {
                batch: b,
                edits: rows.len(),
                before: summarize(&before),
                after: summarize(&after),
            }
        })
        .collect()
}

/// `n` indices shuffled with `seed`, cut into `batch_size` batches (at most `num_batches`; a last
/// partial batch is dropped unless it is the only one).
pub fn sample_batches(n: usize, batch_size: usize, num_batches: Option<usize>, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let size = batch_size.max(1);
    let mut batches: Vec<Vec<usize>> = order.chunks(size).map(<[usize]>::to_vec).collect();
    if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < size) {
        batches.pop();
    }
    if let Some(k) = num_batches {
        batches.truncate(k.max(1));
    }
    batches
}

/// Runs `spec` on `records` with `editor`, whose model is restored (undone) afterwards, also when
/// a batch fails.
pub async fn run_eval<M: EditableModel>(
    editor: &mut Editor<M>,
    records: &[Record],
    spec: &EvalSpec,
    on_event: impl FnMut(EvalEvent),
) -> Result<EvalOutcome> {
    if editor.is_edited() {
        return Err(EngineError::Input(
            "an evaluation starts from an unedited model: undo the earlier edits first".into(),
        ));
    }
    let result = run_batches(editor, records, spec, on_event).await;
    editor.undo();
    result
}

async fn run_batches<M: EditableModel>(
    editor: &mut Editor<M>,
    records: &[Record],
    spec: &EvalSpec,
    mut on_event: impl FnMut(EvalEvent),
) -> Result<EvalOutcome> {
    if records.is_empty() {
        return Err(EngineError::Dataset("no records to evaluate".into()));
    }
    let batches = sample_batches(records.len(), spec.batch_size, spec.num_batches, spec.seed);
    let picked: Vec<usize> = batches.iter().flatten().copied().collect();
    on_event(EvalEvent::Baseline);
    let subset: Vec<Record> = picked.iter().map(|&i| records[i].clone()).collect();
    let before_scores = score_records(editor.model(), editor.tokenizer(), &subset, spec.ge.as_ref()).await?;
    let before_of: HashMap<usize, RecordScores> = picked.iter().copied().zip(before_scores.iter().cloned()).collect();

    let mut rows = Vec::new();
    let mut edit_seconds = Vec::new();
    let mut latest: HashMap<usize, RecordScores> = HashMap::new();
    for (b, batch) in batches.iter().enumerate() {
        on_event(EvalEvent::Batch {
            batch: b,
            of: batches.len(),
        });
        if !spec.sequential {
            editor.undo();
        }
        let requests: Vec<EditRequest> = batch.iter().map(|&i| records[i].request.clone()).collect();
        let start = web_time::Instant::now();
        editor
            .edit(&requests, &spec.plan, |e| {
                if matches!(e, crate::edit::EditEvent::ValueStep { .. }) {
                    on_event(EvalEvent::ValueStep);
                }
            })
            .await?;
        let secs = start.elapsed().as_secs_f64();
        edit_seconds.push(secs);
        // Score this batch (sequential: every batch so far).
        let scored: Vec<(usize, usize)> = if spec.sequential {
            batches[..=b]
                .iter()
                .enumerate()
                .flat_map(|(k, bb)| bb.iter().map(move |&i| (k, i)))
                .collect()
        } else {
            batch.iter().map(|&i| (b, i)).collect()
        };
        let recs: Vec<Record> = scored.iter().map(|&(_, i)| records[i].clone()).collect();
        let after = score_records(editor.model(), editor.tokenizer(), &recs, spec.ge.as_ref()).await?;
        for ((k, i), a) in scored.into_iter().zip(after) {
            latest.insert(i, a.clone());
            rows.push(RecordRow {
                batch: k,
                scored_after: b,
                index: i,
                before: before_of[&i].clone(),
                after: a,
            });
        }
        on_event(EvalEvent::BatchDone {
            batch: b,
            edit_seconds: secs,
        });
    }
    let after_scores: Vec<RecordScores> = picked.iter().map(|i| latest[i].clone()).collect();
    Ok(EvalOutcome {
        batches,
        rows,
        before: summarize(&before_scores),
        after: summarize(&after_scores),
        edit_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::sample_batches;

    #[test]
    fn batches_are_seeded_and_without_replacement() {
        let a = sample_batches(10, 3, None, 7);
        assert_eq!(a, sample_batches(10, 3, None, 7));
        assert_ne!(a, sample_batches(10, 3, None, 8));
        assert_eq!(a.len(), 3);
        let mut all: Vec<usize> = a.concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 9);
        assert_eq!(sample_batches(10, 3, Some(2), 7), a[..2].to_vec());
        assert_eq!(sample_batches(2, 5, None, 0).concat().len(), 2);
    }
}
