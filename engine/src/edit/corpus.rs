//! Text corpora for the C0 statistics: plain text, or JSON lines with a `text` field. Binary or
//! empty files are refused with a message that says so.

use crate::error::{EngineError, Result};

/// The text of a corpus file's contents; `name` labels errors.
pub fn corpus_text(bytes: &[u8], name: &str) -> Result<String> {
    let fail = |why: String| Err(EngineError::Corpus(format!("{name}: {why}")));
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return fail("the file is empty".into());
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return fail("not UTF-8 text (a binary file?)".into());
    };
    if text.contains('\0') {
        return fail("contains NUL bytes: it looks binary".into());
    }
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.trim_start().starts_with('{') {
        return Ok(text.to_string());
    }
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return fail(format!("line {}: not valid JSON: {e}", i + 1)),
        };
        let Some(t) = v.get("text").and_then(|t| t.as_str()) else {
            return fail(format!("line {}: no `text` field", i + 1));
        };
        out.push_str(t);
        out.push('\n');
    }
    Ok(out)
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
}
