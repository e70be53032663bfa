//! # pmedit-engine
//!
//! Edits facts inside GPT-2-family language models with the preservation–memorization (PM) family
//! of algorithms (ROME, r-ROME, MEMIT, EMMET) from "A Unified Framework for Model Editing".
//!
//! The engine never chooses a device: callers (the CLI, the web page) pass a burn [`Device`]
//! (`Device::flex()` on the CPU, a wgpu device on Vulkan/Metal/WebGPU) and every tensor lives there.
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
pub mod save;
pub mod tokenizer;
pub mod train;

pub use error::{EngineError, Result};
pub use model::{Gpt2, Gpt2Config, Hooks, Site};
pub use tokenizer::Gpt2Tokenizer;
