//! A GPT-2-style byte-level BPE tokenizer trained on our own text with the `tokenizers` crate.

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{EngineError, Result};
use crate::tokenizer::Gpt2Tokenizer;

/// The end-of-text token, as in GPT-2.
pub const EOS: &str = "<|endoftext|>";

/// Trains a byte-level BPE of `vocab_size` tokens (including the 256 byte symbols and
/// `<|endoftext|>`) on `texts`. Returns the tokenizer and its `tokenizer.json` contents.
pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<(Gpt2Tokenizer, String)> {
    let fail = |e: tokenizers::Error| EngineError::Input(format!("training the tokenizer: {e}"));
    if vocab_size < 300 {
        return Err(EngineError::Input(format!(
            "a byte-level BPE needs more than 256 + 1 tokens (asked for {vocab_size})"
        )));
    }
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.train(&mut trainer, texts.iter()).map_err(fail)?;
    let json = tokenizer.to_string(false).map_err(fail)?;
    Ok((Gpt2Tokenizer::from_tokenizer_json(json.as_bytes())?, json))
}
