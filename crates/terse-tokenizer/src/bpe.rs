//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), a port of llama.cpp's
//! `llm_tokenizer_bpe_session`: pre-tokenize, map bytes to GPT-2's printable chars,
//! then repeatedly merge the adjacent pair with the lowest merge rank (leftmost
//! first on ties).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use terse_gguf::StrArray;

use crate::pretokenize::PreTokenizer;
use crate::unicode::byte_to_char_table;
use crate::vocab::Vocab;
use crate::TokenizerError;

pub(crate) struct Bpe {
    pre: PreTokenizer,
    /// Merge rank by the merge line "left right".
    ranks: HashMap<Box<str>, u32>,
    byte_chars: Box<[char; 256]>,
}

/// One symbol of a word being merged: a byte span of the encoded word, linked to
/// its neighbours (`usize::MAX` = none).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

impl Bpe {
    /// Parses the merges; each line is split at its first space after the first
    /// byte, as llama.cpp does. The first occurrence of a pair keeps its rank.
    pub fn new(pre: PreTokenizer, merges: &StrArray) -> Result<Self, TokenizerError> {
        let mut ranks = HashMap::with_capacity(merges.len());
        for (index, line) in merges.iter().enumerate() {
            let has_split = line.char_indices().skip(1).any(|(_, c)| c == ' ');
            if !has_split {
                return Err(TokenizerError::BadMerge {
                    index,
                    text: line.to_owned(),
                });
            }
            let rank = u32::try_from(index).map_err(|_| TokenizerError::BadMerge {
                index,
                text: line.to_owned(),
            })?;
            ranks.entry(line.into()).or_insert(rank);
        }
        Ok(Bpe {
            pre,
            ranks,
            byte_chars: Box::new(byte_to_char_table()),
        })
    }

    /// Tokenizes one fragment of plain text (special tokens already cut out).
    pub fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut encoded = String::new();
        let mut key = String::new();
        let mut symbols: Vec<Symbol> = Vec::new();
        let mut queue: BinaryHeap<Reverse<Bigram>> = BinaryHeap::new();

        for range in self.pre.split(text) {
            encoded.clear();
            for &b in text.as_bytes().get(range).unwrap_or_default() {
                encoded.push(self.byte_chars[b as usize]);
            }
            if self.pre.ignores_merges() {
                if let Some(id) = vocab.id(&encoded) {
                    out.push(id);
                    continue;
                }
            }

            symbols.clear();
            for (start, c) in encoded.char_indices() {
                let index = symbols.len();
                symbols.push(Symbol {
                    start,
                    len: c.len_utf8(),
                    prev: index.wrapping_sub(1),
                    next: index + 1,
                });
            }
            if let Some(last) = symbols.last_mut() {
                last.next = NONE;
            }

            queue.clear();
            for right in 1..symbols.len() {
                self.push_bigram(&encoded, &symbols, right - 1, right, &mut key, &mut queue);
            }

            while let Some(Reverse(bigram)) = queue.pop() {
                let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
                // Stale: one side was merged away or grew since the pair was queued.
                if left.len != bigram.left_len || right.len != bigram.right_len {
                    continue;
                }
                symbols[bigram.left].len += right.len;
                symbols[bigram.right].len = 0;
                symbols[bigram.left].next = right.next;
                if right.next != NONE {
                    symbols[right.next].prev = bigram.left;
                }
                let merged = symbols[bigram.left];
                if merged.prev != NONE {
                    self.push_bigram(
                        &encoded,
                        &symbols,
                        merged.prev,
                        bigram.left,
                        &mut key,
                        &mut queue,
                    );
                }
                if merged.next != NONE {
                    self.push_bigram(
                        &encoded,
                        &symbols,
                        bigram.left,
                        merged.next,
                        &mut key,
                        &mut queue,
                    );
                }
            }

            let mut index = if symbols.is_empty() { NONE } else { 0 };
            while index != NONE {
                let sym = symbols[index];
                index = sym.next;
                let Some(piece) = encoded.get(sym.start..sym.start + sym.len) else {
                    continue;
                };
                match vocab.id(piece) {
                    Some(id) => out.push(id),
                    // No token for the merged text: fall back to single-byte tokens
                    // where the vocabulary has them, as llama.cpp does.
                    None => {
                        for b in piece.bytes().filter(u8::is_ascii) {
                            let single = [b];
                            if let Some(id) =
                                std::str::from_utf8(&single).ok().and_then(|s| vocab.id(s))
                            {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }

    fn push_bigram(
        &self,
        encoded: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        key: &mut String,
        queue: &mut BinaryHeap<Reverse<Bigram>>,
    ) {
        let (l, r) = (symbols[left], symbols[right]);
        let (Some(left_text), Some(right_text)) = (
            encoded.get(l.start..l.start + l.len),
            encoded.get(r.start..r.start + r.len),
        ) else {
            return;
        };
        key.clear();
        key.push_str(left_text);
        key.push(' ');
        key.push_str(right_text);
        if let Some(&rank) = self.ranks.get(key.as_str()) {
            queue.push(Reverse(Bigram {
                rank,
                left,
                right,
                left_len: l.len,
                right_len: r.len,
            }));
        }
    }
}

/// A candidate merge; ordered by rank, then by position (leftmost first).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocab {
        Vocab::new(&tokens.iter().collect(), None, None).unwrap()
    }

    #[test]
    fn lowest_rank_merges_first() {
        let v = vocab(&["a", "b", "c", "ab", "bc", "abc"]);
        let merges = StrArray::from_iter(["b c", "a b", "a bc"]);
        let bpe = Bpe::new(PreTokenizer::Gpt2, &merges).unwrap();
        let mut out = Vec::new();
        bpe.tokenize(&v, "abc", &mut out);
        // "b c" (rank 0) wins over "a b", then "a bc" makes "abc".
        assert_eq!(out, [5]);
    }

    #[test]
    fn ties_merge_leftmost_first() {
        let v = vocab(&["a", "aa", "aaa"]);
        let merges = StrArray::from_iter(["a a"]);
        let bpe = Bpe::new(PreTokenizer::Gpt2, &merges).unwrap();
        let mut out = Vec::new();
        bpe.tokenize(&v, "aaa", &mut out);
        assert_eq!(out, [1, 0]);
    }

    #[test]
    fn spaces_are_byte_encoded_before_merging() {
        let v = vocab(&["Ġ", "h", "i", "Ġh", "Ġhi"]);
        let merges = StrArray::from_iter(["Ġ h", "Ġh i"]);
        let bpe = Bpe::new(PreTokenizer::Gpt2, &merges).unwrap();
        let mut out = Vec::new();
        bpe.tokenize(&v, " hi", &mut out);
        assert_eq!(out, [4]);
    }

    #[test]
    fn merge_without_separator_is_rejected_with_index() {
        let merges = StrArray::from_iter(["a b", "ab"]);
        let err = Bpe::new(PreTokenizer::Gpt2, &merges).err().unwrap();
        assert!(
            matches!(err, TokenizerError::BadMerge { index: 1, .. }),
            "{err}"
        );
    }
}
