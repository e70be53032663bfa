//! CounterFact and zsRE metrics (docs/MATH.md §9), as pure functions of per-prompt scores so
//! they can be checked by hand. Scores come from teacher-forced mean per-token NLL of " target".

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Mean per-token NLLs of the new and the true object after one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairNll {
    /// NLL of `target_new`.
    pub new: f64,
    /// NLL of `target_true`.
    pub true_: f64,
}

impl PairNll {
    /// P(new) = exp(−NLL_new).
    pub fn p_new(&self) -> f64 {
        (-self.new).exp()
    }
    /// P(true) = exp(−NLL_true).
    pub fn p_true(&self) -> f64 {
        (-self.true_).exp()
    }
}

/// CounterFact scores ×100 (GE ×100 as well).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CounterfactMetrics {
    /// Efficacy score: mean[P(new) > P(true)] on rewrite prompts.
    pub es: f64,
    /// Efficacy magnitude: mean[P(new) − P(true)].
    pub em: f64,
    /// Paraphrase score.
    pub ps: f64,
    /// Paraphrase magnitude.
    pub pm: f64,
    /// Neighbourhood score: mean[P(true) > P(new)] on neighbourhood prompts.
    pub ns: f64,
    /// Neighbourhood magnitude: mean[P(true) − P(new)].
    pub nm: f64,
    /// Harmonic mean of ES, PS, NS.
    pub s: f64,
    /// Generation entropy (fluency, [`generation_entropy`]) of texts sampled from the generation
    /// prompts; `None` when generation was not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<f64>,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Harmonic mean (0 when any value is 0).
pub fn harmonic_mean(xs: &[f64]) -> f64 {
    if xs.iter().any(|&x| x <= 0.0) {
        return 0.0;
    }
    xs.len() as f64 / xs.iter().map(|x| 1.0 / x).sum::<f64>()
}

/// ES/EM, PS/PM, NS/NM and S from per-prompt NLL pairs.
pub fn counterfact_metrics(
    rewrite: &[PairNll],
    paraphrase: &[PairNll],
    neighbourhood: &[PairNll],
) -> CounterfactMetrics {
    let score = |xs: &[PairNll], new_wins: bool| {
        mean(xs.iter().map(|p| ((p.p_new() > p.p_true()) == new_wins) as u8 as f64)) * 100.0
    };
    let magnitude = |xs: &[PairNll], sign: f64| mean(xs.iter().map(|p| sign * (p.p_new() - p.p_true()))) * 100.0;
    let (es, ps, ns) = (
        score(rewrite, true),
        score(paraphrase, true),
        score(neighbourhood, false),
    );
    CounterfactMetrics {
        es,
        em: magnitude(rewrite, 1.0),
        ps,
        pm: magnitude(paraphrase, 1.0),
        ns,
        nm: magnitude(neighbourhood, -1.0),
        s: harmonic_mean(&[es, ps, ns]),
        ge: None,
    }
}

/// Words of a text for n-gram statistics: runs of alphanumerics, and each other non-space
/// character on its own (close to NLTK's word tokenizer for generated English).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '\'' {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Entropy in bits of the n-gram frequency distribution of `words`.
pub fn ngram_entropy(words: &[String], n: usize) -> f64 {
    if words.len() < n || n == 0 {
        return 0.0;
    }
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    for w in words.windows(n) {
        *counts.entry(w).or_default() += 1;
    }
    let total = (words.len() + 1 - n) as f64;
    // Summed in a fixed order (the map's is random), so the same text gives the same bits.
    let mut c: Vec<usize> = counts.into_values().collect();
    c.sort_unstable();
    c.into_iter().map(|c| c as f64 / total).map(|p| -p * p.log2()).sum()
}

/// Generation entropy of one text: mean of (2/3)·H(bigrams) and (4/3)·H(trigrams), ×100.
pub fn generation_entropy(text: &str) -> f64 {
    let w = words(text);
    (2.0 / 3.0 * ngram_entropy(&w, 2) + 4.0 / 3.0 * ngram_entropy(&w, 3)) / 2.0 * 100.0
}

/// zsRE token accuracy: fraction of target tokens that are the teacher-forced argmax.
pub fn token_accuracy(argmax: &[u32], target: &[u32]) -> f64 {
    if target.is_empty() {
        return f64::NAN;
    }
    argmax.iter().zip(target).filter(|(a, t)| a == t).count() as f64 / target.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p_new: f64, p_true: f64) -> PairNll {
        PairNll {
            new: -p_new.ln(),
            true_: -p_true.ln(),
        }
    }

    #[test]
    fn counterfact_scores_by_hand() {
        // Rewrite: new wins 3 of 4; magnitudes 0.5, 0.2, 0.1, −0.4 → mean 0.1.
        let rewrite = [pair(0.6, 0.1), pair(0.3, 0.1), pair(0.2, 0.1), pair(0.1, 0.5)];
        // Paraphrase: new wins 1 of 2; magnitudes 0.4, −0.2 → 0.1.
        let para = [pair(0.5, 0.1), pair(0.1, 0.3)];
        // Neighbourhood: true wins 4 of 5; magnitudes (true − new) 0.4, 0.3, 0.2, 0.1, −0.5 → 0.1.
        let neigh = [
            pair(0.1, 0.5),
            pair(0.1, 0.4),
            pair(0.1, 0.3),
            pair(0.1, 0.2),
            pair(0.6, 0.1),
        ];
        let m = counterfact_metrics(&rewrite, &para, &neigh);
        assert!((m.es - 75.0).abs() < 1e-9 && (m.ps - 50.0).abs() < 1e-9 && (m.ns - 80.0).abs() < 1e-9);
        assert!((m.em - 10.0).abs() < 1e-9 && (m.pm - 10.0).abs() < 1e-9 && (m.nm - 10.0).abs() < 1e-9);
        // S = 3 / (1/75 + 1/50 + 1/80) = 3 / 0.045833… = 65.4545…
        assert!((m.s - 3.0 / (1.0 / 75.0 + 1.0 / 50.0 + 1.0 / 80.0)).abs() < 1e-9);
        assert!((m.s - 65.454_545_454_5).abs() < 1e-6);
        assert_eq!(harmonic_mean(&[0.0, 50.0]), 0.0);
    }

    #[test]
    fn entropy_by_hand() {
        // "a b a b a": bigrams ab, ba, ab, ba → p = ½, ½ → 1 bit; trigrams aba, bab, aba → p = ⅔, ⅓.
        let w = words("a b a b a");
        assert_eq!(w, vec!["a", "b", "a", "b", "a"]);
        assert!((ngram_entropy(&w, 2) - 1.0).abs() < 1e-12);
        let h3 = -(2.0f64 / 3.0) * (2.0f64 / 3.0).log2() - (1.0 / 3.0) * (1.0f64 / 3.0).log2();
        assert!((ngram_entropy(&w, 3) - h3).abs() < 1e-12);
        let ge = (2.0 / 3.0 * 1.0 + 4.0 / 3.0 * h3) / 2.0 * 100.0;
        assert!((generation_entropy("a b a b a") - ge).abs() < 1e-9);
        // All-distinct words: 4 bigrams of 5 words → log2 4 = 2 bits.
        assert!((ngram_entropy(&words("one two three four five"), 2) - 2.0).abs() < 1e-12);
        assert_eq!(words("Paris, France."), vec!["Paris", ",", "France", "."]);
    }

    #[test]
    fn token_accuracy_by_hand() {
        assert_eq!(token_accuracy(&[1, 2, 3, 4], &[1, 9, 3, 4]), 0.75);
        assert!(token_accuracy(&[], &[]).is_nan());
    }
}
