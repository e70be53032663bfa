//! The index of a sharded checkpoint (`model.safetensors.index.json`): which shard files hold the
//! weights. Read natively from a model directory and in the page from the files a user picked.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{EngineError, Result};

/// The shard file names a `model.safetensors.index.json` (`text`, read from `index`) names, each
/// once and sorted; names that are not plain file names in the directory are refused.
pub fn shard_names(text: &str, index: &Path) -> Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| EngineError::Safetensors {
        path: index.to_path_buf(),
        reason: e.to_string(),
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| EngineError::Safetensors {
            path: index.to_path_buf(),
            reason: "no `weight_map` object".into(),
        })?;
    let mut shards = BTreeSet::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .filter(|f| is_plain_name(f))
            .ok_or_else(|| EngineError::Safetensors {
                path: index.to_path_buf(),
                reason: format!("weight_map entry for `{name}` is not a file name in the directory"),
            })?;
        shards.insert(file.to_string());
    }
    if shards.is_empty() {
        return Err(EngineError::Safetensors {
            path: index.to_path_buf(),
            reason: "`weight_map` names no shard".into(),
        });
    }
    Ok(shards.into_iter().collect())
}

fn is_plain_name(f: &str) -> bool {
    !f.is_empty() && !f.contains('/') && !f.contains('\\') && f != "." && f != ".."
}
