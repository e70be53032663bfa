//! Evaluation datasets (docs/MATH.md §9): CounterFact in the authors' full format and in
//! EasyEdit's flat format, ROME's `known_1000.json`, and zsRE in the MEND format, all read into one
//! record type. A malformed record is an error naming the file, the record index and the field;
//! callers that prefer to skip such records use [`read_records`] with `skip_invalid`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::edit::EditRequest;
use crate::error::{EngineError, Result};

/// A prompt whose correct continuation is `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The prompt (subject filled in).
    pub prompt: String,
    /// The expected continuation (a leading space is added when tokenizing).
    pub target: String,
}

/// Which benchmark a record comes from (decides the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    /// CounterFact: ES/EM, PS/PM, NS/NM, GE (probability comparisons of new vs true object).
    CounterFact,
    /// zsRE: token-level argmax accuracy of the answer.
    Zsre,
}

/// One evaluation record: the edit and the prompts that score it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Identifier (dataset `case_id` / `known_id`, or the index in the file).
    pub case_id: u64,
    /// The benchmark.
    pub benchmark: Benchmark,
    /// The edit (with `target_true` for CounterFact).
    pub request: EditRequest,
    /// Paraphrases of the rewrite prompt (subject filled in).
    pub paraphrase_prompts: Vec<String>,
    /// Prompts about other subjects whose answer must not change (CounterFact: their answer is
    /// the edited record's true object; zsRE: `loc_ans`).
    pub neighborhood: Vec<Probe>,
    /// Generation prompts for GE (CounterFact full format only).
    pub generation_prompts: Vec<String>,
}

/// Counts of what [`read_records`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    /// Records read.
    pub read: usize,
    /// Records skipped as malformed (`skip_invalid`), with their errors.
    pub skipped: Vec<String>,
}

/// Reads every record of a dataset file's contents (`source` names it in errors). The format is
/// recognised per record: `requested_rewrite` (CounterFact full), `src`+`alt` (zsRE MEND),
/// `known_id`/`template` (known_1000), `prompt`+`target_new`+`ground_truth` (EasyEdit).
pub fn read_records(text: &str, source: &str, skip_invalid: bool) -> Result<(Vec<Record>, ReadReport)> {
    let values: Vec<Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| EngineError::Dataset(format!("{source}: not valid JSON: {e}")))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| EngineError::Dataset(format!("{source} line {}: not valid JSON: {e}", i + 1)))
            })
            .collect::<Result<_>>()?
    };
    if values.is_empty() {
        return Err(EngineError::Dataset(format!("{source}: no records")));
    }
    let mut report = ReadReport::default();
    let mut records = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match record_from_json(v, i) {
            Ok(r) => records.push(r),
            Err(why) if skip_invalid => report.skipped.push(format!("record {i}: {why}")),
            Err(why) => return Err(EngineError::Dataset(format!("{source} record {i}: {why}"))),
        }
    }
    if records.is_empty() {
        return Err(EngineError::Dataset(format!(
            "{source}: all {} records are invalid (first: {})",
            values.len(),
            report.skipped.first().map_or("", String::as_str)
        )));
    }
    report.read = records.len();
    Ok((records, report))
}

fn string(v: &Value, key: &str) -> std::result::Result<String, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => o
            .get("str")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| format!("field `{key}` has no string `str`")),
        Some(_) => Err(format!("field `{key}` is not a string")),
        None => Err(format!("missing field `{key}`")),
    }
}

fn strings(v: &Value, key: &str) -> std::result::Result<Vec<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("field `{key}` must hold only strings")),
        Some(_) => Err(format!("field `{key}` is not a list of strings")),
    }
}

fn request(
    prompt: String,
    subject: String,
    new: String,
    truth: Option<String>,
    id: u64,
) -> std::result::Result<EditRequest, String> {
    EditRequest {
        prompt,
        subject,
        target_new: new,
        target_true: truth,
        case_id: Some(id),
    }
    .normalized("request")
    .map_err(|e| e.to_string())
}

fn record_from_json(v: &Value, index: usize) -> std::result::Result<Record, String> {
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let id = |key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(index as u64);
    if let Some(rw) = v.get("requested_rewrite") {
        // CounterFact, the authors' format.
        let truth = string(rw, "target_true").map_err(|e| format!("requested_rewrite: {e}"))?;
        let req = request(
            string(rw, "prompt").map_err(|e| format!("requested_rewrite: {e}"))?,
            string(rw, "subject").map_err(|e| format!("requested_rewrite: {e}"))?,
            string(rw, "target_new").map_err(|e| format!("requested_rewrite: {e}"))?,
            Some(truth.clone()),
            id("case_id"),
        )?;
        return Ok(Record {
            case_id: id("case_id"),
            benchmark: Benchmark::CounterFact,
            request: req,
            paraphrase_prompts: strings(v, "paraphrase_prompts")?,
            neighborhood: strings(v, "neighborhood_prompts")?
                .into_iter()
                .map(|prompt| Probe {
                    prompt,
                    target: truth.clone(),
                })
                .collect(),
            generation_prompts: strings(v, "generation_prompts")?,
        });
    }
    if v.get("src").is_some() && v.get("alt").is_some() {
        // zsRE, MEND format: the question is the prompt, `alt` the new answer.
        let subject = string(v, "subject")?;
        let src = string(v, "src")?;
        let truth = v
            .get("answers")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .map(String::from);
        let req = request(src, subject, string(v, "alt")?, truth, id("case_id"))?;
        return Ok(Record {
            case_id: id("case_id"),
            benchmark: Benchmark::Zsre,
            request: req,
            paraphrase_prompts: strings(v, "rephrase")?,
            neighborhood: vec![Probe {
                prompt: string(v, "loc")?,
                target: string(v, "loc_ans")?,
            }],
            generation_prompts: Vec::new(),
        });
    }
    if v.get("known_id").is_some() || v.get("template").is_some() {
        // ROME's known_1000: a fact the model knows; the "new" target is the known attribute.
        let attribute = string(v, "attribute")?;
        let req = request(
            string(v, "template")?,
            string(v, "subject")?,
            attribute.clone(),
            Some(attribute),
            id("known_id"),
        )?;
        return Ok(Record {
            case_id: id("known_id"),
            benchmark: Benchmark::CounterFact,
            request: req,
            paraphrase_prompts: Vec::new(),
            neighborhood: Vec::new(),
            generation_prompts: Vec::new(),
        });
    }
    // EasyEdit's flat CounterFact.
    let truth = string(v, "ground_truth")?;
    let req = request(
        string(v, "prompt")?,
        string(v, "subject")?,
        string(v, "target_new")?,
        Some(truth),
        id("case_id"),
    )?;
    let neighborhood = match (strings(v, "locality_prompt")?, v.get("locality_ground_truth")) {
        (prompts, Some(_)) => {
            let target = string(v, "locality_ground_truth")?;
            prompts
                .into_iter()
                .map(|prompt| Probe {
                    prompt,
                    target: target.clone(),
                })
                .collect()
        }
        (prompts, None) if prompts.is_empty() => Vec::new(),
        _ => return Err("`locality_prompt` without `locality_ground_truth`".into()),
    };
    Ok(Record {
        case_id: id("case_id"),
        benchmark: Benchmark::CounterFact,
        request: req,
        paraphrase_prompts: strings(v, "rephrase_prompt")?,
        neighborhood,
        generation_prompts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_format() {
        let text = r#"[
          {"case_id": 7, "requested_rewrite": {"prompt": "{} speaks", "subject": "Ann", "target_new": {"str": "English"}, "target_true": {"str": "French"}},
           "paraphrase_prompts": ["Ann talks"], "neighborhood_prompts": ["Bob speaks"], "generation_prompts": ["Ann is"]},
          {"case_id": 2, "prompt": "Toko Yasuda, the", "target_new": "piano", "subject": "Toko Yasuda", "ground_truth": "guitar",
           "rephrase_prompt": "Toko Yasuda is incredible at", "locality_prompt": "John Lennon performs on the", "locality_ground_truth": "guitar"},
          {"subject": "UniFirst", "src": "What is the product made by UniFirst?", "rephrase": "What will be the product of UniFirst?",
           "alt": "unmanned aircraft", "answers": ["uniform"], "loc": "nq question: who", "loc_ans": "Walter"},
          {"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent of"}
        ]"#;
        let (r, report) = read_records(text, "t.json", false).unwrap();
        assert_eq!(report.read, 4);
        assert_eq!(r[0].case_id, 7);
        assert_eq!(r[0].request.prompt, "{} speaks");
        assert_eq!(r[0].neighborhood[0].target, "French");
        assert_eq!(r[0].generation_prompts, vec!["Ann is"]);
        assert_eq!(r[1].request.prompt, "{}, the");
        assert_eq!(r[1].request.target_true.as_deref(), Some("guitar"));
        assert_eq!(r[1].paraphrase_prompts, vec!["Toko Yasuda is incredible at"]);
        assert_eq!(r[2].benchmark, Benchmark::Zsre);
        assert_eq!(r[2].request.prompt, "What is the product made by {}?");
        assert_eq!(r[2].neighborhood[0].target, "Walter");
        assert_eq!(r[3].request.target_new, "Antarctica");
    }

    #[test]
    fn malformed_records_name_file_index_and_field() {
        let text = r#"[{"prompt": "{} is", "subject": "A", "target_new": "B", "ground_truth": "C"},
                       {"prompt": "{} is", "subject": "A", "ground_truth": "C"}]"#;
        let err = read_records(text, "cf.json", false).unwrap_err().to_string();
        assert!(err.contains("cf.json record 1") && err.contains("target_new"), "{err}");
        let (r, report) = read_records(text, "cf.json", true).unwrap();
        assert_eq!((r.len(), report.skipped.len()), (1, 1));
        let err = read_records("[1, 2]", "x.json", true).unwrap_err().to_string();
        assert!(err.contains("all 2 records are invalid"), "{err}");
        let err = read_records("{\"a\": ", "y.json", false).unwrap_err().to_string();
        assert!(err.contains("y.json line 1"), "{err}");
    }
}
