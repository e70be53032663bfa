//! Reading files: byte sources, safetensors parsing, weight assembly (kept apart from the model
//! code, which knows nothing about files), tokenised corpora, pmedit statistics files and the
//! authors' `.npz` statistics. The writers are in `save`.

pub mod corpus;
pub mod delta_file;
pub mod gptj_weights;
pub mod llama_weights;
pub mod memory;
#[cfg(not(target_family = "wasm"))]
pub mod model_dir;
pub mod npz;
pub mod safetensors;
pub mod shards;
pub mod source;
pub mod stats_file;
pub mod weights;

pub use gptj_weights::build_gptj_in;
pub use llama_weights::build_llama_in;
pub use memory::{ModelParts, load_model_bytes, load_model_source, load_model_source_in, load_model_sources_in};
#[cfg(not(target_family = "wasm"))]
pub use model_dir::{LoadedModel, load_model_dir, load_model_dir_in, read_config};
pub use safetensors::SafetensorsFile;
pub use shards::shard_names;
#[cfg(not(target_family = "wasm"))]
pub use source::FileSource;
pub use source::{ByteSource, MemorySource};
pub use weights::{WeightFiles, build_gpt2, build_gpt2_in};
