//! Layer lists as users write them (`17`, `13-17`, `3,5,7`), parsed once for every front end
//! (the CLI's `--layers`, the page's layers field), and the one range check against a model.

use crate::error::{EngineError, Result};

/// The largest layer index a list may name: far above any real model (GPT-J has 28 blocks,
/// Llama-3-70B 80), and small enough that a typo like `0-99999999999` is refused before a list
/// of that length is built. The layers are then checked against the model ([`check_layers`]).
pub const MAX_LAYER: usize = 65_535;

fn layer_number(text: &str, part: &str) -> Result<usize> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| EngineError::Input(format!("`{part}` is not a layer number or range")))?;
    if n > MAX_LAYER {
        return Err(EngineError::Input(format!(
            "layer {n} is out of range (layers are numbered from 0 below the model's n_layer)"
        )));
    }
    Ok(n)
}

/// Parses a layer list in the order written, ranges expanded, duplicates kept.
pub fn parse_layer_list(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (layer_number(a, part)?, layer_number(b, part)?);
            if a > b {
                return Err(EngineError::Input(format!("the range {part} runs backwards")));
            }
            out.extend(a..=b);
        } else {
            out.push(layer_number(part, part)?);
        }
    }
    if out.is_empty() {
        return Err(EngineError::Input("no layers given".into()));
    }
    Ok(out)
}

/// Parses a layer set: sorted, without duplicates.
pub fn parse_layers(s: &str) -> Result<Vec<usize>> {
    let mut out = parse_layer_list(s)?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Fails unless there is a layer and every one exists in a model of `n_layer` blocks.
pub fn check_layers(layers: &[usize], n_layer: usize) -> Result<()> {
    if layers.is_empty() {
        return Err(EngineError::Input("no layer to edit".into()));
    }
    if let Some(&bad) = layers.iter().find(|&&l| l >= n_layer) {
        return Err(EngineError::Input(format!(
            "layer {bad} is out of range (the model has layers 0–{})",
            n_layer.saturating_sub(1)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_lists() {
        assert_eq!(parse_layers("17").unwrap(), vec![17]);
        assert_eq!(parse_layers("13-17").unwrap(), vec![13, 14, 15, 16, 17]);
        assert_eq!(parse_layers("5,3,3").unwrap(), vec![3, 5]);
        assert_eq!(parse_layers(" 0-2, 1").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_layer_list("17,13").unwrap(), vec![17, 13]);
        assert!(parse_layers("7-3").unwrap_err().to_string().contains("backwards"));
        assert!(parse_layers("x").unwrap_err().to_string().contains("`x`"));
        assert!(parse_layers("").is_err());
        let huge = parse_layers("0-99999999999").unwrap_err().to_string();
        assert!(huge.contains("layer 99999999999 is out of range"), "{huge}");
    }

    #[test]
    fn layers_are_checked_against_the_model() {
        assert!(check_layers(&[0, 3], 4).is_ok());
        let e = check_layers(&[4], 4).unwrap_err().to_string();
        assert!(e.contains("layer 4 is out of range (the model has layers 0–3)"), "{e}");
        assert!(check_layers(&[], 4).is_err());
    }
}
