//! GPT-J as burn modules, matching transformers' `GPTJForCausalLM`: parallel attention and MLP
//! from one LayerNorm, rotary positions on the first `rotary_dim` dimensions of each head
//! (interleaved pairs), and an untied LM head with a bias.

pub mod block;
pub mod config;
pub mod model;

pub use config::GptjConfig;
pub use model::Gptj;
