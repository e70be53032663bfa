//! GPT-2 as burn modules, matching Hugging Face's `GPT2LMHeadModel` exactly: pre-LayerNorm blocks,
//! `gelu_new`, causal attention and an LM head tied to the token embeddings.

pub mod attention;
pub mod block;
pub mod config;
pub mod editable;
pub mod embedding;
pub mod gpt2;
pub mod hooks;
pub mod linear;
pub mod mlp;
pub mod precision;

pub use config::Gpt2Config;
pub use editable::EditableModel;
pub use gpt2::{ForwardOutput, Gpt2, KvCache};
pub use hooks::{Hooks, Site};
