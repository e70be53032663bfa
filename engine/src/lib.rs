//! # pmedit-engine
//!
//! Edits facts inside GPT-2-family language models with the preservation–memorization (PM) family
//! of algorithms (ROME, r-ROME, MEMIT, EMMET) from "A Unified Framework for Model Editing".
//!
//! The engine never chooses a device: callers (the CLI, the web page) pass a burn [`Device`]
//! (`Device::flex()` on the CPU, a wgpu device on Vulkan/Metal/WebGPU) and every tensor lives there.
//!
//! Functions that read tensors back to the host are `async` (WebGPU cannot block); native
//! callers run them with [`block_on`](readback).
//!
//! [`Device`]: burn::prelude::Device

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
pub mod train;

pub use error::{EngineError, Result};
pub use model::{Gpt2, Gpt2Config, Hooks, Site};
#[cfg(not(target_family = "wasm"))]
pub use readback::block_on;
pub use tokenizer::Gpt2Tokenizer;
