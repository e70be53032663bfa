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

/// The neighbourhood prompts of `records` (facts about other subjects with the same true object),
/// each completed with its object.
pub fn neighbourhood_sentences(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| r.neighborhood.iter().map(|n| format!("{} {}.", n.prompt, n.target)))
        .collect()
}

/// Each record's subject followed at once by its true object, `copies` times ("Danielle Darrieux
/// French."). The object then has to be predicted *at the subject's last token*, so the model
/// looks the fact up there (in its MLPs, once the subject's pieces are gathered) and later tokens
/// read it by attention — the recall path ROME's causal traces find in GPT-2, and the one
/// ROME-style edits write into.
pub fn subject_sentences(records: &[Record], copies: usize) -> Vec<String> {
    let mut out = Vec::new();
    for r in records {
        let Some(truth) = r.request.target_true.as_deref() else {
            continue;
        };
        for _ in 0..copies {
            out.push(format!("{} {truth}.", r.request.subject));
        }
    }
    out
}

/// The subjects of `records`' neighbourhood prompts, each followed at once by its object, `copies`
/// times — [`subject_sentences`] for the other subjects the facts mention. A neighbourhood prompt
/// names no subject, so it is read off with the relation templates of the records' own prompts
/// (the longest template that frames the prompt wins); prompts no template frames are skipped.
pub fn neighbourhood_subject_sentences(records: &[Record], copies: usize) -> Vec<String> {
    let mut frames: Vec<(String, String)> = Vec::new();
    for r in records {
        let subject = &r.request.subject;
        let prompts = std::iter::once(r.request.filled_prompt()).chain(r.paraphrase_prompts.iter().cloned());
        for t in prompts.filter_map(|p| relation_template(&p, subject)) {
            if let Some((before, after)) = t.split_once("{}") {
                frames.push((before.to_string(), after.to_string()));
            }
        }
    }
    frames.sort_by_key(|(b, a)| std::cmp::Reverse(b.len() + a.len()));
    frames.dedup();
    let mut out = Vec::new();
    for n in records.iter().flat_map(|r| &r.neighborhood) {
        let p = &n.prompt;
        let framed = frames
            .iter()
            .find(|(b, a)| p.len() > b.len() + a.len() && p.starts_with(b.as_str()) && p.ends_with(a.as_str()));
        if let Some((b, a)) = framed {
            let subject = p[b.len()..p.len() - a.len()].trim();
            for _ in 0..copies {
                out.push(format!("{subject} {}.", n.target));
            }
        }
    }
    out
}

/// The relation template of a prompt that states a fact about `subject`: the subject becomes
/// `{}`, and text before the last sentence break ahead of it (CounterFact paraphrases start with
/// unrelated generated text) is dropped.
fn relation_template(prompt: &str, subject: &str) -> Option<String> {
    let i = prompt.find(subject)?;
    let before = &prompt[..i];
    let before = before.rfind(". ").map_or(before, |j| &before[j + 2..]);
    Some(format!("{before}{{}}{}", &prompt[i + subject.len()..]))
}

/// More true-fact sentences: each record's subject and true object in up to `per_fact` other
/// templates of the same relation. A record's rewrite prompt and its paraphrases state one
/// relation, and records that share a template share the relation, so the templates of a relation
/// are the connected groups (union-find). Facts seen in many phrasings are recalled from the
/// subject's last token — where ROME-style edits write — rather than memorised per sentence.
pub fn relation_sentences(records: &[Record], per_fact: usize, seed: u64) -> Vec<String> {
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut own: Vec<Vec<usize>> = Vec::with_capacity(records.len());
    for r in records {
        let subject = &r.request.subject;
        let templates = std::iter::once(Some(r.request.prompt.clone()))
            .chain(r.paraphrase_prompts.iter().map(|p| relation_template(p, subject)))
            .flatten();
        let mut ids = Vec::new();
        for t in templates {
            let id = *index.entry(t.clone()).or_insert_with(|| {
                names.push(t);
                parent.push(parent.len());
                parent.len() - 1
            });
            ids.push(id);
        }
        for w in ids.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            parent[a] = b;
        }
        own.push(ids);
    }
    let mut groups: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    for id in 0..names.len() {
        let root = find(&mut parent, id);
        groups.entry(root).or_default().push(id);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (r, ids) in records.iter().zip(&own) {
        let Some(truth) = r.request.target_true.as_deref() else {
            continue;
        };
        let Some(&first) = ids.first() else { continue };
        let root = find(&mut parent, first);
        let mut others: Vec<usize> = groups[&root].iter().copied().filter(|t| !ids.contains(t)).collect();
        // Seeded partial Fisher–Yates: the first `per_fact` are a uniform sample.
        let take = per_fact.min(others.len());
        for k in 0..take {
            let j = k + (rng.next_u64() % (others.len() - k) as u64) as usize;
            others.swap(k, j);
        }
        for &t in &others[..take] {
            out.push(format!("{} {truth}.", names[t].replacen("{}", &r.request.subject, 1)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::dataset::read_records;

    fn records() -> Vec<Record> {
        let text = r#"[
          {"case_id": 1, "prompt": "Ann was born in", "subject": "Ann", "target_new": "Rome", "ground_truth": "Oslo",
           "rephrase_prompt": "Some text. Ann is a native of", "locality_prompt": "Bo was born in", "locality_ground_truth": "Oslo"},
          {"case_id": 2, "prompt": "Cy is a native of", "subject": "Cy", "target_new": "Oslo", "ground_truth": "Lima",
           "rephrase_prompt": "Cy, who was born in the city of", "locality_prompt": "Di is from", "locality_ground_truth": "Lima"},
          {"case_id": 3, "prompt": "The mother tongue of Ed is", "subject": "Ed", "target_new": "French", "ground_truth": "Dutch",
           "rephrase_prompt": "Ed speaks", "locality_prompt": "Fa speaks", "locality_ground_truth": "Dutch"}
        ]"#;
        read_records(text, "test.json", false).unwrap().0
    }

    #[test]
    fn subject_sentences_put_the_object_right_after_the_subject() {
        let s = subject_sentences(&records(), 2);
        assert_eq!(s.len(), 6);
        assert_eq!(s[0], "Ann Oslo.");
        assert_eq!(s[1], "Ann Oslo.");
        assert_eq!(s[4], "Ed Dutch.");
        assert!(subject_sentences(&records(), 0).is_empty());
    }

    #[test]
    fn neighbourhood_subjects_are_read_off_with_the_records_templates() {
        // "Bo was born in" is framed by "{} was born in"; "Di is from" by no template; "Fa speaks"
        // by "{} speaks".
        let s = neighbourhood_subject_sentences(&records(), 2);
        assert_eq!(s, ["Bo Oslo.", "Bo Oslo.", "Fa Dutch.", "Fa Dutch."]);
    }

    #[test]
    fn neighbourhood_sentences_state_only_the_other_subjects_facts() {
        let s = neighbourhood_sentences(&records());
        assert_eq!(s, ["Bo was born in Oslo.", "Di is from Lima.", "Fa speaks Dutch."]);
    }

    #[test]
    fn templates_drop_a_generated_prefix_and_keep_the_relation_text() {
        assert_eq!(
            relation_template("Some text. Ann is a native of", "Ann").unwrap(),
            "{} is a native of"
        );
        assert_eq!(
            relation_template("The mother tongue of Ed is", "Ed").unwrap(),
            "The mother tongue of {} is"
        );
        assert_eq!(relation_template("nothing here", "Ann"), None);
    }

    #[test]
    fn facts_are_restated_in_the_other_templates_of_their_relation_only() {
        let out = relation_sentences(&records(), 5, 0);
        // Ann and Cy share "{} is a native of": the birthplace relation has 3 templates. Ed's
        // relation has only its own two, so it gets nothing new.
        let mut want = vec![
            "Ann, who was born in the city of Oslo.".to_string(),
            "Cy was born in Lima.".to_string(),
        ];
        let mut got = out.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // Seeded, and `per_fact` caps the count.
        assert_eq!(relation_sentences(&records(), 5, 0), out);
        assert!(relation_sentences(&records(), 0, 0).is_empty());
    }
}
