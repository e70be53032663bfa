//! Training text for the demo model and seeded batches of it.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::eval::dataset::Record;

/// The true facts of `records` as sentences: the rewrite prompt, every paraphrase and every
/// neighbourhood prompt, each completed with its true object.
pub fn fact_sentences(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    for r in records {
        let Some(truth) = r.request.target_true.as_deref() else {
            continue;
        };
        out.push(format!("{} {truth}.", r.request.filled_prompt()));
        for p in &r.paraphrase_prompts {
            out.push(format!("{p} {truth}."));
        }
        for n in &r.neighborhood {
            out.push(format!("{} {}.", n.prompt, n.target));
        }
    }
    out
}

/// Lines of running text worth training on (wikitext: no headings, no blank or short lines).
pub fn text_lines(text: &str, max_bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for line in text.lines().map(str::trim) {
        if line.len() < 40 || line.starts_with('=') {
            continue;
        }
        total += line.len();
        if total > max_bytes {
            break;
        }
        out.push(line.to_string());
    }
    out
}

/// Draws rows of `ctx` tokens: with probability `fact_fraction` a row of whole facts (each
/// followed by end-of-text, the first at position 0 so prompts work without a prefix), else a
/// window of the running text.
pub struct Batcher {
    facts: Vec<Vec<u32>>,
    text: Vec<u32>,
    ctx: usize,
    fact_fraction: f64,
    rng: ChaCha8Rng,
}

impl Batcher {
    /// A batcher over tokenized `facts` (each ending in end-of-text) and `text`.
    pub fn new(facts: Vec<Vec<u32>>, text: Vec<u32>, ctx: usize, fact_fraction: f64, seed: u64) -> Self {
        Self {
            facts,
            text,
            ctx,
            fact_fraction,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn index(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    /// The next batch of `rows` rows.
    pub fn next_batch(&mut self, rows: usize) -> Vec<Vec<u32>> {
        (0..rows)
            .map(|_| {
                let use_facts =
                    self.text.len() <= self.ctx || (!self.facts.is_empty() && self.uniform() < self.fact_fraction);
                if use_facts {
                    let mut row = Vec::with_capacity(self.ctx + 16);
                    while row.len() < self.ctx {
                        let i = self.index(self.facts.len());
                        row.extend_from_slice(&self.facts[i]);
                    }
                    row.truncate(self.ctx);
                    row
                } else {
                    let start = self.index(self.text.len() - self.ctx);
                    self.text[start..start + self.ctx].to_vec()
                }
            })
            .collect()
    }
}
