//! The vocabulary: token texts, scores and llama.cpp's per-token attributes, with
//! exact text→id lookup.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use terse_gguf::StrArray;

use crate::TokenizerError;

/// llama.cpp's `llama_token_attr` bits (only those this crate reads or sets).
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const RSTRIP: u16 = 1 << 8;
}

/// Maps a GGUF `tokenizer.ggml.token_type` value to attribute bits, as llama.cpp does
/// (unknown values are "undefined": no bits).
fn attr_from_token_type(token_type: i32) -> u16 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

pub(crate) struct TokenData {
    pub score: f32,
    pub attr: u16,
}

/// Token texts live in one buffer and the text→id table holds only ids (hashing
/// through the buffer): a 262k-token vocabulary as `String`s keyed by boxed
/// copies took about 40 MB of heap, most of it allocator overhead.
pub(crate) struct Vocab {
    pub tokens: Vec<TokenData>,
    texts: StrArray,
    ids: HashTable<u32>,
    hasher: RandomState,
}

impl Vocab {
    /// Builds the vocabulary; empty token strings become `[EMPTY_<id>]` as in
    /// llama.cpp, and duplicates are rejected.
    pub fn new(
        texts: &StrArray,
        scores: Option<&[f32]>,
        token_types: Option<&[i32]>,
    ) -> Result<Self, TokenizerError> {
        let n = texts.len();
        if let Some(scores) = scores {
            if scores.len() < n {
                return Err(TokenizerError::ArrayTooShort {
                    key: "tokenizer.ggml.scores",
                    len: scores.len(),
                    n_tokens: n,
                });
            }
        }
        if let Some(types) = token_types {
            if types.len() < n {
                return Err(TokenizerError::ArrayTooShort {
                    key: "tokenizer.ggml.token_type",
                    len: types.len(),
                    n_tokens: n,
                });
            }
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::VocabTooLarge { n_tokens: n });
        }

        let mut vocab = Vocab {
            tokens: Vec::with_capacity(n),
            texts: StrArray::with_capacity(n, texts.text_len()),
            ids: HashTable::with_capacity(n),
            hasher: RandomState::new(),
        };
        for (i, text) in texts.iter().enumerate() {
            let placeholder;
            let text = if text.is_empty() {
                placeholder = format!("[EMPTY_{i}]");
                placeholder.as_str()
            } else {
                text
            };
            let id = i as u32;
            if let Some(first) = vocab.id(text) {
                return Err(TokenizerError::DuplicateToken {
                    text: text.to_owned(),
                    first,
                    second: id,
                });
            }
            vocab.texts.push(text);
            let Vocab {
                ids, texts, hasher, ..
            } = &mut vocab;
            ids.insert_unique(hasher.hash_one(text), id, |&other| {
                hasher.hash_one(texts.get(other as usize).unwrap_or_default())
            });
            let score = scores.and_then(|s| s.get(i)).copied().unwrap_or(0.0);
            let attr = token_types
                .and_then(|t| t.get(i))
                .map_or(attr::NORMAL, |&t| attr_from_token_type(t));
            vocab.tokens.push(TokenData { score, attr });
        }
        Ok(vocab)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids
            .find(self.hasher.hash_one(text), |&id| self.text(id) == text)
            .copied()
    }

    /// The token's text as stored in the model ("" for an id outside the vocabulary).
    pub fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).unwrap_or_default()
    }

    pub fn get(&self, id: u32) -> Option<&TokenData> {
        self.tokens.get(id as usize)
    }

    pub fn attr(&self, id: u32) -> u16 {
        self.get(id).map_or(0, |t| t.attr)
    }

    pub fn set_attr(&mut self, id: u32, set: u16) {
        if let Some(token) = self.tokens.get_mut(id as usize) {
            token.attr |= set;
        }
    }

    pub fn replace_attr(&mut self, id: u32, value: u16) {
        if let Some(token) = self.tokens.get_mut(id as usize) {
            token.attr = value;
        }
    }

    pub fn clear_attr(&mut self, id: u32, clear: u16) {
        if let Some(token) = self.tokens.get_mut(id as usize) {
            token.attr &= !clear;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_token_text_gets_placeholder() {
        let vocab = Vocab::new(&StrArray::from_iter(["a", ""]), None, None).unwrap();
        assert_eq!(vocab.id("[EMPTY_1]"), Some(1));
    }

    #[test]
    fn duplicate_token_is_rejected_with_both_ids() {
        let err = Vocab::new(&StrArray::from_iter(["a", "b", "a"]), None, None)
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                TokenizerError::DuplicateToken {
                    first: 0,
                    second: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn short_token_type_array_is_rejected() {
        let err = Vocab::new(&StrArray::from_iter(["a", "b"]), None, Some(&[1]))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("tokenizer.ggml.token_type"),
            "{err}"
        );
    }
}
