//! Validation of what a user types into the page's forms.

use pmedit_engine::edit::EditRequest;

use crate::protocol::{Fact, FactRecord};

/// One row of the facts form as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactRow {
    /// Subject.
    pub subject: String,
    /// Prompt, with `{}` or the subject written out.
    pub prompt: String,
    /// New object.
    pub target: String,
    /// The CounterFact record the row was picked from (cleared when its subject or prompt is
    /// changed).
    pub record: Option<FactRecord>,
}

/// The rows as validated facts; blank rows are skipped, and an error names the row (1-based).
pub fn parse_facts(rows: &[FactRow]) -> Result<Vec<Fact>, String> {
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if r.subject.trim().is_empty() && r.prompt.trim().is_empty() && r.target.trim().is_empty() {
            continue;
        }
        let req = EditRequest::new(r.prompt.trim(), r.subject.trim(), r.target.trim())
            .map_err(|e| format!("fact {}: {}", i + 1, strip_prefix(&e.to_string())))?;
        out.push(Fact {
            prompt: req.prompt,
            subject: req.subject,
            target_new: req.target_new,
            record: r.record.clone(),
        });
    }
    if out.is_empty() {
        return Err(
            "enter at least one fact: a subject, a prompt such as \"{} is a citizen of\" and a new target".into(),
        );
    }
    Ok(out)
}

/// The layer an `.npz` statistics file holds, read from its name (see
/// [`pmedit_engine::load::npz::layer_from_file_name`]).
pub fn npz_layer(name: &str) -> Result<usize, String> {
    pmedit_engine::load::npz::layer_from_file_name(name).map_err(|e| match e {
        pmedit_engine::EngineError::Input(why) => why,
        other => other.to_string(),
    })
}

fn strip_prefix(msg: &str) -> &str {
    msg.split_once("request: ").map_or(msg, |(_, rest)| rest)
}

/// Layers as typed: empty (the presets), `17`, `13-17` or `3,5`, parsed and checked against the
/// model's `n_layer` by the engine (the CLI's `--layers` uses the same parser).
pub fn parse_layers(text: &str, n_layer: usize) -> Result<Option<Vec<usize>>, String> {
    use pmedit_engine::edit::layers;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let parsed = layers::parse_layers(text).map_err(|e| format!("layers: {e}"))?;
    layers::check_layers(&parsed, n_layer).map_err(|e| format!("layers: {e}"))?;
    Ok(Some(parsed))
}

/// An optional positive number (λ, steps) as typed.
pub fn parse_positive(text: &str, what: &str) -> Result<Option<f64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
        _ => Err(format!("{what}: `{text}` is not a positive number")),
    }
}

/// A comma list of positive numbers (a sweep's λ values), sorted, without repeats.
pub fn parse_positive_list(text: &str, what: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        out.extend(parse_positive(item, what)?);
    }
    if out.is_empty() {
        return Err(format!("{what}: give at least one value"));
    }
    out.sort_by(f64::total_cmp);
    out.dedup();
    Ok(out)
}

/// A comma list of batch sizes, whole numbers from 1 to `max`, sorted, without repeats.
pub fn parse_batch_sizes(text: &str, max: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        match item.parse::<usize>() {
            Ok(b) if (1..=max).contains(&b) => out.push(b),
            _ => return Err(format!("batch sizes: `{item}` is not a whole number from 1 to {max}")),
        }
    }
    if out.is_empty() {
        return Err("batch sizes: give at least one".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsing itself is the engine's (tested there); the page gets its message as text.
    #[test]
    fn npz_layer_is_read_from_the_authors_names() {
        assert_eq!(npz_layer("transformer.h.17.mlp.c_proj_float32_mom2_100000.npz"), Ok(17));
        let err = npz_layer("mom2.npz").unwrap_err();
        assert!(
            err.starts_with("mom2.npz: cannot tell") && err.contains("layer17.npz"),
            "{err}"
        );
    }

    fn row(s: &str, p: &str, t: &str) -> FactRow {
        FactRow {
            record: None,
            subject: s.into(),
            prompt: p.into(),
            target: t.into(),
        }
    }

    #[test]
    fn facts_are_validated_and_named_by_row() {
        let ok = parse_facts(&[row("Paris", "{} is the capital of", "Italy"), row("", "", "")]).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].prompt, "{} is the capital of");
        // The subject written out becomes the placeholder.
        let lit = parse_facts(&[row("Rome", "Rome is the capital of", "France")]).unwrap();
        assert_eq!(lit[0].prompt, "{} is the capital of");
        let e = parse_facts(&[row("Paris", "{} is in", "France"), row("Oslo", "The capital", "Sweden")]).unwrap_err();
        assert!(
            e.starts_with("fact 2:") && e.contains("does not contain the subject"),
            "{e}"
        );
        let e = parse_facts(&[row("Paris", "{} is in", " ")]).unwrap_err();
        assert!(e.contains("fact 1") && e.contains("target_new is empty"), "{e}");
        assert!(
            parse_facts(&[row("", "", "")])
                .unwrap_err()
                .contains("at least one fact")
        );
    }

    #[test]
    fn layers_parse_ranges_and_check_bounds() {
        assert_eq!(parse_layers("", 4).unwrap(), None);
        assert_eq!(parse_layers("1", 4).unwrap(), Some(vec![1]));
        assert_eq!(parse_layers("0-2, 1", 4).unwrap(), Some(vec![0, 1, 2]));
        assert!(parse_layers("4", 4).unwrap_err().contains("layers 0–3"));
        assert!(parse_layers("2-1", 4).unwrap_err().contains("backwards"));
        assert!(parse_layers("x", 4).unwrap_err().contains("`x`"));
        assert!(
            parse_layers("0-99999999999", 4)
                .unwrap_err()
                .contains("layer 99999999999 is out of range")
        );
    }

    #[test]
    fn sweep_lists() {
        assert_eq!(parse_positive_list("1e3, 10,10 ,", "λ").unwrap(), vec![10.0, 1000.0]);
        assert!(parse_positive_list("10, 0", "λ").unwrap_err().contains("`0`"));
        assert!(parse_positive_list(" , ", "λ").unwrap_err().contains("at least one"));
        assert_eq!(parse_batch_sizes("16, 1,4,4", 100).unwrap(), vec![1, 4, 16]);
        assert!(parse_batch_sizes("1, 101", 100).unwrap_err().contains("`101`"));
        assert!(parse_batch_sizes("2.5", 100).unwrap_err().contains("`2.5`"));
        assert!(parse_batch_sizes("0", 100).is_err());
        assert!(parse_batch_sizes("", 100).is_err());
    }

    #[test]
    fn positive_numbers() {
        assert_eq!(parse_positive(" ", "λ").unwrap(), None);
        assert_eq!(parse_positive("1e4", "λ").unwrap(), Some(1e4));
        assert!(parse_positive("0", "λ").is_err());
        assert!(parse_positive("-3", "λ").is_err());
        assert!(parse_positive("NaN", "λ").is_err());
    }
}
