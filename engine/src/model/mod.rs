//! The language models as burn modules, matching transformers exactly: GPT-2 (`GPT2LMHeadModel`:
//! pre-LayerNorm blocks, `gelu_new`, an LM head tied to the token embeddings), GPT-J ([`gptj`]) and
//! the Llama family ([`llama`]), behind one [`Model`] enum that implements [`EditableModel`].

pub mod any;
pub mod attention;
pub mod block;
pub mod config;
pub mod editable;
pub mod embedding;
pub mod gpt2;
pub mod gptj;
pub mod hooks;
pub mod linear;
pub mod llama;
pub mod mlp;
pub mod precision;
pub mod rope;
pub mod rotary;

pub use any::{MODEL_TYPES, Model, ModelConfig};
pub use config::Gpt2Config;
pub use editable::EditableModel;
pub use gpt2::{ForwardOutput, Gpt2, KvCache};
pub use gptj::{Gptj, GptjConfig};
pub use hooks::{Hooks, Patch, Site};
pub use llama::{Llama, LlamaConfig};
