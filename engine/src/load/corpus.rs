//! Text corpora for the C0 statistics: plain text, or JSON lines with a `text` field. Binary or
//! empty files are refused with a message that says so.

use std::io::BufRead;

use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use crate::error::{EngineError, Result};
use crate::tokenizer::Gpt2Tokenizer;

/// The text of a corpus file's contents; `name` labels errors.
pub fn corpus_text(bytes: &[u8], name: &str) -> Result<String> {
    CorpusChunks::new(bytes, name, usize::MAX).collect()
}

/// A corpus read piece by piece, so a 100 GB file with a small `--max-tokens` is read only as
/// far as needed: an iterator of text chunks of about `chunk_bytes` (whole lines) whose
/// concatenation is [`corpus_text`] of the whole file. [`corpus_ids`] tokenises them.
pub struct CorpusChunks<R> {
    reader: R,
    name: String,
    chunk_bytes: usize,
    /// `Some(json)` once the first non-empty line has told plain text from JSON lines.
    json: Option<bool>,
    buffer: String,
    line: Vec<u8>,
    line_no: usize,
    /// Blank lines read before the format is known.
    leading: String,
    done: bool,
}

impl<R: BufRead> CorpusChunks<R> {
    /// Reads `reader` (labelled `name` in errors) in chunks of about `chunk_bytes`.
    pub fn new(reader: R, name: &str, chunk_bytes: usize) -> Self {
        Self {
            reader,
            name: name.to_string(),
            chunk_bytes: chunk_bytes.max(1),
            json: None,
            buffer: String::new(),
            line: Vec::new(),
            line_no: 0,
            leading: String::new(),
            done: false,
        }
    }

    fn fail<T>(&mut self, why: String) -> Option<Result<T>> {
        self.done = true;
        Some(Err(EngineError::Corpus(format!("{}: {why}", self.name))))
    }

    /// The next piece of text (a plain line with its newline, or a JSON line's `text` and a
    /// newline); `None` at the end of the file.
    fn next_piece(&mut self) -> Option<Result<String>> {
        loop {
            self.line.clear();
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return self.fail(format!("reading: {e}")),
            }
            self.line_no += 1;
            let Ok(line) = std::str::from_utf8(&self.line) else {
                return self.fail("not UTF-8 text (a binary file?)".into());
            };
            if line.contains('\0') {
                return self.fail("contains NUL bytes: it looks binary".into());
            }
            let blank = line.trim().is_empty();
            match self.json {
                // Blank lines before the first text: kept for plain text, dropped for JSON lines,
                // which the first non-blank line tells apart.
                None if blank => {
                    self.leading.push_str(line);
                    continue;
                }
                None => self.json = Some(line.trim_start().starts_with('{')),
                Some(_) => {}
            }
            if self.json == Some(true) {
                if blank {
                    continue;
                }
                let n = self.line_no;
                let v: serde_json::Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(e) => return self.fail(format!("line {n}: not valid JSON: {e}")),
                };
                let Some(t) = v.get("text").and_then(|t| t.as_str()) else {
                    return self.fail(format!("line {n}: no `text` field"));
                };
                return Some(Ok(format!("{t}\n")));
            }
            let mut piece = std::mem::take(&mut self.leading);
            piece.push_str(line);
            return Some(Ok(piece));
        }
    }
}

impl<R: BufRead> Iterator for CorpusChunks<R> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if self.done {
            return None;
        }
        loop {
            match self.next_piece() {
                Some(Ok(piece)) => {
                    if self.buffer.len() >= self.chunk_bytes {
                        return Some(Ok(std::mem::replace(&mut self.buffer, piece)));
                    }
                    self.buffer.push_str(&piece);
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.done = true;
                    if self.json.is_none() {
                        return Some(Err(EngineError::Corpus(format!("{}: the file is empty", self.name))));
                    }
                    return (!self.buffer.is_empty()).then(|| Ok(std::mem::take(&mut self.buffer)));
                }
            }
        }
    }
}

/// The token ids of a corpus read in `chunks`, stopping once `max_tokens` are there: exactly the
/// ids of the whole text, truncated, however the chunks fall.
///
/// Text is tokenised up to the last place where the tokenizer's own pre-tokenizer starts a word
/// right after a newline, and the rest waits for the next chunk. Every pre-tokenised word but the
/// last is final whatever text follows (each regex match is decided by its own characters and the
/// one after it), BPE never merges across words, and no added token such as `<|endoftext|>`
/// spans a newline; so the cut changes no id.
pub fn corpus_ids<R: BufRead>(
    chunks: CorpusChunks<R>,
    tokenizer: &Gpt2Tokenizer,
    max_tokens: Option<usize>,
) -> Result<Vec<u32>> {
    let limit = max_tokens.unwrap_or(usize::MAX);
    let mut ids = Vec::new();
    let mut pending = String::new();
    for chunk in chunks {
        pending.push_str(&chunk?);
        let cut = last_word_start_after_newline(tokenizer, &pending)?;
        if cut > 0 {
            ids.extend(tokenizer.encode_plain(&pending[..cut])?);
            pending.drain(..cut);
        }
        if ids.len() >= limit {
            ids.truncate(limit);
            return Ok(ids);
        }
    }
    if !pending.is_empty() {
        ids.extend(tokenizer.encode_plain(&pending)?);
    }
    ids.truncate(limit);
    Ok(ids)
}

/// The byte offset of the last pre-tokenised word of `text` that starts right after a `\n` (0 if
/// none, or if the tokenizer has no pre-tokenizer to ask).
fn last_word_start_after_newline(tokenizer: &Gpt2Tokenizer, text: &str) -> Result<usize> {
    let Some(pre) = tokenizer.inner().get_pre_tokenizer() else {
        return Ok(0);
    };
    let mut words = PreTokenizedString::from(text);
    pre.pre_tokenize(&mut words)
        .map_err(|e| EngineError::Input(format!("cannot pre-tokenize the corpus: {e}")))?;
    let bytes = text.as_bytes();
    Ok(words
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .iter()
        .map(|(_, (start, _), _)| *start)
        .rev()
        .find(|&s| s > 0 && s < bytes.len() && bytes[s - 1] == b'\n')
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_json_lines() {
        assert_eq!(corpus_text(b"hello world\n", "c").unwrap(), "hello world\n");
        assert_eq!(
            corpus_text(b"{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n", "c").unwrap(),
            "a\nb\n"
        );
    }

    #[test]
    fn empty_binary_and_malformed_corpora_are_refused() {
        let kind = |b: &[u8]| {
            let e = corpus_text(b, "c.txt").unwrap_err();
            assert_eq!(e.kind(), "corpus");
            e.to_string()
        };
        assert!(kind(b"").contains("empty"));
        assert!(kind(b" \n\t").contains("empty"));
        assert!(kind(&[0xff, 0xfe, 0x00]).contains("not UTF-8"));
        assert!(kind(b"abc\0def").contains("NUL"));
        assert!(kind(b"{\"text\": 1}").contains("line 1: no `text` field"));
        assert!(kind(b"{\"text\": \"a\"}\n{oops").contains("line 2: not valid JSON"));
    }

    /// Chunks are whole lines and concatenate to the whole text (leading blank lines kept for
    /// plain text, dropped for JSON lines).
    #[test]
    fn chunks_concatenate_to_the_whole_text() {
        let text = "\n Alpha beta.\n\n  gamma\nDelta\n\n\nEpsilon zeta\n eta\nTheta";
        let chunks: Vec<String> = CorpusChunks::new(text.as_bytes(), "c", 4)
            .collect::<Result<_>>()
            .unwrap();
        assert!(chunks.len() > 2, "{chunks:?}");
        assert_eq!(chunks.concat(), text);
        assert!(
            chunks[..chunks.len() - 1].iter().all(|c| c.ends_with('\n')),
            "{chunks:?}"
        );
        assert_eq!(corpus_text(text.as_bytes(), "c").unwrap(), text);
        let json = "\n{\"text\": \"a b\"}\n\n{\"text\": \"c\"}\n{\"text\": \" d\"}\n";
        let chunks: Vec<String> = CorpusChunks::new(json.as_bytes(), "c", 1)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(chunks.concat(), "a b\nc\n d\n");
        assert_eq!(chunks, vec!["a b\n", "c\n", " d\n"]);
    }
}
