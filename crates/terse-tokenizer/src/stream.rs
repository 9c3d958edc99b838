//! [`StreamDecoder`]: turns a stream of token ids into text without ever emitting
//! half of a multi-byte character (byte tokens and byte-level BPE split characters
//! across tokens).

use crate::Tokenizer;

/// Buffers the bytes of pushed tokens and returns only complete UTF-8 characters.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token and returns the text that is now complete. Bytes that can never
    /// become valid UTF-8 are emitted as U+FFFD; an incomplete character at the end is
    /// held back until the next push or [`flush`](Self::flush).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tok.token_bytes(id));
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = after.get(bad..).unwrap_or_default();
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Returns whatever is still buffered, with an incomplete character as U+FFFD.
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenizerConfig;

    /// A vocabulary of the four byte tokens of "👍" (F0 9F 91 8D) plus "a".
    fn byte_tokenizer() -> Tokenizer {
        let tokens = ["<0xF0>", "<0x9F>", "<0x91>", "<0x8D>", "a"];
        Tokenizer::new(TokenizerConfig {
            model: "llama".into(),
            tokens: tokens.iter().collect(),
            token_types: Some(vec![6, 6, 6, 6, 1]),
            ..TokenizerConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn multibyte_character_is_held_until_complete() {
        let tok = byte_tokenizer();
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(&tok, 4), "a");
        assert_eq!(d.push(&tok, 0), "");
        assert_eq!(d.push(&tok, 1), "");
        assert_eq!(d.push(&tok, 2), "");
        assert_eq!(d.push(&tok, 3), "👍");
        assert_eq!(d.flush(), "");
    }

    #[test]
    fn invalid_bytes_are_replaced_instead_of_blocking_the_stream() {
        let tok = byte_tokenizer();
        let mut d = StreamDecoder::new();
        // A lone continuation byte can never start a character.
        assert_eq!(d.push(&tok, 1), "\u{FFFD}");
        assert_eq!(d.push(&tok, 4), "a");
    }

    #[test]
    fn flush_returns_an_incomplete_tail_lossily() {
        let tok = byte_tokenizer();
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(&tok, 0), "");
        assert_eq!(d.flush(), "\u{FFFD}");
        assert_eq!(d.flush(), "");
    }
}
