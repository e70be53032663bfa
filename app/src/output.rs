//! Parsing the layer lists of `--layers` (`17`, `13-17`, `3,5,7`).

use anyhow::{Context, Result};

/// The largest layer index a list may name: far above any real model (GPT-J has 28 blocks,
/// Llama-3-70B 80), and small enough that a typo like `0-99999999999` is refused before a
/// list of that length is built. Each command then checks the layers against its model.
pub const MAX_LAYER: usize = 65_535;

fn layer_number(text: &str, part: &str) -> Result<usize> {
    let n: usize = text
        .trim()
        .parse()
        .with_context(|| format!("--layers: `{part}` is not a layer number or range"))?;
    anyhow::ensure!(
        n <= MAX_LAYER,
        "--layers: layer {n} is out of range (layers are numbered from 0 below the model's n_layer)"
    );
    Ok(n)
}

/// Parses a layer list in the order written, ranges expanded, duplicates kept.
pub fn parse_layer_list(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (layer_number(a, part)?, layer_number(b, part)?);
            anyhow::ensure!(a <= b, "--layers: the range {part} is empty");
            out.extend(a..=b);
        } else {
            out.push(layer_number(part, part)?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "--layers: no layers given");
    Ok(out)
}

/// Parses a layer set: sorted, without duplicates.
pub fn parse_layers(s: &str) -> Result<Vec<usize>> {
    let mut out = parse_layer_list(s)?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_lists() {
        assert_eq!(parse_layers("17").unwrap(), vec![17]);
        assert_eq!(parse_layers("13-17").unwrap(), vec![13, 14, 15, 16, 17]);
        assert_eq!(parse_layers("5,3,3").unwrap(), vec![3, 5]);
        assert_eq!(parse_layer_list("17,13").unwrap(), vec![17, 13]);
        assert!(parse_layers("7-3").is_err());
        assert!(parse_layers("x").is_err());
        assert!(parse_layers("").is_err());
        let huge = parse_layers("0-99999999999").unwrap_err().to_string();
        assert!(huge.contains("out of range"), "{huge}");
    }
}
