//! Training a small GPT-2 from scratch (the built-in demo model): a byte-level BPE tokenizer
//! trained on the corpus, batches mixing true facts with running text, and a next-token
//! cross-entropy loop with burn's autodiff and AdamW on whatever device is passed in.

pub mod bpe;
pub mod data;
pub mod trainer;

pub use bpe::train_bpe;
pub use data::{
    Batcher, fact_sentences, neighbourhood_sentences, neighbourhood_subject_sentences, relation_sentences,
    subject_sentences, text_lines,
};
pub use trainer::{TrainConfig, TrainStep, train_lm};
