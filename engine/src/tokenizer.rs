//! The models' tokenizers, built with the `tokenizers` crate from a `tokenizer.json` (GPT-2's
//! byte-level BPE, Llama-3's tiktoken-style byte-level BPE, Llama-2's SentencePiece-style BPE with
//! byte fallback) or GPT-2's original `vocab.json` + `merges.txt` pair. Works on bytes so the
//! browser can hand over file contents.
//!
//! Two things differ between the families and are handled here, so the editing code never asks
//! which tokenizer it has:
//! - **BOS.** Llama tokenizers prepend a begin-of-sequence token (their post-processor adds it);
//!   GPT-2's adds nothing. [`Gpt2Tokenizer::encode`] gives a text as the start of a sequence (with
//!   the BOS when the tokenizer has one), as transformers' `tokenizer(text)` does.
//! - **Pieces that continue a text.** The PM editors tokenise a prompt's prefix, subject and
//!   suffix, and a target, separately (docs/MATH.md §4). A byte-level BPE gives `" Paris"` the same
//!   ids alone as after other text; a SentencePiece-style tokenizer marks the start of every text
//!   with `▁`, so `" Paris"` alone becomes `▁ ▁Paris`. [`Gpt2Tokenizer::encode_continuation`]
//!   tokenises a piece as it comes out inside a longer text.

use std::path::Path;
#[cfg(not(target_family = "wasm"))]
use std::path::PathBuf;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{EngineError, Result};

/// A causal-LM tokenizer: GPT-2's (no BOS; `<|endoftext|>` is a normal token) or a Llama
/// family's (BOS prepended; SentencePiece-style or byte-level).
#[derive(Clone)]
pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    eos: Option<u32>,
    /// The token the post-processor puts before every sequence.
    bos: Option<u32>,
    /// Whether the start of every text is marked (`▁`, SentencePiece style), so a piece that
    /// continues a text must be tokenised after an anchor.
    marks_start: bool,
}

/// What [`Gpt2Tokenizer::encode_continuation`] puts before a piece and then drops: a newline is
/// a token of its own (or byte-fallback bytes) that no merge joins to what follows.
const ANCHOR: &str = "\n";

impl std::fmt::Debug for Gpt2Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpt2Tokenizer(vocab={})", self.vocab_size())
    }
}

fn tok_err(path: &Path, reason: impl ToString) -> EngineError {
    EngineError::Tokenizer {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Gpt2Tokenizer {
    /// From the contents of a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(bytes: &[u8]) -> Result<Self> {
        let path = Path::new("tokenizer.json");
        // Check UTF-8 and the JSON syntax first: `tokenizers` panics (instead of returning an
        // error) on a syntax error or invalid UTF-8 inside the `decoder` object (both found by
        // fuzz/fuzz_targets/tokenizer.rs).
        let text = std::str::from_utf8(bytes).map_err(|e| tok_err(path, format!("not UTF-8 text: {e}")))?;
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| tok_err(path, e))?;
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| tok_err(path, e))?;
        Ok(Self::wrap(inner))
    }

    /// From the contents of `vocab.json` and `merges.txt` (GPT-2's original files).
    pub fn from_vocab_merges(vocab: &[u8], merges: &[u8]) -> Result<Self> {
        let vocab: tokenizers::models::bpe::Vocab =
            serde_json::from_slice(vocab).map_err(|e| tok_err(Path::new("vocab.json"), e))?;
        let merges_path = Path::new("merges.txt");
        let text = std::str::from_utf8(merges).map_err(|e| tok_err(merges_path, e))?;
        let mut pairs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => pairs.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(tok_err(
                        merges_path,
                        format!("line {} is not a merge pair: {line:?}", i + 1),
                    ));
                }
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .build()
            .map_err(|e| tok_err(merges_path, e))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // GPT-2's only special token, as in the hub's tokenizer.json.
        if inner.token_to_id("<|endoftext|>").is_some() {
            inner.add_special_tokens(&[AddedToken::from("<|endoftext|>", true)]);
        }
        Ok(Self::wrap(inner))
    }

    /// From a model directory: `tokenizer.json` if present, else `vocab.json` + `merges.txt`.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| EngineError::io(p, e));
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_tokenizer_json(&read(json.clone())?).map_err(|e| relabel(e, &json));
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.is_file() && merges.is_file() {
            return Self::from_vocab_merges(&read(vocab)?, &read(merges)?).map_err(|e| relabel(e, dir));
        }
        Err(EngineError::MissingFile {
            dir: dir.to_path_buf(),
            what: "tokenizer".into(),
            expected: "tokenizer.json, or vocab.json and merges.txt".into(),
        })
    }

    fn wrap(inner: Tokenizer) -> Self {
        let eos = ["<|endoftext|>", "</s>", "<|end_of_text|>"]
            .iter()
            .find_map(|t| inner.token_to_id(t));
        // The BOS is what the post-processor adds in front of a text.
        let ids = |special: bool| inner.encode("a", special).map(|e| e.get_ids().to_vec()).ok();
        let bos = match (ids(true), ids(false)) {
            (Some(with), Some(without)) if with.len() > without.len() && with.ends_with(&without) => {
                with.first().copied()
            }
            _ => None,
        };
        // SentencePiece style: the normalizer prepends `▁`, or a Metaspace pre-tokenizer does.
        let json = |part: Result<String, serde_json::Error>| part.unwrap_or_default();
        let marks_start = json(serde_json::to_string(&inner.get_normalizer())).contains("\"Prepend\"")
            || json(serde_json::to_string(&inner.get_pre_tokenizer())).contains("\"Metaspace\"");
        Self {
            inner,
            eos,
            bos,
            marks_start,
        }
    }

    /// Token ids of `text` as the start of a sequence: the BOS first when the tokenizer has one
    /// (Llama), as transformers' `tokenizer(text)` gives them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.encode_plain(text)?);
        Ok(ids)
    }

    /// Token ids of `text` alone, with no special token added.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Input(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` where it continues a longer text (a subject after its prefix, a target
    /// after its prompt): for a SentencePiece-style tokenizer, the ids `text` gets after an
    /// anchor, less the anchor's; otherwise those of `text` alone.
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>> {
        if !self.marks_start {
            return self.encode_plain(text);
        }
        let anchor = self.encode_plain(ANCHOR)?;
        let ids = self.encode_plain(&format!("{ANCHOR}{text}"))?;
        match ids.strip_prefix(anchor.as_slice()) {
            Some(rest) => Ok(rest.to_vec()),
            None => Err(EngineError::Input(format!(
                "cannot tokenize {text:?} as a continuation: the tokenizer merges it into what precedes it"
            ))),
        }
    }

    /// The begin-of-sequence token prepended by [`encode`](Self::encode), if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| EngineError::Input(format!("cannot decode {ids:?}: {e}")))
    }

    /// Text of one token as it reads inside a text, special tokens by name: a SentencePiece-style
    /// `▁Paris` reads " Paris", like GPT-2's `ĠParis` (decoded alone it would lose the space).
    pub fn token_text(&self, id: u32) -> Result<String> {
        if !self.marks_start {
            return self.decode(&[id]);
        }
        let anchor = self.encode_plain(ANCHOR)?;
        let head = self.decode(&anchor)?;
        let whole = self.decode(&[anchor.as_slice(), &[id]].concat())?;
        match whole.strip_prefix(&head) {
            Some(tail) => Ok(tail.to_string()),
            None => self.decode(&[id]),
        }
    }

    /// Text of `new` as it reads after `context`, special tokens left out. The ids are decoded
    /// after the context's and the context's text is taken off, rather than decoded alone: a
    /// SentencePiece-style decoder drops the leading space of a text's first word (" Paris" alone
    /// reads "Paris").
    pub fn decode_continuation(&self, context: &[u32], new: &[u32]) -> Result<String> {
        let text = |ids: &[u32]| {
            self.inner
                .decode(ids, true)
                .map_err(|e| EngineError::Input(format!("cannot decode {ids:?}: {e}")))
        };
        let head = text(context)?;
        let whole = text(&[context, new].concat())?;
        match whole.strip_prefix(&head) {
            Some(tail) => Ok(tail.to_string()),
            None => text(new),
        }
    }

    /// Fails unless every token id fits a model with `vocab_size` rows (`path` labels the error).
    pub fn check_fits(&self, vocab_size: usize, path: &Path) -> Result<()> {
        // The largest id decides, not the number of entries: a vocabulary with gaps can still
        // emit an id past the embedding table.
        let largest = self.inner.get_vocab(true).into_iter().max_by_key(|(_, id)| *id);
        if let Some((token, id)) = largest
            && id as usize >= vocab_size
        {
            return Err(EngineError::Tokenizer {
                path: path.to_path_buf(),
                reason: format!(
                    "it can emit token id {id} ({token:?}) but the model's vocab_size is {vocab_size}: \
                     the tokenizer does not belong to this model"
                ),
            });
        }
        Ok(())
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of the end-of-text token (`<|endoftext|>`, `</s>`, `<|end_of_text|>`), if the vocabulary
    /// has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The underlying `tokenizers` tokenizer (for saving as `tokenizer.json`).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

#[cfg(not(target_family = "wasm"))]
fn relabel(e: EngineError, path: &Path) -> EngineError {
    match e {
        EngineError::Tokenizer { reason, .. } => EngineError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    }
}
