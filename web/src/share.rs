//! The page's state in its address, so a teacher can share a link: the model's URL, the facts,
//! the algorithm, layers and λ — `?model=…&subject=…&prompt=…&target=…&algo=…&layers=…&lambda=…`,
//! one subject/prompt/target triple per fact, in order. `backend=cpu` is kept as it came.

use crate::form::FactRow;

/// What a shared link carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedState {
    /// A model directory served over HTTP (absent: the demo model).
    pub model: Option<String>,
    /// The facts of the form.
    pub facts: Vec<FactRow>,
    /// The algorithm (`rome`, `memit`, …).
    pub algo: Option<String>,
    /// The layers field as typed (`17`, `13-17`).
    pub layers: Option<String>,
    /// λ as typed.
    pub lambda: Option<String>,
    /// `cpu` to skip WebGPU.
    pub backend: Option<String>,
}

impl SharedState {
    /// Reads a query string (`?a=b&…`, the leading `?` optional). Unknown keys are ignored;
    /// facts are the subject/prompt/target triples that are complete.
    pub fn from_query(query: &str) -> Self {
        let mut s = Self::default();
        let (mut subjects, mut prompts, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
            let v = v.into_owned();
            match &*k {
                "model" => s.model = Some(v),
                "subject" => subjects.push(v),
                "prompt" => prompts.push(v),
                "target" => targets.push(v),
                "algo" => s.algo = Some(v),
                "layers" => s.layers = Some(v),
                "lambda" => s.lambda = Some(v),
                "backend" => s.backend = Some(v),
                _ => {}
            }
        }
        s.facts = subjects
            .into_iter()
            .zip(prompts)
            .zip(targets)
            .map(|((subject, prompt), target)| FactRow {
                subject,
                prompt,
                target,
                record: None,
            })
            .collect();
        s
    }

    /// The query string (without `?`) that [`from_query`](Self::from_query) reads back; empty
    /// fields are left out.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        if let Some(b) = given(&self.backend) {
            q.append_pair("backend", &b);
        }
        if let Some(m) = given(&self.model) {
            q.append_pair("model", &m);
        }
        for f in &self.facts {
            q.append_pair("subject", &f.subject);
            q.append_pair("prompt", &f.prompt);
            q.append_pair("target", &f.target);
        }
        for (k, v) in [("algo", &self.algo), ("layers", &self.layers), ("lambda", &self.lambda)] {
            if let Some(v) = given(v) {
                q.append_pair(k, &v);
            }
        }
        q.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_state_round_trips_through_its_query() {
        let s = SharedState {
            model: Some("https://example.org/models/gpt2 xl/".into()),
            facts: vec![
                FactRow {
                    subject: "Danielle Darrieux".into(),
                    prompt: "The mother tongue of {} is".into(),
                    target: "English & French?".into(),
                    record: None,
                },
                FactRow {
                    subject: "Zürich".into(),
                    prompt: "{} is in".into(),
                    target: "Spain".into(),
                    record: None,
                },
            ],
            algo: Some("memit".into()),
            layers: Some("13-17".into()),
            lambda: Some("15000".into()),
            backend: Some("cpu".into()),
        };
        let q = s.to_query();
        assert!(q.starts_with("backend=cpu&model=https%3A%2F%2F"), "{q}");
        assert_eq!(SharedState::from_query(&format!("?{q}")), s);
    }

    #[test]
    fn empty_fields_and_strangers_are_left_out() {
        let s = SharedState {
            layers: Some(" ".into()),
            ..Default::default()
        };
        assert_eq!(s.to_query(), "");
        let r = SharedState::from_query("?utm=x&subject=A&prompt={}%20is&target=B&subject=C");
        assert_eq!(r.facts.len(), 1, "the incomplete second fact is dropped");
        assert_eq!(r.facts[0].prompt, "{} is");
        assert_eq!(SharedState::from_query(""), SharedState::default());
    }
}
