//! The Llama family (Llama-2, Llama-3, Mistral, Qwen2) as burn modules, matching transformers.

pub mod attention;
pub mod block;
pub mod config;
pub mod mlp;
pub mod model;

pub use config::{LlamaConfig, RopeScaling};
pub use model::Llama;
