//! Per-layer hooks: read activations at chosen sites and add vectors to them. This is how the
//! editing code reaches inside the network without copying its forward pass.

use burn::prelude::*;

/// A place inside block `l` where an activation can be read or modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// The token embeddings entering the first block (GPT-2's with its position embeddings added),
    /// `[batch, seq, d]`; visited as layer 0.
    Embed,
    /// Output of the attention (before the residual add), `[batch, seq, d]`.
    AttnOut,
    /// Input of `mlp.c_proj` (after GELU), `[batch, seq, d_inner]`: the key k.
    MlpKey,
    /// Output of `mlp.c_proj` (before the residual add), `[batch, seq, d]`: the MLP value.
    MlpOut,
    /// Residual stream after the block, `[batch, seq, d]` (HF `hidden_states[l + 1]`).
    BlockOut,
}

/// What to read and what to add during one forward pass.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Activations to return, in this order, as `(layer, site)`.
    pub probes: Vec<(usize, Site)>,
    /// Tensors added to an activation, broadcast to its shape (e.g. `mask ⊗ δ` to change one
    /// position per prompt). Several edits at one site are summed.
    pub edits: Vec<(usize, Site, Tensor<3>)>,
    /// Activations replaced where a mask says so (causal tracing restores clean states this way).
    pub patches: Vec<Patch>,
    /// Skip the layers after the last probe and the LM head (for keys and statistics).
    pub skip_logits: bool,
}

/// A replacement at `(layer, site)`: `x ← x · (1 − mask) + values · mask`, with `mask`
/// `[batch, seq, 1]` of 0/1 and `values` broadcast to the activation's shape (e.g. one clean pass
/// `[1, seq, d]` restoring chosen positions of many corrupted rows).
#[derive(Debug, Clone)]
pub struct Patch {
    /// Block index.
    pub layer: usize,
    /// Where in it.
    pub site: Site,
    /// 1 where the activation is replaced, `[batch, seq, 1]`.
    pub mask: Tensor<3>,
    /// What replaces it.
    pub values: Tensor<3>,
}

impl Hooks {
    /// Hooks that only read `(layer, site)` activations and need no logits.
    pub fn probe_only(probes: Vec<(usize, Site)>) -> Self {
        Self {
            probes,
            skip_logits: true,
            ..Default::default()
        }
    }

    /// Adds `delta` (broadcast) at `(layer, site)`.
    pub fn with_edit(mut self, layer: usize, site: Site, delta: Tensor<3>) -> Self {
        self.edits.push((layer, site, delta));
        self
    }

    /// The last layer any hook touches.
    pub fn last_layer(&self) -> Option<usize> {
        let p = self.probes.iter().map(|(l, _)| *l);
        let e = self.edits.iter().map(|(l, _, _)| *l);
        let r = self.patches.iter().map(|patch| patch.layer);
        p.chain(e).chain(r).max()
    }

    /// How many blocks a pass over `n_layer` blocks runs: all of them, or up to the last hooked
    /// layer when the logits are skipped.
    pub(crate) fn blocks_to_run(&self, n_layer: usize) -> usize {
        if self.skip_logits {
            self.last_layer().map_or(0, |l| l + 1)
        } else {
            n_layer
        }
    }

    /// Slots for the probes of one pass.
    pub(crate) fn probe_slots(&self) -> Vec<Option<Tensor<3>>> {
        vec![None; self.probes.len()]
    }

    /// The probes a pass recorded, in order.
    ///
    /// # Panics
    /// If a probe names a layer the model does not have (the editors check layers first).
    pub(crate) fn recorded(&self, slots: Vec<Option<Tensor<3>>>) -> Vec<Tensor<3>> {
        slots
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.unwrap_or_else(|| panic!("probe {:?} names a layer beyond the model", self.probes[i])))
            .collect()
    }

    /// These hooks with the logits computed.
    pub(crate) fn with_logits(&self) -> Self {
        Self {
            skip_logits: false,
            ..self.clone()
        }
    }

    /// Applies the edits, then the patches, registered at `(layer, site)` to `x`, then records it
    /// if probed.
    pub(crate) fn visit(&self, layer: usize, site: Site, mut x: Tensor<3>, out: &mut [Option<Tensor<3>>]) -> Tensor<3> {
        for (l, s, delta) in &self.edits {
            if *l == layer && *s == site {
                x = x + delta.clone();
            }
        }
        for p in &self.patches {
            if p.layer == layer && p.site == site {
                let keep = p.mask.clone().neg().add_scalar(1.0);
                x = x * keep + p.values.clone() * p.mask.clone();
            }
        }
        for (i, (l, s)) in self.probes.iter().enumerate() {
            if *l == layer && *s == site {
                out[i] = Some(x.clone());
            }
        }
        x
    }
}
