//! Edit requests: "make the model say `target_new` after `prompt` filled with `subject`".
//!
//! Accepted JSON shapes (one object, an array, or JSON lines):
//! - pmedit's own: `{"prompt": "The mother tongue of {} is", "subject": "…", "target_new": "English"}`;
//! - ROME/MEMIT's CounterFact: `{"requested_rewrite": {"prompt", "subject", "target_new": {"str"}, "target_true": {"str"}}, …}`;
//! - EasyEdit's CounterFact: `{"prompt": "The mother tongue of Danielle Darrieux is", "subject", "target_new", "ground_truth"}`
//!   (the subject appears literally in the prompt).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EngineError, Result};

/// One fact to write into the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditRequest {
    /// The prompt with `{}` where the subject goes.
    pub prompt: String,
    /// The subject.
    pub subject: String,
    /// The new object (a leading space is added when tokenizing).
    pub target_new: String,
    /// The current (true) object, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_true: Option<String>,
    /// Identifier from the dataset, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<u64>,
}

impl EditRequest {
    /// A request from its parts, validated.
    pub fn new(prompt: &str, subject: &str, target_new: &str) -> Result<Self> {
        let r = Self {
            prompt: prompt.into(),
            subject: subject.into(),
            target_new: target_new.into(),
            target_true: None,
            case_id: None,
        };
        r.normalized("request")
    }

    /// The prompt with the subject filled in.
    pub fn filled_prompt(&self) -> String {
        self.prompt.replacen("{}", &self.subject, 1)
    }

    /// Puts `{}` in place of a literal subject and checks every field; `name` labels errors.
    pub fn normalized(mut self, name: &str) -> Result<Self> {
        let fail = |why: String| Err(EngineError::Request(format!("{name}: {why}")));
        if self.subject.trim().is_empty() {
            return fail("the subject is empty".into());
        }
        if self.target_new.trim().is_empty() {
            return fail("target_new is empty".into());
        }
        if !self.prompt.contains("{}") {
            match self.prompt.find(&self.subject) {
                Some(i) => self.prompt.replace_range(i..i + self.subject.len(), "{}"),
                None => {
                    return fail(format!(
                        "the prompt {:?} has no `{{}}` placeholder and does not contain the subject {:?}",
                        self.prompt, self.subject
                    ));
                }
            }
        }
        if self.prompt.matches("{}").count() != 1 {
            return fail(format!("the prompt {:?} must contain exactly one `{{}}`", self.prompt));
        }
        if self.prompt.trim() == "{}" {
            return fail("the prompt is only the subject; add the relation text (e.g. \"{} is a citizen of\")".into());
        }
        Ok(self)
    }

    /// Reads one request from any accepted JSON shape.
    pub fn from_json(v: &Value, name: &str) -> Result<Self> {
        let bad = |why: &str| EngineError::Request(format!("{name}: {why}"));
        let obj = v.get("requested_rewrite").unwrap_or(v);
        let text = |key: &str| -> Option<String> {
            match obj.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("str")?.as_str().map(String::from),
                _ => None,
            }
        };
        let prompt = text("prompt").ok_or_else(|| bad("missing string field `prompt`"))?;
        let subject = text("subject").ok_or_else(|| bad("missing string field `subject`"))?;
        let target_new =
            text("target_new").ok_or_else(|| bad("missing field `target_new` (string or {\"str\": …})"))?;
        let target_true = text("target_true").or_else(|| text("ground_truth"));
        let case_id = v.get("case_id").and_then(Value::as_u64);
        Self {
            prompt,
            subject,
            target_new,
            target_true,
            case_id,
        }
        .normalized(name)
    }

    /// Reads requests from file contents: a JSON array, one object, or JSON lines.
    pub fn parse_many(text: &str, source: &str) -> Result<Vec<Self>> {
        let trimmed = text.trim_start();
        let values: Vec<Value> = if trimmed.starts_with('[') {
            serde_json::from_str(text).map_err(|e| EngineError::Request(format!("{source}: {e}")))?
        } else if let Ok(v) = serde_json::from_str::<Value>(text) {
            vec![v]
        } else {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| EngineError::Request(format!("{source} line {}: {e}", i + 1)))
                })
                .collect::<Result<_>>()?
        };
        if values.is_empty() {
            return Err(EngineError::Request(format!("{source}: no requests")));
        }
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Self::from_json(v, &format!("{source} request {i}")))
            .collect()
    }
}
