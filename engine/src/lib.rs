//! # pmedit-engine
//!
//! Edits facts inside GPT-2-family language models with the preservation–memorization (PM) family
//! of algorithms (ROME, r-ROME, MEMIT, EMMET) from "A Unified Framework for Model Editing".
//!
//! Front ends edit through [`Editor`] (the one edit pipeline: plan, edit, undo, teach), which
//! works on any [`EditableModel`]. The math is in `docs/MATH.md`, the layout and the data path of
//! an edit in `docs/ARCHITECTURE.md`.
//!
//! The engine never chooses a device: callers (the CLI, the web page) pass a burn [`Device`]
//! (`Device::flex()` on the CPU, a wgpu device on Vulkan/Metal/WebGPU) and every tensor lives there.
//!
//! Functions that read tensors back to the host are `async` (WebGPU cannot block); native
//! callers run them with [`block_on`](readback).
//!
//! [`Device`]: burn::prelude::Device

// The CPU backend's fast paths exist natively only; in wasm a stand-in declines every one.
#[cfg_attr(not(target_family = "wasm"), path = "cpu/mod.rs")]
#[cfg_attr(target_family = "wasm", path = "cpu/absent.rs")]
mod cpu;
pub mod edit;
pub mod error;
pub mod eval;
pub mod generate;
pub mod linalg;
pub mod load;
pub mod model;
pub mod predict;
pub mod readback;
pub mod save;
pub mod tokenizer;
pub mod trace;
pub mod train;

pub use edit::Editor;
pub use error::{EngineError, Result};
pub use model::{EditableModel, Gpt2, Gpt2Config, Hooks, Llama, LlamaConfig, Model, ModelConfig, Site};
#[cfg(not(target_family = "wasm"))]
pub use readback::block_on;
pub use tokenizer::Gpt2Tokenizer;
